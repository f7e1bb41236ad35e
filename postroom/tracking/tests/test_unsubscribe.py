"""Unsubscribing in one click (RFC 8058) or through the page, and the preference page."""

from __future__ import annotations

import email
import json
import re
from email.policy import default
from urllib.parse import urlsplit

from django.test import Client

from postroom.campaigns import actions
from postroom.campaigns.models import Campaign
from postroom.contacts.models import Contact, Suppression
from postroom.delivery.actions import default_sender
from postroom.delivery.models import MailboxMessage, Message
from postroom.delivery.sending import handle_one_send_batch
from postroom.test import BaseTestCase
from postroom.tracking.models import Event


class UnsubscribeTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.project.postal_address = "1 Garden Lane, Springfield"
        self.project.save()
        self.ann = self.make_contact("ann@example.com", first_name="Ann")
        sender = default_sender(self.project)
        campaign = Campaign.objects.create(
            project=self.project,
            name="C",
            subject="S",
            sender=sender,
            from_email=sender.from_email,
            body_format="markdown",
            body="Hello",
        )
        actions.start(campaign)
        actions.start_due_campaigns()
        while handle_one_send_batch():
            pass
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

    def test_preferences_resubscribe_rename_download_and_delete(self) -> None:
        prefs = self.url + "/preferences"
        self.outside.post(prefs, {"action": "unsubscribe"})
        r = self.outside.post(prefs, {"action": "resubscribe"})
        self.assertContains(r, "subscribed again")
        self.ann.refresh_from_db()
        self.assertEqual((self.ann.status, self.ann.consent_source), ("subscribed", "form"))
        self.outside.post(prefs, {"action": "name", "first_name": "Annie", "last_name": "Lee"})
        self.ann.refresh_from_db()
        self.assertEqual((self.ann.first_name, self.ann.last_name), ("Annie", "Lee"))
        r = self.outside.get(self.url + "/data.json")
        self.assertIn("attachment", r["Content-Disposition"])
        data = json.loads(r.content)
        self.assertEqual(data["email"], "ann@example.com")
        self.assertEqual(data["messages"][0]["subject"], "S")
        r = self.outside.post(prefs, {"action": "delete"})
        self.assertContains(r, "everything we kept about you is deleted")
        self.assertFalse(Contact.objects.filter(email="ann@example.com").exists())
        self.assertEqual(self.outside.get(self.url + "/data.json").status_code, 404)

    def test_an_address_without_a_contact_is_suppressed(self) -> None:
        self.ann.delete()
        self.outside.post(self.url)
        self.assertTrue(
            Suppression.objects.filter(email="ann@example.com", reason="unsubscribed").exists()
        )

    def test_transactional_mail_has_no_unsubscribe_header(self) -> None:
        from postroom.delivery.actions import send_test_email

        send_test_email(self.project, default_sender(self.project), "bob@example.com", None)
        while handle_one_send_batch():
            pass
        raw = MailboxMessage.objects.get(message__to_email="bob@example.com").raw
        parsed = email.message_from_bytes(bytes(raw), policy=default)
        self.assertIsNone(parsed["List-Unsubscribe"])
        self.assertIsNone(parsed["Precedence"])
        self.assertFalse(re.search("Unsubscribe", parsed.get_body().get_content()))
        self.assertEqual(Message.objects.get(to_email="bob@example.com").state, "sent")
