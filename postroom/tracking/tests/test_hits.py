"""The open pixel's batches (tracking.hits.HitWriter): gathered, written together, kept on a
failed write; a message erased meanwhile is no one's open."""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from unittest import mock
from urllib.parse import urlsplit

from django.db import OperationalError, connection
from django.test import override_settings

from postroom.delivery.models import Message
from postroom.lib.signing import sign
from postroom.test import drain
from postroom.tracking import hits
from postroom.tracking.links import OPEN
from postroom.tracking.models import Event
from postroom.tracking.pixel import pixel_token
from postroom.tracking.tests.test_links import BROWSER, LinksTestBase


class HitWriterTestCase(LinksTestBase):
    def setUp(self) -> None:
        super().setUp()
        self.enterContext(override_settings(HIT_BATCHES=True))  # after conftest's False

    def writer(self) -> hits.HitWriter:
        """A writer whose thread never starts and whose requests do not wait for it: the test
        writes the batch by calling flush() (a thread would use a connection of its own)."""
        writer = hits.HitWriter()
        writer.start = lambda: None
        self.enterContext(mock.patch.object(hits, "WAIT_SECONDS", 0))
        return writer

    def two_messages(self) -> list[Message]:
        self.make_contact("ann@example.com")
        self.make_contact("bob@example.com")
        self.start_campaign(track_opens=True)
        drain()
        return list(Message.objects.order_by("id"))

    def test_opens_gather_and_are_written_in_one_batch(self) -> None:
        first, second = self.two_messages()
        writer = self.writer()
        for code in (first.code, first.code, second.code, uuid.uuid4()):
            writer.add_open(code, BROWSER)
        writer.add_open(second.code, "")  # no agent: a machine's
        self.assertFalse(Event.objects.filter(kind=Event.Kind.OPENED).exists())
        # The lookup, a savepoint, one INSERT, one UPDATE, its release; PostgreSQL also sets
        # the commit not to wait for the disk.
        with self.assertNumQueries(5 + (connection.vendor == "postgresql")):
            self.assertEqual(writer.flush(), 5)
        opens = Event.objects.filter(kind=Event.Kind.OPENED)
        self.assertEqual(
            sorted(opens.values_list("message_id", "machine")),
            sorted([(first.id, False), (first.id, False), (second.id, False), (second.id, True)]),
        )
        first.refresh_from_db()
        earliest = opens.filter(message=first).order_by("created_at").first().created_at
        self.assertEqual(first.opened_at, earliest)
        self.assertEqual(writer.flush(), 0)

    def test_a_failed_write_keeps_the_hits_for_the_next(self) -> None:
        first, _ = self.two_messages()
        writer = self.writer()
        writer.add_open(first.code, BROWSER)
        failing = mock.patch.object(hits, "write_opens", side_effect=OperationalError("gone"))
        with failing, self.assertRaises(OperationalError):
            writer.flush()
        self.assertEqual(writer.flush(), 1)
        self.assertEqual(Event.objects.filter(kind=Event.Kind.OPENED).count(), 1)

    def test_a_request_returns_once_its_batch_is_written(self) -> None:
        written, codes = [], [uuid.uuid4() for _ in range(3)]

        def write_opens(opens) -> None:
            time.sleep(0.05)  # meanwhile the other requests gather in the next batch
            written.append([o.code for o in opens])

        writer = hits.HitWriter()
        with mock.patch.object(hits, "write_opens", write_opens):
            threads = [threading.Thread(target=writer.add_open, args=(c, BROWSER)) for c in codes]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=4)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        self.assertEqual(sorted(c for batch in written for c in batch), sorted(codes))
        self.assertLess(len(written), 3)  # some waited for the same batch

    def test_the_pixel_of_a_message_erased_since_still_answers_and_records_nothing(self) -> None:
        token = sign(OPEN, uuid.uuid4())  # ours, but its message is gone
        with override_settings(HIT_BATCHES=False):
            r = self.client.get(f"/o/{token}.gif")
        self.assertEqual((r.status_code, r["Content-Type"]), (200, "image/gif"))
        self.assertFalse(Event.objects.filter(kind=Event.Kind.OPENED).exists())


class PixelFastPathTestCase(LinksTestBase):
    """postroom.wsgi answers the pixel before Django; the Django view must answer the same."""

    def wsgi_get(self, path: str, method: str = "GET") -> tuple[str, dict, bytes]:
        from postroom.wsgi import application

        answer = {}

        def start_response(status, headers):
            answer["status"], answer["headers"] = status, dict(headers)

        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "HTTP_USER_AGENT": BROWSER,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "HTTP_HOST": "localhost",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
        }
        body = b"".join(application(environ, start_response))
        return answer["status"], answer["headers"], body

    def test_it_records_the_open_and_answers_as_the_view_does(self) -> None:
        message, html, _ = self.send()
        path = urlsplit(re.search(r'<img src="([^"]+/o/[^"]+\.gif)"', html).group(1)).path
        status, headers, body = self.wsgi_get(path)
        view = self.client.get(path)
        self.assertEqual((status, body), ("200 OK", view.content))
        for name in ("Content-Type", "Cache-Control"):
            self.assertEqual(headers[name], view[name], name)
        self.assertEqual(Event.objects.filter(kind="opened", message=message).count(), 2)
        message.refresh_from_db()
        self.assertIsNotNone(message.opened_at)

    def test_a_token_not_ours_is_a_404_and_other_requests_go_to_django(self) -> None:
        self.assertEqual(self.wsgi_get("/o/forged-token.gif")[0], "404 Not Found")
        self.assertEqual(self.client.get("/o/forged-token.gif").status_code, 404)
        self.assertIsNone(pixel_token("POST", "/o/abc.gif"))
        self.assertIsNone(pixel_token("GET", "/o/abc.gif/x"))
        self.assertEqual(pixel_token("HEAD", "/o/abc.gif"), "abc")

        # Anything else goes to Django (a stand-in here: Django's own handler would close the
        # test's connection when the request ends, as it does after every real request).
        def django(environ, start_response):
            start_response("200 OK", [])
            return [environ["PATH_INFO"].encode()]

        with mock.patch("postroom.wsgi.django_application", django):
            self.assertEqual(self.wsgi_get("/login/")[2], b"/login/")
            self.assertEqual(self.wsgi_get("/o/abc.gif", method="POST")[2], b"/o/abc.gif")
        self.assertFalse(Event.objects.filter(kind="opened").exists())
