from __future__ import annotations

import email
import re
from email.policy import default
from unittest import mock

from django.test import SimpleTestCase

from postroom.delivery.mime import MimeTemplate, build_mime
from postroom.delivery.models import Email, Message

DATE = "Mon, 23 Nov 2026 03:00:00 -0000"
BOUNDARY = re.compile(rb'boundary="([^"]+)"')

RECIPIENTS = [
    ("", "ann@example.com"),
    ("Ann Lee", "ann+news@example.com"),
    ("", "first.last+tag-1@mail.example.co.uk"),
    ('Lee, Ann "The Boss"', "ann@example.com"),
    ("Zoë Ångström", "zoe@example.de"),
    ("李小龍", "li@example.cn"),
    ("Bartholomew " * 10, "bart+weekly@example.com"),
    ("Ölçü Çağrı Şükrü " * 6, "o@example.com.tr"),
    ("", "a-very-long-local-part-that-goes-on-and-on-and-on+newsletter@sub.example.com"),
    ("  Ann \t Lee  ", "ann@example.com"),
    ("Mary-Jane O'Neil", "mj@example.com"),
    ("Ann Lee 2", "ann.lee@example.com"),
]


def campaign_email(**kw) -> Email:
    fields = {
        "kind": Email.Kind.CAMPAIGN,
        "from_email": "news@example.com",
        "from_name": "The Garden Shop",
        "subject": "Tomatoes, bulbs and a sale",
        "text": "Plain body\n",
        "html": "<p>HTML body with € and ü</p>\n" * 50,
        "reply_to": "help@example.com",
        "headers": {"List-Unsubscribe": "<https://example.com/u/1>", "Bad Name": "x"},
    }
    return Email(**{**fields, **kw})


def recipient(em: Email, name: str, address: str) -> Message:
    return Message(email=em, to_email=address, to_name=name)


def same_boundary(raw: bytes, other: bytes) -> bytes:
    """`raw` with its MIME boundary replaced by `other`'s (each build draws its own)."""
    mine, theirs = BOUNDARY.search(raw), BOUNDARY.search(other)
    return raw.replace(mine.group(1), theirs.group(1)) if mine and theirs else raw


@mock.patch("postroom.delivery.mime.formatdate", return_value=DATE)
class MimeTemplateTestCase(SimpleTestCase):
    def assert_same_as_reference(self, em: Email) -> None:
        template = MimeTemplate(em)
        for name, address in RECIPIENTS:
            message = recipient(em, name, address)
            with self.subTest(name=name, address=address):
                lean = template.render(message)
                reference = build_mime(em, message)
                self.assertEqual(same_boundary(lean, reference), reference)
                parsed, expected = (
                    email.message_from_bytes(raw, policy=default) for raw in (lean, reference)
                )
                self.assertEqual(str(parsed["To"]), str(expected["To"]))
                self.assertEqual(parsed["Message-ID"], expected["Message-ID"])
                self.assertEqual(parsed["Date"], DATE)
                self.assertEqual(
                    [(p.get_content_type(), p.get_content()) for p in parsed.iter_parts()],
                    [(p.get_content_type(), p.get_content()) for p in expected.iter_parts()],
                )

    def test_it_matches_build_mime_for_every_recipient(self, _) -> None:
        self.assert_same_as_reference(campaign_email())

    def test_it_matches_build_mime_with_non_ascii_shared_headers(self, _) -> None:
        self.assert_same_as_reference(
            campaign_email(from_name="Gärtnerei Müller", subject="Ihr Gemüse für den Herbst 🍅")
        )

    def test_it_matches_build_mime_for_text_only_mail(self, _) -> None:
        self.assert_same_as_reference(campaign_email(html="", headers={}, reply_to=""))

    def test_each_recipient_gets_its_own_to_and_message_id(self, _) -> None:
        em = campaign_email()
        template = MimeTemplate(em)
        ann = email.message_from_bytes(template.render(recipient(em, "Ann", "ann@example.com")))
        bob = email.message_from_bytes(template.render(recipient(em, "", "bob+x@example.com")))
        self.assertEqual(ann["To"], "Ann <ann@example.com>")
        self.assertEqual(bob["To"], "bob+x@example.com")
        self.assertNotEqual(ann["Message-ID"], bob["Message-ID"])
        self.assertTrue(bob["Message-ID"].endswith("@example.com>"))

    def test_long_names_are_folded_within_the_line_limit(self, _) -> None:
        em = campaign_email()
        raw = MimeTemplate(em).render(recipient(em, "Bartholomew " * 10, "bart@example.com"))
        head = raw.split(b"\r\n\r\n", 1)[0]
        self.assertTrue(all(len(line) <= 78 for line in head.split(b"\r\n")))
        to = email.message_from_bytes(raw, policy=default)["To"]
        self.assertEqual(to.addresses[0].display_name, ("Bartholomew " * 10).strip())

    def test_a_cr_or_lf_in_the_name_never_reaches_a_header(self, _) -> None:
        em = campaign_email()
        template = MimeTemplate(em)
        for name in ("Ann\r\nBcc: evil@example.com", "Ann\nBcc: evil@example.com", "Ann\rX: y"):
            with self.subTest(name=name):
                raw = template.render(recipient(em, name, "ann@example.com"))
                head = raw.split(b"\r\n\r\n", 1)[0]
                self.assertNotIn(b"\nBcc:", head)
                self.assertNotIn(b"\nX:", head)
                self.assertEqual(head.count(b"\r"), head.count(b"\r\n"))
                self.assertEqual(head.count(b"\n"), head.count(b"\r\n"))
                parsed = email.message_from_bytes(raw, policy=default)
                self.assertIsNone(parsed["Bcc"])
                self.assertEqual(parsed["To"].addresses[0].addr_spec, "ann@example.com")

    def test_a_cr_or_lf_in_the_address_is_refused(self, _) -> None:
        em = campaign_email()
        with self.assertRaises(ValueError):
            MimeTemplate(em).render(recipient(em, "", "ann@example.com\r\nBcc: evil@example.com"))


