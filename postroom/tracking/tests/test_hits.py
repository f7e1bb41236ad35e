"""The open pixel's batches (tracking.hits.HitWriter): gathered, written together, kept on a
failed write; a message erased meanwhile is no one's open."""

from __future__ import annotations

import threading
import time
import uuid
from unittest import mock

from django.db import OperationalError, connection
from django.test import override_settings

from postroom.delivery.models import Message
from postroom.lib.signing import sign
from postroom.test import drain
from postroom.tracking import hits
from postroom.tracking.links import OPEN
from postroom.tracking.models import Event
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
