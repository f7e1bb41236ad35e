"""Queueing and delivering: emitted in the transaction of what happened, email events read
from the events, posted signed, retried with backoff, given up after a day, and an endpoint
that keeps failing disabled with an email to the project's admins."""

from __future__ import annotations

import json
from datetime import timedelta as td

from django.core import mail
from django.test import override_settings
from django.utils import timezone

from postroom.contacts.actions import ContactChanges, create_contact, update_contact
from postroom.imports.tests.test_import_files import ImportTestCase
from postroom.test import BaseTestCase, drain
from postroom.webhooks import actions
from postroom.webhooks.models import Delivery, Endpoint
from postroom.webhooks.signing import verify
from postroom.webhooks.tests.receiver import Receiver


def deliver_all() -> int:
    steps = 0
    while actions.handle_one_webhook_batch():
        steps += 1
    return steps


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
class DeliveriesTestCase(BaseTestCase):
    def endpoint(self, url: str, types: list[str] | None = None) -> Endpoint:
        return actions.create_endpoint(self.project, url, types or ["contact.created"])

    def test_a_contact_created_is_posted_signed(self) -> None:
        with Receiver() as receiver:
            endpoint = self.endpoint(receiver.url)
            contact = create_contact(self.project, "ann@example.com", first_name="Ann")
            self.assertEqual(deliver_all(), 1)
        [got] = receiver.received
        body = json.loads(got.body)
        self.assertEqual((body["type"], body["data"]["id"]), ("contact.created", str(contact.code)))
        self.assertEqual(body["data"]["email"], "ann@example.com")
        self.assertTrue(verify(endpoint.secret, got.headers["Postroom-Signature"], got.body))
        self.assertEqual(got.headers["Postroom-Event"], "contact.created")
        delivery = Delivery.objects.get()
        self.assertEqual(got.headers["Postroom-Delivery"], str(delivery.code))
        self.assertEqual(
            (delivery.state, delivery.attempts, delivery.last_status), ("succeeded", 1, 200)
        )
        self.assertEqual(delivery.last_response, '{"ok": true}')
        endpoint.refresh_from_db()
        self.assertIsNotNone(endpoint.last_success_at)

    def test_only_subscribed_types_of_this_project_are_queued(self) -> None:
        self.endpoint("http://127.0.0.1:9/hook", ["contact.updated"])
        contact = create_contact(self.project, "ann@example.com")
        create_contact(self.charlies_project, "ann@example.com")
        self.assertFalse(Delivery.objects.exists())
        update_contact(contact, ContactChanges(first_name="Ann", status="unsubscribed"))
        self.assertEqual(
            list(Delivery.objects.values_list("event_type", flat=True)), ["contact.updated"]
        )

    def test_email_events_are_read_from_the_events(self) -> None:
        self.endpoint("http://127.0.0.1:9/hook", ["email.sent"])
        self.make_contact("ann@example.com")
        campaign = self.start_campaign()
        drain()
        while actions.read_email_events(settle=0):
            pass
        delivery = Delivery.objects.get(event_type="email.sent")
        data = delivery.payload["data"]
        self.assertEqual(data["email"], "ann@example.com")
        self.assertEqual(data["campaign"], {"id": str(campaign.code), "name": campaign.name})
        self.assertIsNotNone(data["message"])

    def test_a_failure_is_retried_later_and_the_endpoint_backs_off(self) -> None:
        with Receiver(status=500, answer=b"database down") as receiver:
            endpoint = self.endpoint(receiver.url)
            create_contact(self.project, "ann@example.com")
            create_contact(self.project, "bob@example.com")
            deliver_all()
            self.assertEqual(len(receiver.received), 2)  # both were due at once
            self.assertFalse(actions.handle_one_webhook_batch())  # the endpoint waits now
            for delivery in Delivery.objects.all():
                self.assertEqual((delivery.state, delivery.last_status), ("pending", 500))
                self.assertEqual(delivery.last_response, "database down")
                self.assertGreater(delivery.next_attempt_at, timezone.now() + td(seconds=20))
            endpoint.refresh_from_db()
            self.assertEqual(endpoint.consecutive_failures, 2)
            # Time passes; it answers again.
            Delivery.objects.update(next_attempt_at=timezone.now())
            Endpoint.objects.update(next_attempt_at=timezone.now())
            receiver.status = 204
            deliver_all()
        self.assertEqual(set(Delivery.objects.values_list("state", flat=True)), {"succeeded"})
        endpoint.refresh_from_db()
        self.assertEqual((endpoint.consecutive_failures, endpoint.failing_since), (0, None))

    def test_a_step_takes_a_few_deliveries_of_one_endpoint_and_more_of_others(self) -> None:
        slow = self.endpoint("http://127.0.0.1:9/slow")
        other = self.endpoint("http://127.0.0.1:9/other")
        for i in range(6):
            create_contact(self.project, f"c{i}@example.com")  # 6 deliveries for each
        _, batch = actions.claim_deliveries(actions.BATCH)
        per_endpoint = {e.id: sum(d.endpoint_id == e.id for d in batch) for e in (slow, other)}
        self.assertEqual(per_endpoint, {slow.id: 4, other.id: 4})

    def test_a_day_of_failures_gives_up_and_disables_the_endpoint_with_an_alert(self) -> None:
        endpoint = self.endpoint("http://127.0.0.1:9/nobody-listens")
        create_contact(self.project, "ann@example.com")
        create_contact(self.project, "bob@example.com")
        a_day_ago = timezone.now() - td(hours=25)
        Delivery.objects.filter(payload__data__email="ann@example.com").update(created_at=a_day_ago)
        Endpoint.objects.update(failing_since=a_day_ago)
        actions.handle_one_webhook_batch()
        endpoint.refresh_from_db()
        self.assertFalse(endpoint.enabled)
        self.assertIn("failed for 24 hours", endpoint.disabled_reason)
        self.assertEqual(set(Delivery.objects.values_list("state", flat=True)), {"failed"})
        [alert] = mail.outbox
        self.assertIn("Webhook endpoint disabled", alert.subject)
        self.assertIn("http://127.0.0.1:9/nobody-listens", alert.body)
        self.assertEqual(alert.to, ["alice@example.org"])
        self.assertFalse(actions.handle_one_webhook_batch())

    def test_a_redirect_is_not_followed_and_a_refused_target_fails(self) -> None:
        with Receiver(status=302) as receiver:
            self.endpoint(receiver.url)
            create_contact(self.project, "ann@example.com")
            deliver_all()
        self.assertEqual(Delivery.objects.get().last_status, 302)  # a failure, retried later
        Delivery.objects.update(next_attempt_at=timezone.now())
        Endpoint.objects.update(next_attempt_at=None)
        with override_settings(WEBHOOKS_ALLOW_PRIVATE=False):
            deliver_all()
        self.assertIn("private, loopback", Delivery.objects.get().last_error)

    def test_a_redelivery_posts_the_same_body_again(self) -> None:
        with Receiver() as receiver:
            self.endpoint(receiver.url)
            create_contact(self.project, "ann@example.com")
            deliver_all()
            actions.redeliver(Delivery.objects.get())
            deliver_all()
        first, second = (json.loads(r.body) for r in receiver.received)
        self.assertEqual(first, second)  # the same event id: receivers drop the repeat
        self.assertEqual(Delivery.objects.filter(state="succeeded").count(), 2)

    def test_a_campaign_started_and_finished_are_emitted(self) -> None:
        self.endpoint("http://127.0.0.1:9/hook", ["campaign.started", "campaign.finished"])
        self.make_contact("ann@example.com")
        self.start_campaign()
        drain()
        from postroom.campaigns.actions import finish_done_campaigns

        finish_done_campaigns()
        self.assertEqual(
            list(Delivery.objects.order_by("id").values_list("event_type", flat=True)),
            ["campaign.started", "campaign.finished"],
        )


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
class ImportFinishedTestCase(ImportTestCase):
    def test_an_import_finished_is_emitted_with_its_counts(self) -> None:
        actions.create_endpoint(self.project, "http://127.0.0.1:9/hook", ["import.finished"])
        imp = self.run_import(self.upload("rfc4180.csv"))
        delivery = Delivery.objects.get(event_type="import.finished")
        data = delivery.payload["data"]
        self.assertEqual((data["id"], data["state"]), (str(imp.code), "done"))
        self.assertEqual(data["counts"]["created"], imp.created)


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
class TrackCreatesContactsTestCase(BaseTestCase):
    def test_a_contact_that_track_creates_is_emitted_once(self) -> None:
        actions.create_endpoint(self.project, "http://127.0.0.1:9/hook", ["contact.created"])
        for _ in range(2):  # the second call updates the same contact
            r = self.api("POST", "track", {"event": "signup", "email": "ann@example.com"})
            self.assertEqual(r.status_code, 200)
        [delivery] = Delivery.objects.all()
        self.assertEqual(delivery.payload["data"]["email"], "ann@example.com")