PERSONAL_CONTEXTS = [
    {"contact": {"first_name": "Ann", "data": {"city": "Köln"}}},
    {"contact": {"first_name": "<b>Bob</b> & co", "data": {"city": "=3D =\r\n. dots"}}},
    {"contact": {"first_name": "Zoë 🍅", "data": {}}},
    {"contact": {"first_name": "", "data": {"city": "x" * 300}}},
    {},
]


@mock.patch("postroom.delivery.mime.formatdate", return_value=DATE)
class PersonalisedMimeTestCase(SimpleTestCase):
    """Each recipient's subject and bodies, rendered in the sandbox and encoded chunk by
    chunk, decode to exactly what the template renders for them."""

    def personal_email(self, subject: str = "Hi {{ contact.first_name | default('you') }}"):
        from postroom.content.render import Source, prepare

        body = "# Hello {{ contact.first_name }}\n\nWeather in {{ contact.data.city }}.\n\n"
        body += "A long paragraph with résumé and € signs, " * 40 + "\n\n.a line with a dot\n"
        prepared = prepare(Source(body=body, subject=subject, preheader="Pre"))
        html, text = prepared.html, prepared.text
        return campaign_email(subject=subject, html=html, text=text, personalised=True)

    def test_every_recipient_decodes_to_what_the_template_renders_for_them(self, _) -> None:
        from postroom.content.render import compile_prepared

        em = self.personal_email()
        template = MimeTemplate(em)
        compiled = compile_prepared(em.subject, em.html, em.text, em.links)
        for context in PERSONAL_CONTEXTS * 2:  # twice: the second time from the cache
            with self.subTest(context=context):
                raw = template.render(recipient(em, "", "ann@example.com"), context)
                expected = compiled.render(context)
                parsed = email.message_from_bytes(raw, policy=default)
                self.assertEqual(parsed["Subject"], expected.subject)
                text, html = [p.get_content() for p in parsed.iter_parts()]
                crlf = "\r\n"
                self.assertEqual(text.replace(crlf, "\n"), expected.text.replace(crlf, "\n"))
                self.assertEqual(html.replace(crlf, "\n"), expected.html.replace(crlf, "\n"))
                lines = raw.split(b"\r\n")
                self.assertTrue(all(len(line) <= 78 for line in lines), "a line is too long")
                self.assertEqual(raw.count(b"\n"), raw.count(b"\r\n"))

    def test_subjects_of_every_kind_decode_as_written(self, _) -> None:
        from postroom.delivery.mime import subject_line

        for subject in (
            "Plain",
            "A long plain subject " * 8,
            "Grüße aus Köln 🍅 " * 5,
            "李小龍" * 40,
            "=?utf-8?q?not_really?=",
        ):
            with self.subTest(subject=subject):
                line = subject_line(subject)
                self.assertTrue(line.endswith(b"\r\n"))
                self.assertTrue(all(len(x) <= 78 for x in line.split(b"\r\n")))
                parsed = email.message_from_bytes(line + b"\r\n", policy=default)
                self.assertEqual(parsed["Subject"], " ".join(subject.split()))

    def test_data_never_breaks_a_header(self, _) -> None:
        em = self.personal_email(subject="Hi {{ contact.first_name }}")
        raw = MimeTemplate(em).render(
            recipient(em, "", "a@example.com"),
            {"contact": {"first_name": "Ann\r\nBcc: eve@example.com"}},
        )
        parsed = email.message_from_bytes(raw, policy=default)
        self.assertIsNone(parsed["Bcc"])
        self.assertEqual(parsed["Subject"], "Hi Ann Bcc: eve@example.com")

    def test_a_text_only_email_has_one_part(self, _) -> None:
        em = campaign_email(subject="S", html="", text="Hi {{ contact.first_name }}\n")
        em.personalised = True
        raw = MimeTemplate(em).render(recipient(em, "", "a@example.com"), PERSONAL_CONTEXTS[0])
        parsed = email.message_from_bytes(raw, policy=default)
        self.assertEqual(parsed.get_content_type(), "text/plain")
        self.assertEqual(parsed.get_content(), "Hi Ann\r\n")


class EncodingEdgesTestCase(SimpleTestCase):
    def test_quoted_printable_lines_stay_within_76_and_decode_back(self) -> None:
        import binascii
        import random

        from postroom.delivery.mime import QpBody

        rng = random.Random(7)
        alphabet = "abcXYZ =.é€\n\t"
        for _ in range(2000):
            chunks = [
                "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160)))
                for _ in range(rng.randint(1, 4))
            ]
            encoded = QpBody()(chunks)
            self.assertTrue(all(len(line) <= 76 for line in encoded.split(b"\r\n")), chunks)
            decoded = binascii.a2b_qp(encoded).decode().replace("\r\n", "\n")
            self.assertEqual(decoded.rstrip("\n"), "".join(chunks).rstrip("\n"))

    def test_a_subject_with_control_characters_or_a_huge_word_is_encoded(self) -> None:
        from postroom.delivery.mime import subject_line

        for subject in ("Bell\x07 and null\x00", "x" * 1200):
            line = subject_line(subject)
            self.assertTrue(line.startswith(b"Subject: =?utf-8?b?"))
            self.assertTrue(all(len(x) <= 78 for x in line.split(b"\r\n")))
            parsed = email.message_from_bytes(line + b"\r\n", policy=default)
            self.assertEqual(parsed["Subject"], subject)
