"""Unsubscribing in one click (RFC 8058) or through the page, and the preference page."""

from __future__ import annotations

import email
import json
import re
from email.policy import default
from urllib.parse import urlsplit

from django.test import Client

from postroom.contacts.models import Contact, Suppression
from postroom.delivery.actions import default_sender
from postroom.delivery.models import MailboxMessage, Message
from postroom.test import BaseTestCase, drain
from postroom.tracking.models import Event


class UnsubscribeTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.project.postal_address = "1 Garden Lane, Springfield"
        self.project.save()
        self.ann = self.make_contact("ann@example.com", first_name="Ann")
        self.start_campaign(body_format="markdown")
        drain()
        copy = MailboxMessage.objects.select_related("message").get()
        self.message = copy.message
        self.mail = email.message_from_bytes(bytes(copy.raw), policy=default)
        self.url = urlsplit(self.mail["List-Unsubscribe"].strip().strip("<>")).path
        # Mail clients and recipients come without a session or a CSRF cookie.
        self.outside = Client(enforce_csrf_checks=True)

    def test_campaign_mail_carries_the_headers_and_the_footer(self) -> None:
        self.assertRegex(self.mail["List-Unsubscribe"], r"^\s*<http://localhost:8000/u/[\w-]+>$")
        self.assertEqual(self.mail["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        self.assertEqual(self.mail["Precedence"], "bulk")
        html = self.mail.get_body(preferencelist=("html",)).get_content()
        text = self.mail.get_body(preferencelist=("plain",)).get_content()
        self.assertIn("1 Garden Lane, Springfield", html)
        self.assertIn(f'href="http://localhost:8000{self.url}"', html)
        self.assertIn(f"Unsubscribe: http://localhost:8000{self.url}", text)
        self.assertRegex(html, r'href="http://localhost:8000/u/[\w-]+/preferences"')

    def test_opening_the_link_only_asks(self) -> None:
        r = self.outside.get(self.url)
        self.assertContains(r, "Unsubscribe?")
        self.assertContains(r, "ann@example.com")
        self.ann.refresh_from_db()
        self.assertEqual(self.ann.status, "subscribed")  # a link scanner changes nothing

    def test_the_pages_button_unsubscribes(self) -> None:
        r = self.outside.post(self.url)
        self.assertContains(r, "You are unsubscribed")
        self.ann.refresh_from_db()
        self.assertEqual(
            (self.ann.status, self.ann.status_reason), ("unsubscribed", "Unsubscribed by link")
        )
        self.assertTrue(Event.objects.filter(kind="unsubscribed", message=self.message).exists())

    def test_one_click_post_unsubscribes_without_a_page(self) -> None:
        r = self.outside.post(
            self.url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
        self.assertEqual((r.status_code, r.content), (200, b"Unsubscribed."))
        self.ann.refresh_from_db()
        self.assertEqual(self.ann.status_reason, "Unsubscribed by one-click")
        # The next campaign skips Ann at send time.
        self.assertEqual(self.ann.status, "unsubscribed")

    def test_a_tampered_link_is_a_404(self) -> None:
        for url in (self.url[:-3] + "abc", "/u/nonsense", self.url + "x/preferences"):
            with self.subTest(url):
                self.assertEqual(self.outside.post(url).status_code, 404)
        self.ann.refresh_from_db()
        self.assertEqual(self.ann.status, "subscribed")

    def confirmation_link(self, action: str) -> str:
        """Ask on the preference page; the link arrives by mail, to the contact's address."""
        r = self.outside.post(self.url + "/preferences", {"action": action})
        self.assertContains(r, "We sent a link to ann@example.com")
        drain()
        kept = MailboxMessage.objects.filter(message__email__kind="transactional").latest("id")
        self.assertEqual(kept.message.to_email, "ann@example.com")
        body = email.message_from_bytes(bytes(kept.raw), policy=default).get_content()
        return urlsplit(re.search(r"http://\S+/confirm/\S+", body).group(0)).path

    def test_preferences_resubscribe_and_rename(self) -> None:
        prefs = self.url + "/preferences"
        self.outside.post(prefs, {"action": "unsubscribe"})
        r = self.outside.post(prefs, {"action": "resubscribe"})
        self.assertContains(r, "subscribed again")
        self.ann.refresh_from_db()
        self.assertEqual((self.ann.status, self.ann.consent_source), ("subscribed", "form"))
        self.outside.post(prefs, {"action": "name", "first_name": "Annie", "last_name": "Lee"})
        self.ann.refresh_from_db()
        self.assertEqual((self.ann.first_name, self.ann.last_name), ("Annie", "Lee"))

    def test_data_is_downloaded_through_a_link_sent_to_the_address(self) -> None:
        link = self.confirmation_link("export")
        r = self.outside.get(link)
        self.assertIn("attachment", r["Content-Disposition"])
        self.assertEqual(r["Content-Type"], "application/json; charset=utf-8")
        data = json.loads(b"".join(r.streaming_content))
        self.assertEqual(data["contact"]["email"], "ann@example.com")
        self.assertIn("S", [m["subject"] for m in data["messages"]])
        self.assertEqual(data["totals"]["messages"], len(data["messages"]))
        self.assertEqual(self.outside.get(link.replace("/export/", "/delete/")).status_code, 404)
        self.assertEqual(self.outside.get(link[:-3] + "abc").status_code, 404)

    def test_deleting_asks_again_then_erases_and_stops_queued_mail(self) -> None:
        link = self.confirmation_link("delete")
        # A second campaign is queued for Ann when she confirms.
        later = self.start_campaign(name="Later", subject="Later", body="Later")
        self.assertContains(self.outside.get(link), "Delete your data?")
        self.assertTrue(Contact.objects.filter(email="ann@example.com").exists())
        r = self.outside.post(link)
        self.assertContains(r, "Your data is deleted")
        self.assertFalse(Contact.objects.filter(email="ann@example.com").exists())
        self.assertFalse(Message.objects.filter(to_email="ann@example.com").exists())
        self.assertEqual(Message.objects.get(email__campaign=later).state, Message.State.CANCELLED)
        self.assertFalse(Event.objects.filter(contact__isnull=False).exists())
        drain()
        self.assertFalse(MailboxMessage.objects.filter(message__email__campaign=later).exists())

    def test_an_address_without_a_contact_is_suppressed(self) -> None:
        self.ann.delete()
        self.outside.post(self.url)
        self.assertTrue(
            Suppression.objects.filter(email="ann@example.com", reason="unsubscribed").exists()
        )

    def test_transactional_mail_has_no_unsubscribe_header(self) -> None:
        from postroom.delivery.actions import send_test_email

        send_test_email(self.project, default_sender(self.project), "bob@example.com", None)
        drain()
        raw = MailboxMessage.objects.get(message__to_email="bob@example.com").raw
        parsed = email.message_from_bytes(bytes(raw), policy=default)
        self.assertIsNone(parsed["List-Unsubscribe"])
        self.assertIsNone(parsed["Precedence"])
        self.assertFalse(re.search("Unsubscribe", parsed.get_body().get_content()))
        self.assertEqual(Message.objects.get(to_email="bob@example.com").state, "sent")


class UnsubscribeByMailTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ann = self.make_contact("ann@example.com")
        with self.settings(INBOUND_DOMAIN="inbound.example.com"):
            self.start_campaign()
            drain()
        raw = bytes(MailboxMessage.objects.get().raw)
        self.header = email.message_from_bytes(raw, policy=default)["List-Unsubscribe"]

    def run_inbound(self, to: str) -> int:
        import io
        from unittest import mock

        from django.core.management import call_command

        mail = f"From: ann@example.com\r\nTo: {to}\r\nSubject: unsubscribe\r\n\r\n".encode()
        stdin = mock.Mock(buffer=io.BytesIO(mail))
        with mock.patch("sys.stdin", stdin):
            try:
                call_command("inbound", stdout=io.StringIO(), stderr=io.StringIO())
            except SystemExit as e:
                return e.code
        return 0

    def test_list_unsubscribe_offers_a_mailto_that_unsubscribes(self) -> None:
        mailto = re.search(r"<mailto:([^?>]+)\?subject=unsubscribe>", self.header).group(1)
        self.assertTrue(mailto.startswith("unsubscribe+"))
        self.assertTrue(mailto.endswith("@inbound.example.com"))
        self.assertIn("<http://localhost:8000/u/", self.header)
        self.assertEqual(self.run_inbound(mailto), 0)
        self.ann.refresh_from_db()
        self.assertEqual(
            (self.ann.status, self.ann.status_reason), ("unsubscribed", "Unsubscribed by email")
        )

    def test_mail_to_a_forged_address_changes_nothing(self) -> None:
        self.assertEqual(self.run_inbound("unsubscribe+forged@inbound.example.com"), 65)
        self.ann.refresh_from_db()
        self.assertEqual(self.ann.status, "subscribed")
