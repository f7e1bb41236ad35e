"""Tracked links and the open pixel, from the message a recipient gets to the events they
leave: signed per message, never an open redirect."""

from __future__ import annotations

import email
import re
from email.policy import default
from urllib.parse import parse_qs, urlsplit

from django.test import override_settings

from postroom.delivery.models import MailboxMessage, Message
from postroom.test import BaseTestCase, drain
from postroom.tracking.models import Event

BODY = (
    "Hi {{ contact.first_name }}. [Shop](https://shop.example.com/a?x=1&y=2), "
    '<a href="https://example.com/private" data-no-track>private</a>, '
    "[Write](mailto:hi@example.com)"
)


BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0"


@override_settings(SCANNER_SECONDS=0)
class LinksTestBase(BaseTestCase):
    """A person's hits: a browser's User-Agent, and (SCANNER_SECONDS=0) no scanner window."""

    def setUp(self) -> None:
        super().setUp()
        self.client.defaults["HTTP_USER_AGENT"] = BROWSER

    def send(self, **kw) -> tuple[Message, str, str]:
        """A one-recipient campaign through the Mailbox: its message, HTML and text."""
        self.make_contact("ann@example.com", first_name="Ann")
        self.start_campaign(
            body_format="markdown", body=BODY, **{"track_links": True, "track_opens": True, **kw}
        )
        drain()
        copy = MailboxMessage.objects.select_related("message").get()
        parsed = email.message_from_bytes(bytes(copy.raw), policy=default)
        html = parsed.get_body(preferencelist=("html",)).get_content()
        text = parsed.get_body(preferencelist=("plain",)).get_content()
        return copy.message, html, text

    def links(self, html: str) -> list[str]:
        return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html)]


class TrackingTestCase(LinksTestBase):
    def test_a_click_is_recorded_and_redirected_to_the_link(self) -> None:
        message, html, text = self.send()
        click = self.links(html)[0]
        self.assertIn("/c/", click)
        self.assertEqual(
            parse_qs(urlsplit(click).query)["u"], ["https://shop.example.com/a?x=1&y=2"]
        )
        self.assertIn(click, text.replace("\r\n", "\n"))  # the text part's link too
        r = self.client.get(
            urlsplit(click).path + "?" + urlsplit(click).query, HTTP_USER_AGENT="Test"
        )
        self.assertRedirects(r, "https://shop.example.com/a?x=1&y=2", fetch_redirect_response=False)
        event = Event.objects.get(kind="clicked")
        self.assertEqual(
            (event.message_id, event.url, event.user_agent),
            (message.id, "https://shop.example.com/a?x=1&y=2", "Test"),
        )
        self.assertEqual(event.contact.email, "ann@example.com")
        message.refresh_from_db()
        self.assertIsNotNone(message.clicked_at)
        self.assertIsNotNone(message.opened_at)  # a click means it was read

    def test_the_pixel_records_each_open_and_keeps_the_first(self) -> None:
        message, html, _ = self.send()
        pixel = re.search(r'<img src="([^"]+/o/[^"]+\.gif)"', html).group(1)
        for _ in range(2):
            r = self.client.get(urlsplit(pixel).path)
            self.assertEqual((r.status_code, r["Content-Type"]), (200, "image/gif"))
            self.assertIn("no-store", r["Cache-Control"])
        self.assertEqual(Event.objects.filter(kind="opened", message=message).count(), 2)
        message.refresh_from_db()
        first = message.opened_at
        self.assertIsNotNone(first)

    def test_a_tampered_or_unsigned_link_is_a_404_never_a_redirect(self) -> None:
        _, html, _ = self.send()
        click = urlsplit(self.links(html)[0])
        token = click.path.rsplit("/", 1)[1]
        elsewhere = "u=https%3A%2F%2Fevil.example.net%2F"
        for url in (
            f"/c/{token}?{elsewhere}",  # the target changed: the signature no longer fits
            f"/c/{token[:-2]}xx?{click.query}",  # the signature changed
            f"/c/{token}",  # no target
            f"/c/not-a-token?{elsewhere}",
            f"/o/{token}.gif",  # a click token is no pixel token
        ):
            with self.subTest(url):
                self.assertEqual(self.client.get(url).status_code, 404)
        self.assertFalse(Event.objects.exclude(kind=Event.Kind.SENT).exists())

    def test_links_left_out_and_tracking_switched_off(self) -> None:
        _, html, _ = self.send()
        links = self.links(html)
        self.assertIn("https://example.com/private", links)
        self.assertIn("mailto:hi@example.com", links)
        self.assertNotIn("data-no-track", html)

    def test_a_campaign_can_go_without_tracking(self) -> None:
        _, html, _ = self.send(track_links=False, track_opens=False)
        self.assertIn("https://shop.example.com/a?x=1&y=2", self.links(html))
        self.assertNotIn("/o/", html)
        self.assertNotIn("/c/", html)


class ScannerTestCase(LinksTestBase):
    def pixel(self, html: str) -> str:
        return urlsplit(next(u for u in re.findall(r'src="([^"]+)"', html) if "/o/" in u)).path

    def test_a_scanners_agent_is_flagged_and_leaves_the_message_unopened(self) -> None:
        message, html, _ = self.send()
        self.client.get(self.pixel(html), HTTP_USER_AGENT="Mimecast Security Scanner/2.0")
        event = Event.objects.get(kind=Event.Kind.OPENED)
        self.assertTrue(event.machine)
        message.refresh_from_db()
        self.assertIsNone(message.opened_at)

    def test_a_hit_within_seconds_of_the_send_is_flagged(self) -> None:
        message, html, _ = self.send()
        with override_settings(SCANNER_SECONDS=60):
            self.client.get(self.pixel(html))
        self.assertTrue(Event.objects.get(kind=Event.Kind.OPENED).machine)
        self.client.get(self.pixel(html))  # later, the person
        self.assertFalse(Event.objects.filter(kind=Event.Kind.OPENED).latest("id").machine)
        message.refresh_from_db()
        self.assertIsNotNone(message.opened_at)

    def test_a_scanners_click_is_flagged_and_still_redirected(self) -> None:
        message, html, _ = self.send()
        link = next(u for u in self.links(html) if "/c/" in u)
        parts = urlsplit(link)
        r = self.client.get(f"{parts.path}?{parts.query}", HTTP_USER_AGENT="python-requests/2.31")
        self.assertEqual(r.status_code, 302)
        self.assertTrue(Event.objects.get(kind=Event.Kind.CLICKED).machine)
        message.refresh_from_db()
        self.assertIsNone(message.clicked_at)
