from __future__ import annotations

from datetime import timedelta as td

from django.utils import timezone

from postroom.accounts.models import LoginFailure
from postroom.contacts.actions import ContactFilter, queue_bulk_action
from postroom.contacts.models import BulkAction
from postroom.ops.models import WorkerHeartbeat
from postroom.ops.worker import Worker
from postroom.test import BaseTestCase


class WorkerTestCase(BaseTestCase):
    def test_a_pass_runs_queued_work_and_beats(self) -> None:
        self.make_contact()
        bulk = queue_bulk_action(self.project, "tag", "x", ContactFilter(), self.alice)
        worker = Worker(name="test:1")
        worker.beat(force=True)
        self.assertTrue(worker.run_once())
        bulk.refresh_from_db()
        self.assertEqual(bulk.state, BulkAction.State.DONE)
        self.assertFalse(worker.run_once())
        self.assertTrue(WorkerHeartbeat.objects.get(name="test:1").is_fresh())

    def test_it_prunes_old_login_failures(self) -> None:
        LoginFailure.objects.create(email="a@example.org", at=timezone.now() - td(days=1))
        LoginFailure.objects.create(email="b@example.org")
        Worker(name="test:2").run_once()
        self.assertEqual(
            list(LoginFailure.objects.values_list("email", flat=True)), ["b@example.org"]
        )

    def test_a_heartbeat_goes_stale(self) -> None:
        beat = WorkerHeartbeat.objects.create(
            name="old:1", last_beat_at=timezone.now() - td(minutes=5)
        )
        self.assertFalse(beat.is_fresh())
        self.assertFalse(WorkerHeartbeat.fresh().exists())
