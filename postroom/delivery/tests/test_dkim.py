"""DKIM: our signatures (cryptography) verify with dkimpy, the reference; keys are made and
checked from the dashboard; signed mail leaves through the send loop."""

from __future__ import annotations

import email
import uuid
from email.policy import default
from unittest import mock

import dkim as dkimpy
import dns.exception
import dns.resolver
from django.test import SimpleTestCase

from postroom.content.render import Source, prepare
from postroom.delivery import dkim
from postroom.delivery.actions import create_dkim_key, default_sender
from postroom.delivery.mime import MimeTemplate, build_mime
from postroom.delivery.models import DkimKey, Email, MailboxMessage, Message
from postroom.test import BaseTestCase, drain


def verifies(raw: bytes, record: str) -> bool:
    return dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: record.encode())


def sample_email(**kw) -> Email:
    fields = {
        "code": uuid.uuid4(),
        "kind": Email.Kind.CAMPAIGN,
        "from_email": "news@example.com",
        "from_name": "Gärtnerei Müller",
        "subject": "Ihr Gemüse für den Herbst 🍅 " * 3,
        "text": "Plain   body  with   spaces \n\n\n",
        "html": "<p>HTML   body € ü</p>\n" * 40,
    }
    return Email(**{**fields, **kw})


class SignerTestCase(SimpleTestCase):
    def setUp(self) -> None:
        self.keys = {alg: dkim.generate(alg) for alg in (dkim.RSA, dkim.ED25519)}

    def signer(self, algorithm: str) -> dkim.Signer:
        return dkim.Signer("example.com", "s2026", algorithm, self.keys[algorithm][0])

    def record(self, algorithm: str) -> str:
        return dkim.dns_record(algorithm, self.keys[algorithm][1])

    def test_signatures_verify_with_dkimpy(self) -> None:
        em = sample_email()
        prepared = prepare(Source(body="# Hi {{ contact.first_name }}\n\nA  b   c.", subject="S"))
        html, text = prepared.html, prepared.text
        personal = sample_email(
            html=html, text=text, subject="Hi {{ contact.first_name }}", personalised=True
        )
        messages = [
            build_mime(em, Message(email=em, to_email="ann@example.org", to_name="Ann Lee")),
            MimeTemplate(personal).render(
                Message(email=personal, to_email="bob@example.org"),
                {"contact": {"first_name": "Bob"}},
            ),
            build_mime(sample_email(html="", text=""), Message(email=em, to_email="c@x.org")),
        ]
        for algorithm in (dkim.RSA, dkim.ED25519):
            for raw in messages:
                with self.subTest(algorithm=algorithm, raw=raw[:40]):
                    signed = self.signer(algorithm).sign(raw)
                    self.assertTrue(verifies(signed, self.record(algorithm)))
                    head = signed.split(b"\r\n\r\n")[0]
                    self.assertTrue(all(len(x) <= 78 for x in head.split(b"\r\n")))

    def test_a_changed_body_or_signed_header_fails(self) -> None:
        em = sample_email()
        raw = build_mime(em, Message(email=em, to_email="ann@example.org"))
        signed = self.signer(dkim.RSA).sign(raw)
        record = self.record(dkim.RSA)
        self.assertFalse(verifies(signed.replace(b"HTML   body", b"HTML   bodY", 1), record))
        tampered = signed.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks")
        self.assertFalse(verifies(tampered, record))
        self.assertIn(b"list-unsubscribe-post", signed.split(b"\r\n\r\n")[0])

    def test_relaxed_body_canonicalisation(self) -> None:
        self.assertEqual(dkim.relaxed_body(b""), b"")
        self.assertEqual(dkim.relaxed_body(b"\r\n\r\n"), b"")
        self.assertEqual(dkim.relaxed_body(b"a  \t b \r\n\r\nc\r\n\r\n\r\n"), b"a b\r\n\r\nc\r\n")


RECORDS: dict[str, list[str] | Exception] = {}


