"""Automations run: triggers start runs, steps move them on, waits hold them until their time,
cancel events stop them; and the whole way from `track` to a signed webhook."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import zoneinfo
from collections import Counter
from unittest import mock

from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from postroom.automations import actions
from postroom.automations.models import Automation, Run, Step
from postroom.contacts.actions import add_tags, set_tags
from postroom.contacts.models import Contact, ContactTag, Segment
from postroom.delivery.models import MailboxMessage, Message
from postroom.test import BaseTestCase, drain
from postroom.tracking.models import Event
from postroom.webhooks import actions as webhooks
from postroom.webhooks.models import Delivery
from postroom.webhooks.signing import verify
from postroom.webhooks.tests.receiver import Receiver


@contextlib.contextmanager
def later(delta: dt.timedelta):
    """The clock moved on by `delta` (every timezone.now() call sees it)."""
    moved = timezone.now() + delta
    with mock.patch("django.utils.timezone.now", return_value=moved):
        yield moved


def run_due() -> int:
    batches = 0
    while actions.handle_one_automation_batch():
        batches += 1
    return batches


def read_events() -> None:
    while actions.read_events(settle=0):
        pass


class RunsFixture(BaseTestCase):
    def automation(self, steps: list[tuple[str, dict]], **fields) -> Automation:
        automation = Automation(project=self.project)
        fields = {"name": "Welcome", "trigger": "event", "trigger_event": "signup", **fields}
        actions.save_automation(automation, fields)
        for kind, config in steps:
            actions.add_step(automation, kind, config)
        actions.set_enabled(automation, True)
        return automation

    def track(self, event: str, email: str = "ann@example.com", **data) -> None:
        r = self.api("POST", "track", {"event": event, "email": email, "data": data})
        self.assertEqual(r.status_code, 200, r.content)
        read_events()


class RunsTestCase(RunsFixture):
    def test_an_event_starts_a_run_that_waits_then_sends_and_tags(self) -> None:
        self.automation(
            [
                ("wait", {"amount": 1, "unit": "days"}),
                ("send", {"subject": "Welcome, {{ contact.first_name }}", "body": "Hello!"}),
                ("add_tag", {"tag": "welcomed"}),
            ]
        )
        self.track("signup", plan="pro")
        run = Run.objects.get()
        self.assertEqual(
            (run.state, run.position, run.trigger["data"]), ("waiting", 0, {"plan": "pro"})
        )
        run_due()
        run.refresh_from_db()
        self.assertEqual(run.position, 1)
        self.assertGreater(run.next_run_at, timezone.now() + dt.timedelta(hours=23))
        self.assertEqual(run_due(), 0)  # not yet
        self.assertFalse(Message.objects.filter(email__kind="automation").exists())
        with later(dt.timedelta(days=1, minutes=1)):
            run_due()
        run.refresh_from_db()
        self.assertEqual((run.state, run.position), ("done", 3))
        message = Message.objects.get(email__kind="automation")
        self.assertEqual((message.to_email, message.priority), ("ann@example.com", 1))
        self.assertTrue(
            ContactTag.objects.filter(contact=run.contact, tag__name="welcomed").exists()
        )
        drain()
        self.assertTrue(MailboxMessage.objects.filter(message=message).exists())
        self.assertEqual(Step.objects.get(kind="send").email_id, message.email_id)

    def test_once_per_contact_or_every_time(self) -> None:
        once = self.automation([("add_tag", {"tag": "a"})])
        every = self.automation([("add_tag", {"tag": "b"})], name="Every", repeat="every")
        self.track("signup")
        self.track("signup")
        self.assertEqual(Run.objects.filter(automation=once).count(), 1)
        self.assertEqual(Run.objects.filter(automation=every).count(), 2)

    def test_a_cancel_event_stops_a_waiting_run(self) -> None:
        self.automation(
            [
                ("wait", {"amount": 2, "unit": "days"}),
                ("send", {"subject": "Still there?", "body": "Hi"}),
            ],
            cancel_event="purchase",
        )
        self.track("signup")
        run_due()
        self.track("purchase")
        run = Run.objects.get()
        self.assertEqual(run.state, "cancelled")
        self.assertIn("purchase", run.last_error)
        with later(dt.timedelta(days=3)):
            run_due()
        self.assertFalse(Message.objects.filter(email__kind="automation").exists())

    def test_a_condition_goes_on_exits_or_jumps(self) -> None:
        self.automation(
            [
                ("condition", {"test": "tag", "tag": "vip", "else": 3}),
                ("add_tag", {"tag": "vip-path"}),
                ("add_tag", {"tag": "everyone"}),
            ]
        )
        self.make_contact("vip@example.com", tags=["vip"])
        self.track("signup", email="vip@example.com")
        self.track("signup", email="ann@example.com")
        run_due()
        tags = {
            c.email: set(c.contacttag_set.values_list("tag__name", flat=True))
            for c in Contact.objects.filter(project=self.project)
        }
        self.assertEqual(tags["vip@example.com"], {"vip", "vip-path", "everyone"})
        self.assertEqual(tags["ann@example.com"], {"everyone"})

    def test_an_event_condition_and_an_exit(self) -> None:
        self.automation(
            [
                (
                    "condition",
                    {"test": "event", "event": "purchase", "within_days": 7, "else": "exit"},
                ),
                ("add_tag", {"tag": "buyer"}),
            ]
        )
        self.track("signup")
        run_due()
        run = Run.objects.get()
        self.assertEqual(run.state, "done")
        self.assertIn("did not hold", run.last_error)

    def test_a_tag_added_starts_the_tag_automations(self) -> None:
        automation = self.automation(
            [("update_field", {"field": "first_name", "value": "VIP"})],
            trigger="tag",
            trigger_tag="vip",
        )
        contact = self.make_contact("ann@example.com")
        set_tags(contact, ["vip"])
        set_tags(contact, ["vip", "other"])  # already had it: not added again
        self.assertEqual(Run.objects.filter(automation=automation).count(), 1)
        run_due()
        contact.refresh_from_db()
        self.assertEqual(contact.first_name, "VIP")

    def test_tags_a_signup_or_a_step_adds_start_the_tag_automations_too(self) -> None:
        automation = self.automation(
            [("exit", {})], trigger="tag", trigger_tag="vip", repeat="every"
        )
        contact = self.make_contact("ann@example.com")
        self.assertEqual(add_tags(contact, ["vip", "news"]), {"vip", "news"})
        self.assertEqual(add_tags(contact, ["vip"]), set())  # had it: not added again
        self.assertEqual(Run.objects.filter(automation=automation).count(), 1)

    def test_entering_a_segment_starts_a_run_and_who_was_in_it_does_not(self) -> None:
        self.make_contact("pro.old@example.com")
        segment = Segment.objects.create(
            project=self.project,
            name="Pros",
            rules={
                "match": "all",
                "rules": [{"kind": "email", "op": "starts_with", "value": "pro"}],
            },
        )
        automation = self.automation(
            [("add_tag", {"tag": "pro"})], trigger="segment", trigger_segment=str(segment.code)
        )
        self.assertEqual(actions.check_segment_triggers(), 0)
        self.make_contact("pro.new@example.com")
        self.make_contact("someone@example.com")
        self.assertEqual(actions.check_segment_triggers(), 1)
        self.assertEqual(
            Run.objects.get(automation=automation).contact.email, "pro.new@example.com"
        )
        self.assertEqual(actions.check_segment_triggers(), 0)  # it entered once
        # Saving the automation again with the same segment loses no one who entered since.
        self.make_contact("pro.third@example.com")
        actions.save_automation(automation, {"name": "Renamed"})
        self.assertEqual(actions.check_segment_triggers(), 1)

    def test_a_wait_until_a_time_of_day_in_the_contacts_zone(self) -> None:
        self.automation(
            [("wait", {"until": "09:00", "zone": "contact"}), ("add_tag", {"tag": "x"})]
        )
        self.track("signup", timezone="Asia/Tokyo")
        run_due()
        at = Run.objects.get().next_run_at.astimezone(dt.timezone(dt.timedelta(hours=9)))
        self.assertEqual((at.hour, at.minute), (9, 0))
        self.assertLess(at - timezone.now(), dt.timedelta(days=1))

    def test_a_wait_until_a_time_of_day_in_the_projects_zone(self) -> None:
        self.project.time_zone = "America/New_York"
        self.project.save()
        self.automation([("wait", {"until": "18:30", "zone": "project"}), ("exit", {})])
        self.track("signup", timezone="Asia/Tokyo")  # theirs, not asked for here
        run_due()
        at = Run.objects.get().next_run_at.astimezone(zoneinfo.ZoneInfo("America/New_York"))
        self.assertEqual((at.hour, at.minute), (18, 30))

    def test_a_step_that_cannot_run_fails_the_run_naming_that_step(self) -> None:
        endpoint = webhooks.create_endpoint(
            self.project, "https://93.184.216.34/hook", ["email.sent"]
        )
        self.automation([("add_tag", {"tag": "a"}), ("webhook", {"endpoint": str(endpoint.code)})])
        endpoint.delete()
        self.track("signup")
        run_due()
        run = Run.objects.get()
        self.assertEqual(run.state, "failed")
        self.assertIn("Step 2: its webhook endpoint is gone", run.last_error)
        # Its steps rolled back with it: the tag of step 1 was not added.
        self.assertFalse(ContactTag.objects.filter(tag__name="a").exists())

    def test_bad_steps_and_settings_name_the_field(self) -> None:
        automation = Automation(project=self.project)
        with self.assertRaisesMessage(actions.AutomationError, "trigger_event"):
            actions.save_automation(automation, {"name": "X", "trigger": "event"})
        actions.save_automation(automation, {"name": "X", "trigger": "event", "trigger_event": "e"})
        for kind, config, field in (
            ("wait", {"amount": 0}, "amount"),
            ("wait", {"amount": 1, "unit": ["days"]}, "unit"),
            ("wait", {"until": "25:00"}, "until"),
            ("condition", {"test": "tag", "tag": "a", "else": 1}, "else"),
            ("send", {"subject": "Hi"}, "body"),
            ("update_field", {"field": "nope"}, "field"),
            ("nope", {}, "kind"),
        ):
            with (
                self.subTest(kind=kind, field=field),
                self.assertRaises(actions.AutomationError) as e,
            ):
                actions.add_step(automation, kind, config)
            self.assertEqual(e.exception.field, field)
        with self.assertRaisesMessage(actions.AutomationError, "add a step first"):
            actions.set_enabled(automation, True)

    def test_steps_are_inserted_moved_and_deleted_in_order(self) -> None:
        automation = self.automation([("add_tag", {"tag": "a"}), ("add_tag", {"tag": "c"})])
        actions.add_step(automation, "add_tag", {"tag": "b"}, at=1)
        order = lambda: [s.config["tag"] for s in automation.steps.order_by("position")]  # noqa: E731
        self.assertEqual(order(), ["a", "b", "c"])
        actions.move_step(automation.steps.get(position=2), -1)
        self.assertEqual(order(), ["a", "c", "b"])
        actions.delete_step(automation.steps.get(position=0))
        self.assertEqual(order(), ["c", "b"])
        self.assertEqual(list(automation.steps.values_list("position", flat=True)), [0, 1])


class ReadInBatchesTestCase(RunsFixture):
    """The reader handles a batch of events in a few statements (RunPlan), and ends where
    handling each event alone, in id order, ends."""

    # (event, contact): starts and cancels of the same contacts, interleaved.
    EVENTS = [
        ("signup", "ann"), ("signup", "bob"), ("purchase", "ann"), ("signup", "ann"),
        ("signup", "cid"), ("signup", "cid"), ("purchase", "bob"), ("purchase", "dan"),
        ("signup", "dan"), ("purchase", "cid"), ("signup", "bob"), ("other", "ann"),
    ]  # fmt: skip

    def setUp(self) -> None:
        super().setUp()
        wait = [("wait", {"amount": 1, "unit": "days"})]
        self.automation(wait, name="Once", cancel_event="purchase")
        self.automation(wait, name="Every", repeat="every", cancel_event="purchase")
        self.automation(wait, name="On purchase", trigger_event="purchase", cancel_event="signup")
        names = ("ann", "bob", "cid", "dan")
        self.contacts = {n: self.make_contact(f"{n}@example.com") for n in names}
        # From before: Dan is waiting in "Every" (a purchase cancels it), and was in "Once".
        for name in ("Every", "Once"):
            Run.objects.create(
                project=self.project, automation=Automation.objects.get(name=name),
                contact=self.contacts["dan"], state="waiting" if name == "Every" else "done",
            )  # fmt: skip
        self.first_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        for name, who in self.EVENTS:
            Event.objects.create(project=self.project, kind=Event.Kind.CUSTOM, name=name,
                                 contact=self.contacts[who], data={"who": who})  # fmt: skip
        self.last_id = Event.objects.order_by("-id").values_list("id", flat=True).first()

    def outcome(self) -> list[tuple]:
        return sorted(
            (run.automation.name, run.contact.email, run.state, run.last_error,
             run.trigger.get("id", ""), run.finished_at is not None)
            for run in Run.objects.select_related("automation", "contact")
        )  # fmt: skip

    def handled(self, one_at_a_time: bool) -> list[tuple]:
        with transaction.atomic():
            if one_at_a_time:
                for event_id in range(self.first_id + 1, self.last_id + 1):
                    actions.handle_events(event_id - 1, event_id)
            else:
                actions.handle_events(self.first_id, self.last_id)
            outcome = self.outcome()
            transaction.set_rollback(True)
        return outcome

    def test_a_batch_ends_where_one_event_at_a_time_ends(self) -> None:
        batch = self.handled(one_at_a_time=False)
        self.assertEqual(batch, self.handled(one_at_a_time=True))
        states = Counter((name, state) for name, _, state, *_ in batch)
        self.assertEqual(
            states,
            # Worked out by hand, event by event.
            {("Once", "cancelled"): 3, ("Once", "done"): 1,
             ("Every", "waiting"): 3, ("Every", "cancelled"): 5,
             ("On purchase", "waiting"): 1, ("On purchase", "cancelled"): 3},
        )  # fmt: skip

    def test_a_batch_takes_a_few_statements_whatever_its_size(self) -> None:
        # The automations (2), the events, who had a run of each "once" automation (2), the
        # cancels of each automation cancelled (3), the new runs.
        with self.assertNumQueries(9):
            actions.handle_events(self.first_id, self.last_id)


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True, SCANNER_SECONDS=0)
class EndToEndTestCase(BaseTestCase):
    def test_track_wait_send_through_the_mailbox_and_a_signed_webhook(self) -> None:
        """The acceptance of issue 8: `track` an event, the automation waits (the clock is
        moved on), sends through the Mailbox sender, and a webhook endpoint on loopback gets
        the signed payload of the email's "sent" event, whose signature verifies."""
        automation = Automation(project=self.project)
        actions.save_automation(
            automation, {"name": "Welcome", "trigger": "event", "trigger_event": "signup"}
        )
        actions.add_step(automation, "wait", {"amount": 2, "unit": "hours"})
        actions.add_step(
            automation, "send", {"subject": "Welcome to {{ contact.email }}", "body": "Hi"}
        )
        actions.set_enabled(automation, True)
        with Receiver() as receiver:
            endpoint = webhooks.create_endpoint(self.project, receiver.url, ["email.sent"])
            r = self.api("POST", "track", {"event": "signup", "email": "ann@example.com"})
            self.assertEqual(r.json()["success"], True)
            read_events()
            run_due()
            self.assertFalse(Message.objects.filter(email__kind="automation").exists())
            with later(dt.timedelta(hours=2, minutes=1)):
                run_due()
                drain()  # the send loop, through the project's Mailbox sender
            copy = MailboxMessage.objects.get()
            self.assertIn(b"Welcome to ann@example.com", bytes(copy.raw))
            while webhooks.read_email_events(settle=0):
                pass
            while webhooks.handle_one_webhook_batch():
                pass
        [got] = receiver.received
        self.assertTrue(verify(endpoint.secret, got.headers["Postroom-Signature"], got.body))
        body = json.loads(got.body)
        self.assertEqual(body["type"], "email.sent")
        self.assertEqual(body["data"]["email"], "ann@example.com")
        self.assertEqual(body["data"]["message"], str(copy.message.code))
        self.assertEqual(Delivery.objects.get().state, "succeeded")
        self.assertEqual(Event.objects.filter(kind="sent", message=copy.message).count(), 1)


class ProtectedByAutomationsTestCase(BaseTestCase):
    def test_a_segment_or_sender_an_automation_uses_is_not_deleted_and_says_why(self) -> None:
        from postroom.delivery.models import Sender

        segment = Segment.objects.create(
            project=self.project, name="Pros", rules={"match": "all", "rules": []}
        )
        sender = Sender.objects.create(project=self.project, name="Relay", from_email="a@b.co")
        automation = Automation(project=self.project, sender=sender)
        actions.save_automation(
            automation, {"name": "Pros", "trigger": "segment", "trigger_segment": segment.code}
        )
        r = self.api("DELETE", f"segments/{segment.code}")
        body = self.assert_error(r, 409, "segment")
        self.assertIn("“Pros” start from this segment", body["message"])
        self.login()
        r = self.client.post(self.url(f"segments/{segment.code}/delete/"), follow=True)
        self.assertContains(r, "Not deleted: the automations “Pros” start from this segment")
        r = self.client.post(self.url(f"senders/{sender.code}/delete/"), follow=True)
        self.assertContains(r, "The automations “Pros” send through this sender")
        self.assertTrue(Segment.objects.filter(pk=segment.pk).exists())
        self.assertTrue(Sender.objects.filter(pk=sender.pk).exists())
