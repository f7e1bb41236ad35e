from __future__ import annotations

import io
import json

from django.core.management import call_command
from django.test import override_settings

from postroom.ops.models import WorkerHeartbeat
from postroom.test import BaseTestCase


def doctor(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("doctor", *args, stdout=out)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, out.getvalue()


class DoctorTestCase(BaseTestCase):
    def test_it_fails_without_a_worker(self) -> None:
        code, out = doctor()
        self.assertEqual(code, 1)
        self.assertIn("worker: no worker has ever run", out)
        self.assertIn("database: ", out)
        self.assertIn("migrations: all applied", out)

    def test_it_passes_with_a_fresh_worker(self) -> None:
        WorkerHeartbeat.objects.create(name="host:1")
        code, out = doctor()
        self.assertEqual(code, 0, out)
        self.assertIn("1 running (host:1)", out)

    def test_it_reports_as_json(self) -> None:
        WorkerHeartbeat.objects.create(name="host:1")
        code, out = doctor("--json")
        names = [r["name"] for r in json.loads(out)]
        self.assertEqual(
            names[:10],
            [
                "database",
                "migrations",
                "worker",
                "queues",
                "senders",
                "campaigns",
                "event readers",
                "webhooks",
                "disk",
                "system mail",
            ],
        )

    @override_settings(SMTP_URL="", EMAIL_FILE_PATH="/tmp/x")
    def test_it_warns_when_system_mail_has_no_relay(self) -> None:
        WorkerHeartbeat.objects.create(name="host:1")
        code, out = doctor()
        self.assertEqual(code, 0)
        self.assertIn("system mail: no SMTP relay", out)

    def test_it_fails_while_a_sender_is_paused(self) -> None:
        from postroom.delivery.models import Sender

        WorkerHeartbeat.objects.create(name="host:1")
        Sender.objects.filter(project=self.project).update(paused_reason="login refused: 535")
        code, out = doctor()
        self.assertEqual(code, 1)
        self.assertIn("senders: paused: Alice's project / Mailbox: login refused: 535", out)

    @override_settings(SITE_URL="example.com")
    def test_it_fails_on_a_bad_site_url(self) -> None:
        WorkerHeartbeat.objects.create(name="host:1")
        code, out = doctor()
        self.assertEqual(code, 1)
        self.assertIn("postroom.E001", out)

    def test_it_warns_when_events_wait_long_to_be_read(self) -> None:
        import datetime as dt

        from django.utils import timezone

        from postroom.automations.actions import read_events
        from postroom.tracking.counts import roll_up_events
        from postroom.tracking.models import Event, EventCursor
        from postroom.webhooks.actions import read_email_events

        def read_all() -> None:
            readers = (roll_up_events, read_email_events, read_events)
            while sum(read(settle=0) for read in readers):  # every reader, each time
                pass

        WorkerHeartbeat.objects.create(name="host:1")
        read_all()
        self.assertIn("event readers: every event read", doctor()[1])
        Event.objects.create(project=self.project, kind=Event.Kind.CUSTOM, name="signup")
        self.assertRegex(doctor()[1], r"counts: up to [\d,]+ events waiting")
        long_ago = timezone.now() - dt.timedelta(minutes=30)
        EventCursor.objects.filter(name="counts").update(updated_at=long_ago)
        self.assertIn("none read for 30 min: is a worker running?", doctor()[1])
        read_all()
        self.assertIn("event readers: every event read", doctor()[1])