def fake_resolve(self, name, rdtype="A", **kw):
    value = RECORDS.get(str(name).rstrip("."), dns.resolver.NXDOMAIN())
    if isinstance(value, Exception):
        raise value
    answer = []
    for text in value:
        record = mock.Mock()
        record.strings = [text[i : i + 255].encode() for i in range(0, len(text), 255)]
        answer.append(record)
    return answer


@mock.patch("dns.resolver.Resolver.resolve", fake_resolve)
class DkimDashboardTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login()
        self.sender = default_sender(self.project)
        self.domain = self.sender.from_email.split("@")[1]
        RECORDS.clear()

    def make_key(self, algorithm: str = "rsa") -> DkimKey:
        self.client.post(
            self.url("dkim/new/"),
            {"domain": self.domain, "algorithm": algorithm, "sender": self.sender.code},
        )
        return DkimKey.objects.get(project=self.project)

    def test_a_key_shows_its_record_and_becomes_active_once_published(self) -> None:
        key = self.make_key()
        self.assertFalse(key.active)
        r = self.client.get(self.url(f"senders/{self.sender.code}/"))
        self.assertContains(r, key.record_name)
        self.assertContains(r, key.public_key)
        self.client.post(self.url(f"dkim/{key.code}/check/"), {"sender": self.sender.code})
        key.refresh_from_db()
        self.assertFalse(key.active)
        self.assertEqual(key.check_result[0]["status"], "error")
        RECORDS[key.record_name] = [key.dns_record]
        RECORDS[self.domain] = ["v=spf1 mx ~all"]
        RECORDS[f"_dmarc.{self.domain}"] = ["v=DMARC1; p=quarantine"]
        r = self.client.post(
            self.url(f"dkim/{key.code}/check/"), {"sender": self.sender.code}, follow=True
        )
        self.assertContains(r, "mail is signed with it")
        key.refresh_from_db()
        self.assertTrue(key.active)
        self.assertEqual([c["status"] for c in key.check_result], ["ok", "ok", "ok"])
        self.assertIn("Policy quarantine", key.check_result[2]["text"])

    def test_dns_problems_are_named(self) -> None:
        key = self.make_key("ed25519")
        RECORDS[key.record_name] = ["v=DKIM1; k=ed25519; p=c29tZXRoaW5nIGVsc2U="]
        RECORDS[self.domain] = ["v=spf1 a -all", "v=spf1 mx -all"]
        RECORDS[f"_dmarc.{self.domain}"] = dns.exception.Timeout()
        self.client.post(self.url(f"dkim/{key.code}/check/"), {"sender": self.sender.code})
        key.refresh_from_db()
        dkim_result, spf, dmarc = key.check_result
        self.assertIn("a different key", dkim_result["text"])
        self.assertEqual((spf["status"], dmarc["status"]), ("error", "warn"))
        self.assertIn("2 SPF records", spf["text"])

    def test_mail_from_the_domain_is_signed_once_a_key_is_active(self) -> None:
        key = create_dkim_key(self.project, self.domain, "rsa")
        DkimKey.objects.filter(pk=key.pk).update(active=True)
        from postroom.delivery.actions import send_test_email

        send_test_email(self.project, self.sender, "ann@example.org", self.alice)
        drain()
        raw = bytes(MailboxMessage.objects.get().raw)
        self.assertTrue(raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"))
        self.assertTrue(verifies(raw, key.dns_record))
        parsed = email.message_from_bytes(raw, policy=default)
        self.assertIn(f"d={self.domain}", parsed["DKIM-Signature"])
        self.assertEqual(Message.objects.get().state, "sent")

    def test_another_projects_keys_are_404(self) -> None:
        theirs = create_dkim_key(self.charlies_project, "example.net", "rsa")
        for action in ("check", "toggle", "delete"):
            r = self.client.post(self.url(f"dkim/{theirs.code}/{action}/"))
            self.assertEqual(r.status_code, 404)
