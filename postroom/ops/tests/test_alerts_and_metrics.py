"""Alerts raised once and cleared once, by email and webhook; the health checks for queues per
sender, failing webhooks and disk; /metrics for Prometheus."""

from __future__ import annotations

import json
from unittest import mock

from django.core import mail
from django.test import override_settings
from django.utils import timezone

from postroom.accounts.models import User
from postroom.ops import alerts, health
from postroom.ops.health import ERROR, OK, WARNING, Result
from postroom.ops.models import Alert, WorkerHeartbeat
from postroom.test import BaseTestCase
from postroom.webhooks import actions as webhooks
from postroom.webhooks.signing import verify
from postroom.webhooks.tests.receiver import Receiver


class AlertsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        User.objects.filter(pk=self.alice.pk).update(is_staff=True)

    def test_a_check_gone_wrong_is_told_once_and_again_when_it_clears(self) -> None:
        wrong = [Result("worker", ERROR, "no heartbeat for 300 s"), Result("disk", OK, "fine")]
        raised, cleared = alerts.check_and_alert(wrong)
        self.assertEqual(([a.check_name for a in raised], cleared), (["worker"], []))
        [email] = mail.outbox
        self.assertIn("worker error", email.subject)
        self.assertIn("no heartbeat for 300 s", email.body)
        self.assertEqual(email.to, ["alice@example.org"])
        self.assertEqual(alerts.check_and_alert(wrong), ([], []))  # still wrong: told once
        self.assertEqual(len(mail.outbox), 1)
        raised, cleared = alerts.check_and_alert([Result("worker", OK, "1 running")])
        self.assertEqual([a.check_name for a in cleared], ["worker"])
        self.assertIn("fine again", mail.outbox[1].subject)
        self.assertIsNotNone(Alert.objects.get().cleared_at)

    def test_a_warning_that_becomes_an_error_is_told_again(self) -> None:
        alerts.check_and_alert([Result("disk", WARNING, "1.5 GB free")])
        raised, _ = alerts.check_and_alert([Result("disk", ERROR, "0.1 GB free")])
        self.assertEqual([(a.check_name, a.status) for a in raised], [("disk", ERROR)])
        self.assertEqual(len(mail.outbox), 2)

    def test_alerts_are_posted_signed_to_the_alert_webhook(self) -> None:
        with (
            Receiver() as receiver,
            override_settings(ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET="s3"),
        ):
            alerts.check_and_alert([Result("senders", ERROR, "paused: login refused")])
        [got] = receiver.received
        body = json.loads(got.body)
        self.assertEqual(body["raised"][0]["check"], "senders")
        self.assertTrue(verify("s3", got.headers["Postroom-Signature"], got.body))

    def test_doctor_alert_raises_from_cron(self) -> None:
        from postroom.ops.tests.test_doctor import doctor

        doctor("--alert")  # no worker has run: an error to tell
        self.assertTrue(Alert.objects.filter(check_name="worker", cleared_at=None).exists())


class HealthChecksTestCase(BaseTestCase):
    def test_queues_say_how_old_the_oldest_message_of_each_sender_is(self) -> None:
        self.make_contact("ann@example.com")
        self.start_campaign()
        result = health.check_queues()
        self.assertEqual(result.status, OK)
        self.assertRegex(result.message, r"Alice's project / Mailbox: 1 queued, oldest \d+ s")

    def test_a_failing_webhook_endpoint_is_a_warning_and_a_disabled_one_an_error(self) -> None:
        self.assertEqual(health.check_webhooks().status, OK)
        endpoint = webhooks.create_endpoint(self.project, "https://93.184.216.34/", ["email.sent"])
        endpoint.failing_since = timezone.now()
        endpoint.save()
        self.assertEqual(health.check_webhooks().status, WARNING)
        webhooks.disable(endpoint, "Every delivery failed for 24 hours (40 attempts).")
        result = health.check_webhooks()
        self.assertEqual(result.status, ERROR)
        self.assertIn("disabled", result.message)

    def test_little_free_disk_is_a_warning_then_an_error(self) -> None:
        usage = mock.Mock(free=health.DISK_WARNING_BYTES - 1)
        with mock.patch("shutil.disk_usage", return_value=usage):
            self.assertEqual(health.check_disk().status, WARNING)
        usage.free = health.DISK_ERROR_BYTES - 1
        with mock.patch("shutil.disk_usage", return_value=usage):
            self.assertEqual(health.check_disk().status, ERROR)
        self.assertEqual(health.check_disk().status, OK)  # this machine's real disk


class MetricsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        from postroom.ops import metrics

        metrics._settled["at"] = float("-inf")  # each test counts afresh

    def test_it_gives_the_ledger_senders_events_and_workers_in_prometheus_format(self) -> None:
        self.make_contact("ann@example.com")
        self.start_campaign()
        WorkerHeartbeat.objects.create(name="host:1")
        r = self.client.get("/metrics", REMOTE_ADDR="127.0.0.1")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        text = r.content.decode()
        self.assertIn('postroom_messages{state="queued"} 1', text)
        self.assertIn('postroom_messages{state="sent"} 0', text)
        self.assertIn("# TYPE postroom_events_total counter", text)
        self.assertRegex(
            text,
            r'postroom_queue_oldest_seconds\{project="Alice\'s project",sender="Mailbox"\} \d+',
        )
        self.assertIn("postroom_workers 1", text)

    def test_it_answers_loopback_staff_or_the_token_only(self) -> None:
        self.assertEqual(self.client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code, 403)
        self.login()
        self.assertEqual(self.client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code, 403)
        User.objects.filter(pk=self.alice.pk).update(is_staff=True)
        self.assertEqual(self.client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code, 200)
        self.client.logout()
        with override_settings(METRICS_TOKEN="t0ken"):
            self.assertEqual(self.client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code, 401)
            r = self.client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken")
            self.assertEqual(r.status_code, 200)
