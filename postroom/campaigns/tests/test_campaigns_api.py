from __future__ import annotations

import datetime as dt
import email as email_lib
from datetime import timedelta as td
from email.policy import default as default_policy
from unittest import mock

from django.utils import timezone

from postroom.campaigns import actions
from postroom.campaigns.models import Campaign
from postroom.contacts.actions import suppress
from postroom.contacts.models import Segment
from postroom.content.models import Template
from postroom.delivery.actions import default_sender
from postroom.delivery.models import MailboxMessage, Message, Sender
from postroom.test import BaseTestCase, drain

LAYOUT = "<html><body><h1>{{ project.name }}</h1>{{ content }}</body></html>"
UNKNOWN = "00000000-0000-0000-0000-000000000000"


def run_campaigns() -> None:
    """The worker's campaign steps and the send loop, until nothing is left to do."""
    while actions.start_due_campaigns() | bool(drain()) | actions.finish_done_campaigns():
        pass


class CampaignsApiTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_contact("ann@example.com", first_name="Ann", tags=["vip"])
        self.make_contact("bob@example.com", tags=["vip"])
        self.make_contact("cy@example.com", status="unsubscribed", tags=["vip"])
        self.make_contact("dee@example.com")
        suppress(self.project, "bob@example.com", reason="complaint")
        self.sender = default_sender(self.project)

    def create(self, **fields) -> dict:
        r = self.api(
            "POST", "campaigns", {"name": "News", "subject": "Hi", "body": "Hello", **fields}
        )
        self.assertEqual(r.status_code, 201, r.content)
        return r.json()

    def campaign(self, body: dict) -> Campaign:
        return Campaign.objects.get(code=body["id"])

    def charlies_campaign(self) -> Campaign:
        return self.make_campaign(self.charlies_project, name="Charlie's", body="B")

    # --- create, read, update, delete ----------------------------------------------------------

    def test_it_creates_a_draft_with_the_default_sender(self) -> None:
        body = self.create(subject="News\r\nfor you")
        self.assertEqual(body["state"], "draft")
        self.assertEqual(body["sender_id"], str(self.sender.code))
        self.assertEqual(body["from_email"], self.sender.from_email)
        self.assertEqual(body["from_name"], self.sender.from_name)
        self.assertEqual(body["subject"], "News for you")  # one line, as the dashboard saves it
        self.assertEqual((body["audience"], body["body_format"]), ("all", "markdown"))
        self.assertTrue(body["track_links"] and body["track_opens"])
        self.assertIsNone(body["recipients"])
        self.assertEqual(self.campaign(body).project, self.project)

    def test_it_creates_a_draft_for_a_segment_with_a_layout(self) -> None:
        segment = Segment.objects.create(project=self.project, name="A", rules={"match": "all"})
        layout = Template.objects.create(project=self.project, name="Brand", source=LAYOUT)
        body = self.create(
            audience="segment",
            segment_id=str(segment.code),
            layout_id=str(layout.code),
            from_name="Acme",
            reply_to="help@example.com",
            track_opens=False,
        )
        self.assertEqual(body["segment_id"], str(segment.code))
        self.assertEqual(body["layout_id"], str(layout.code))
        self.assertEqual((body["from_name"], body["reply_to"]), ("Acme", "help@example.com"))
        self.assertFalse(body["track_opens"])

    def test_it_keeps_the_tags_as_a_list(self) -> None:
        body = self.create(audience="tags", tags=["vip", " ", "a, b"])
        self.assertEqual(body["tags"], ["vip", "a, b"])

    def test_another_sender_gives_its_own_from_address(self) -> None:
        relay = Sender.objects.create(
            project=self.project, name="Relay", kind="smtp", from_email="news@acme.example"
        )
        body = self.create(sender_id=str(relay.code))
        self.assertEqual(
            (body["sender_id"], body["from_email"]), (str(relay.code), relay.from_email)
        )

    def test_bad_input_is_a_422_naming_the_field(self) -> None:
        charlies_sender = default_sender(self.charlies_project)
        charlies_segment = Segment.objects.create(project=self.charlies_project, name="S", rules={})
        plain = Template.objects.create(project=self.project, name="Plain", source="<p>Hi</p>")
        theirs = Template.objects.create(project=self.charlies_project, name="T", source=LAYOUT)
        ok = {"name": "N", "subject": "S", "body": "B"}
        cases = [
            ({"subject": "S"}, "name"),
            ({**ok, "name": 123}, "name"),
            ({**ok, "name": "x" * 201}, "name"),
            ({**ok, "from_email": "me@elsewhere.org"}, "from_email"),
            ({**ok, "from_email": "not an address"}, "from_email"),
            ({**ok, "reply_to": "jörg@example.com"}, "reply_to"),
            ({**ok, "audience": "everyone"}, "audience"),
            ({**ok, "audience": "segment"}, "segment_id"),
            ({**ok, "audience": "tags", "tags": []}, "tags"),
            ({**ok, "tags": "vip"}, "tags"),
            ({**ok, "body_format": "pdf"}, "body_format"),
            ({**ok, "track_links": "perhaps"}, "track_links"),
            ({**ok, "sender_id": "not-a-uuid"}, "sender_id"),
            ({**ok, "sender_id": UNKNOWN}, "sender_id"),
            ({**ok, "sender_id": str(charlies_sender.code)}, "sender_id"),
            ({**ok, "segment_id": str(charlies_segment.code)}, "segment_id"),
            ({**ok, "layout_id": str(theirs.code)}, "layout_id"),
            ({**ok, "layout_id": str(plain.code)}, "layout_id"),
        ]
        for data, field in cases:
            with self.subTest(data=data):
                self.assert_error(self.api("POST", "campaigns", data), 422, field)
        self.assertFalse(Campaign.objects.exists())

    def test_a_template_error_is_a_422_naming_its_line_and_column(self) -> None:
        r = self.api(
            "POST", "campaigns", {"name": "N", "subject": "S", "body": "Hi\n\n{{ contact.x "}
        )
        body = self.assert_error(r, 422, "body")
        self.assertIn("Body, line 3, column", body["message"])
        r = self.api("POST", "campaigns", {"name": "N", "subject": "Hi {% if %}", "body": "B"})
        self.assertIn("Subject, line 1", self.assert_error(r, 422, "subject")["message"])
        r = self.api(
            "POST",
            "campaigns",
            {
                "name": "N",
                "subject": "S",
                "body": "{{ cycler.__init__.__globals__.os.system('id') }}",
            },
        )
        self.assert_error(r, 422, "body")
        self.assertFalse(Campaign.objects.exists())

    def test_it_lists_with_a_cursor_and_a_state_filter(self) -> None:
        first, second, third = (self.create(name=f"C{i}") for i in range(3))
        self.charlies_campaign()
        r = self.api("GET", "campaigns", {"limit": 2})
        page = r.json()
        self.assertEqual([c["name"] for c in page["items"]], ["C2", "C1"])
        r = self.api("GET", "campaigns", {"limit": 2, "cursor": page["next_cursor"]})
        self.assertEqual([c["name"] for c in r.json()["items"]], ["C0"])
        self.assertIsNone(r.json()["next_cursor"])
        self.api("POST", f"campaigns/{second['id']}/send")
        r = self.api("GET", "campaigns", {"state": "scheduled"})
        self.assertEqual([c["id"] for c in r.json()["items"]], [second["id"]])
        # A malformed cursor is the first page, as everywhere.
        self.assertEqual(len(self.api("GET", "campaigns", {"cursor": "%%%"}).json()["items"]), 3)

    def test_list_parameters_are_checked(self) -> None:
        for params, field in (
            ({"limit": 0}, "limit"),
            ({"limit": 101}, "limit"),
            ({"limit": "many"}, "limit"),
            ({"state": "lost"}, "state"),
        ):
            with self.subTest(params=params):
                self.assert_error(self.api("GET", "campaigns", params), 422, field)

    def test_it_gets_a_campaign(self) -> None:
        created = self.create()
        r = self.api("GET", f"campaigns/{created['id']}")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json(), created)

    def test_it_updates_only_the_given_fields(self) -> None:
        segment = Segment.objects.create(project=self.project, name="A", rules={"match": "all"})
        created = self.create(audience="segment", segment_id=str(segment.code), from_name="Acme")
        before = self.campaign(created).updated_at
        r = self.api("PATCH", f"campaigns/{created['id']}", {"subject": "New", "tags": ["vip"]})
        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual((body["subject"], body["tags"]), ("New", ["vip"]))
        self.assertEqual((body["name"], body["from_name"]), ("News", "Acme"))
        self.assertEqual(body["segment_id"], str(segment.code))
        self.assertGreater(self.campaign(created).updated_at, before)
        r = self.api("PATCH", f"campaigns/{created['id']}", {"audience": "all", "segment_id": None})
        self.assertIsNone(r.json()["segment_id"])

    def test_a_new_sender_brings_its_from_address_unless_one_is_given(self) -> None:
        relay = Sender.objects.create(
            project=self.project,
            name="Relay",
            kind="smtp",
            from_email="news@acme.example",
            from_domains="mail.acme.example",
        )
        created = self.create()
        url = f"campaigns/{created['id']}"
        r = self.api("PATCH", url, {"sender_id": str(relay.code)})
        self.assertEqual(r.json()["from_email"], "news@acme.example")
        r = self.api("PATCH", url, {"from_email": "hi@mail.acme.example"})
        self.assertEqual(r.json()["from_email"], "hi@mail.acme.example")
        r = self.api(
            "PATCH", url, {"sender_id": str(self.sender.code), "from_email": "x@acme.example"}
        )
        self.assert_error(r, 422, "from_email")

    def test_a_bad_patch_is_a_422_and_changes_nothing(self) -> None:
        created = self.create()
        url = f"campaigns/{created['id']}"
        for data, field in (
            ({"name": None}, "name"),
            ({"name": ""}, "name"),
            ({"audience": "tags"}, "tags"),
            ({"body": "{% for %}"}, "body"),
            ({"layout_id": "nope"}, "layout_id"),
            ({"sender_id": None}, "sender_id"),
        ):
            with self.subTest(data=data):
                self.assert_error(self.api("PATCH", url, data), 422, field)
        self.assertEqual(self.api("GET", url).json(), created)

    def test_it_deletes_a_draft_or_a_scheduled_campaign(self) -> None:
        draft, scheduled = self.create(), self.create()
        actions.start(self.campaign(scheduled), when=timezone.now() + td(days=1))
        for created in (draft, scheduled):
            r = self.api("DELETE", f"campaigns/{created['id']}")
            self.assertEqual(r.json(), {"success": True, "id": created["id"]})
            self.assert_error(self.api("GET", f"campaigns/{created['id']}"), 404)
        self.assertFalse(Campaign.objects.exists())

    def test_a_started_campaign_cannot_be_edited_or_deleted(self) -> None:
        campaign = self.start_campaign()
        r = self.api("PATCH", f"campaigns/{campaign.code}", {"name": "Changed"})
        self.assertIn("A sending campaign cannot be edited", self.assert_error(r, 409)["message"])
        r = self.api("DELETE", f"campaigns/{campaign.code}")
        self.assertIn("cannot be deleted", self.assert_error(r, 409)["message"])
        campaign.refresh_from_db()
        self.assertEqual((campaign.name, campaign.state), ("C", "sending"))

    def test_an_edit_never_puts_a_started_campaign_back(self) -> None:
        created = self.create()
        campaign = self.campaign(created)
        actions.start(campaign)

        # The worker starts it while the edit is on its way: a plain save would undo that.
        def started_meanwhile(c: Campaign) -> bool:
            actions.start_due_campaigns()
            return True

        with mock.patch.object(Campaign, "is_editable", started_meanwhile):
            r = self.api("PATCH", f"campaigns/{created['id']}", {"name": "Late"})
        self.assert_error(r, 409)
        campaign.refresh_from_db()
        self.assertEqual((campaign.state, campaign.name), ("sending", "News"))
        self.assertIsNotNone(campaign.email_id)

    # --- audience ------------------------------------------------------------------------------

    def test_it_counts_the_audience_honestly(self) -> None:
        created = self.create()
        r = self.api("GET", f"campaigns/{created['id']}/audience")
        self.assertEqual(
            r.json(), {"matches": 4, "will_send": 2, "not_subscribed": 1, "suppressed": 1}
        )
        tagged = self.create(audience="tags", tags=["vip", "nobody"])
        r = self.api("GET", f"campaigns/{tagged['id']}/audience")
        self.assertEqual((r.json()["matches"], r.json()["will_send"]), (3, 1))

    def test_an_audience_whose_segment_was_deleted_says_so(self) -> None:
        segment = Segment.objects.create(project=self.project, name="A", rules={"match": "all"})
        created = self.create(audience="segment", segment_id=str(segment.code))
        segment.delete()
        r = self.api("GET", f"campaigns/{created['id']}/audience")
        self.assertIn("deleted", self.assert_error(r, 422, "segment_id")["message"])
        r = self.api("POST", f"campaigns/{created['id']}/send")
        self.assert_error(r, 422, "segment_id")
        self.assertEqual(self.campaign(created).state, "draft")

    # --- sending -------------------------------------------------------------------------------

    def test_send_starts_it_and_the_worker_sends_it(self) -> None:
        created = self.create(body="Hello {{ contact.first_name | default('you') }}")
        r = self.api("POST", f"campaigns/{created['id']}/send")
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["state"], "scheduled")
        self.assertIsNotNone(r.json()["scheduled_at"])
        run_campaigns()
        body = self.api("GET", f"campaigns/{created['id']}").json()
        self.assertEqual((body["state"], body["recipients"]), ("finished", 2))
        self.assertIsNotNone(body["started_at"] and body["finished_at"])
        kept = {
            m.message.to_email: email_lib.message_from_bytes(bytes(m.raw), policy=default_policy)
            for m in MailboxMessage.objects.select_related("message")
        }
        self.assertEqual(set(kept), {"ann@example.com", "dee@example.com"})
        html = kept["ann@example.com"].get_body(preferencelist=("html",)).get_content()
        self.assertIn("Hello Ann", html)

    def test_a_started_campaign_cannot_be_sent_again(self) -> None:
        campaign = self.start_campaign()
        r = self.api("POST", f"campaigns/{campaign.code}/send")
        self.assertIn("sending campaign cannot start", self.assert_error(r, 409)["message"])

    def test_it_schedules_a_campaign_in_the_future(self) -> None:
        created = self.create()
        url = f"campaigns/{created['id']}/schedule"
        r = self.api("POST", url, {"at": "2999-01-02T09:30:00+01:00"})
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["state"], "scheduled")
        at = dt.datetime.fromisoformat(r.json()["scheduled_at"])
        self.assertEqual(at, dt.datetime(2999, 1, 2, 8, 30, tzinfo=dt.UTC))
        # Without an offset, the time is read in `time_zone`.
        r = self.api("POST", url, {"at": "2999-07-01T12:00:00", "time_zone": "Europe/Paris"})
        at = dt.datetime.fromisoformat(r.json()["scheduled_at"])
        self.assertEqual(at, dt.datetime(2999, 7, 1, 10, 0, tzinfo=dt.UTC))
        self.assertFalse(actions.start_due_campaigns())  # not yet

    def test_a_schedule_must_be_a_time_in_the_future(self) -> None:
        created = self.create()
        url = f"campaigns/{created['id']}/schedule"
        past = (timezone.now() - td(minutes=1)).isoformat()
        for data, field in (
            ({"at": past}, "at"),
            ({"at": "tomorrow"}, "at"),
            ({}, "at"),
            ({"at": "2999-01-01T00:00:00", "time_zone": "Mars/Olympus"}, "time_zone"),
            ({"at": "9999-12-31T23:59:59-05:00"}, "at"),
        ):
            with self.subTest(data=data):
                self.assert_error(self.api("POST", url, data), 422, field)
        self.assertEqual(self.campaign(created).state, "draft")

    def test_a_started_campaign_cannot_be_scheduled(self) -> None:
        campaign = self.start_campaign()
        r = self.api("POST", f"campaigns/{campaign.code}/schedule", {"at": "2999-01-01T00:00Z"})
        self.assert_error(r, 409)

    def test_unschedule_takes_a_scheduled_campaign_back_to_draft(self) -> None:
        created = self.create()
        self.api("POST", f"campaigns/{created['id']}/schedule", {"at": "2999-01-01T00:00Z"})
        r = self.api("POST", f"campaigns/{created['id']}/unschedule")
        self.assertEqual((r.json()["state"], r.json()["scheduled_at"]), ("draft", None))
        r = self.api("POST", f"campaigns/{created['id']}/unschedule")
        self.assertIn("A draft campaign cannot go back", self.assert_error(r, 409)["message"])
        campaign = self.start_campaign()
        self.assert_error(self.api("POST", f"campaigns/{campaign.code}/unschedule"), 409)

    def test_pause_resume_and_their_wrong_states(self) -> None:
        campaign = self.start_campaign()
        url = f"campaigns/{campaign.code}"
        self.assertEqual(self.api("POST", f"{url}/pause").json()["state"], "paused")
        self.assertEqual(drain(), 0)  # nothing goes out while paused
        self.assert_error(self.api("POST", f"{url}/pause"), 409)
        self.assertEqual(self.api("POST", f"{url}/resume").json()["state"], "sending")
        self.assert_error(self.api("POST", f"{url}/resume"), 409)
        run_campaigns()
        self.assertEqual(self.api("GET", url).json()["state"], "finished")
        draft = self.create()
        r = self.api("POST", f"campaigns/{draft['id']}/pause")
        self.assertIn("only a sending campaign", self.assert_error(r, 409)["message"])

    def test_cancel_stops_it_and_cannot_be_repeated(self) -> None:
        campaign = self.start_campaign()
        url = f"campaigns/{campaign.code}"
        self.assertEqual(self.api("POST", f"{url}/cancel").json()["state"], "cancelling")
        r = self.api("POST", f"{url}/cancel")
        self.assertIn("already being cancelled", self.assert_error(r, 409)["message"])
        while actions.cancel_unsent_recipients():
            pass
        self.assertEqual(self.api("GET", url).json()["state"], "cancelled")
        self.assertIn(
            "already cancelled",
            self.assert_error(self.api("POST", f"{url}/cancel"), 409)["message"],
        )
        self.assertEqual(set(Message.objects.values_list("state", flat=True)), {"cancelled"})

    def test_a_scheduled_campaign_is_cancelled_at_once(self) -> None:
        created = self.create()
        self.api("POST", f"campaigns/{created['id']}/schedule", {"at": "2999-01-01T00:00Z"})
        r = self.api("POST", f"campaigns/{created['id']}/cancel")
        self.assertEqual(r.json()["state"], "cancelled")
        self.assertIsNotNone(r.json()["finished_at"])

    def test_retry_queues_failed_recipients_again(self) -> None:
        campaign = self.start_campaign()
        run_campaigns()
        Message.objects.filter(to_email="ann@example.com").update(
            state="failed", last_response="550 no such user"
        )
        url = f"campaigns/{campaign.code}/retry"
        self.assertEqual(self.api("POST", url, {"state": "deferred"}).json()["queued"], 0)
        self.assertEqual(self.api("POST", url, {}).json(), {"success": True, "queued": 1})
        self.assertEqual(self.api("GET", f"campaigns/{campaign.code}").json()["state"], "sending")
        run_campaigns()
        self.assertEqual(self.api("GET", f"campaigns/{campaign.code}").json()["state"], "finished")
        self.assert_error(self.api("POST", url, {"state": "sent"}), 422, "state")

    def test_a_draft_or_cancelled_campaign_cannot_be_retried(self) -> None:
        draft = self.create()
        r = self.api("POST", f"campaigns/{draft['id']}/retry", {"state": "failed"})
        self.assertIn("duplicate it instead", self.assert_error(r, 409)["message"])
        campaign = self.start_campaign()
        Message.objects.update(state="failed")
        actions.cancel(campaign)
        while actions.cancel_unsent_recipients():
            pass
        r = self.api("POST", f"campaigns/{campaign.code}/retry", {"state": "failed"})
        self.assertIn("a cancelled campaign", self.assert_error(r, 409)["message"])
        self.assertEqual(set(Message.objects.values_list("state", flat=True)), {"failed"})

    def test_duplicate_makes_a_new_draft(self) -> None:
        campaign = self.start_campaign(audience="tags", tags=["vip"])
        r = self.api("POST", f"campaigns/{campaign.code}/duplicate")
        self.assertEqual(r.status_code, 201, r.content)
        copy = r.json()
        self.assertNotEqual(copy["id"], str(campaign.code))
        self.assertEqual(
            (copy["name"], copy["state"], copy["tags"]), ("C (copy)", "draft", ["vip"])
        )
        self.assertIsNone(copy["recipients"])

    def test_a_test_send_goes_to_each_address_ahead_of_the_campaign(self) -> None:
        created = self.create(
            subject="News", body="Hello {{ contact.first_name | default('you') }}"
        )
        r = self.api(
            "POST",
            f"campaigns/{created['id']}/test",
            {"to": ["ann@example.com", "ANN@example.com", "new@example.org"]},
        )
        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual(body["to"], ["ann@example.com", "new@example.org"])
        tests = Message.objects.filter(email__kind="test")
        self.assertEqual(sorted(body["message_ids"]), sorted(str(m.code) for m in tests))
        drain()
        kept = {
            m.message.to_email: email_lib.message_from_bytes(bytes(m.raw), policy=default_policy)
            for m in MailboxMessage.objects.select_related("message")
        }
        self.assertEqual(kept["ann@example.com"]["Subject"], "[Test] News")
        html = kept["ann@example.com"].get_body(preferencelist=("html",)).get_content()
        self.assertIn("Hello Ann", html)
        self.assertEqual(self.campaign(created).state, "draft")

    def test_a_test_send_refuses_bad_or_too_many_addresses(self) -> None:
        created = self.create()
        url = f"campaigns/{created['id']}/test"
        many = [f"r{i}@example.org" for i in range(21)]
        for data in (
            {"to": ["ok@example.org", "not-an-address"]},
            {"to": many},
            {"to": []},
            {"to": "ok@example.org"},
            {},
        ):
            with self.subTest(data=data):
                self.assert_error(self.api("POST", url, data), 422, "to")
        self.assertFalse(Message.objects.exists())

    # --- stats and recipients ------------------------------------------------------------------

    def test_the_stats_of_a_draft_are_zero(self) -> None:
        created = self.create()
        r = self.api("GET", f"campaigns/{created['id']}/stats")
        body = r.json()
        self.assertEqual((body["state"], body["total"], body["done"]), ("draft", 0, 0))
        self.assertEqual(set(body["counts"]), set(Message.State.values))
        self.assertIsNone(body["eta_seconds"])

    def test_the_stats_count_each_state_and_the_errors(self) -> None:
        campaign = self.start_campaign()
        stats = self.api("GET", f"campaigns/{campaign.code}/stats").json()
        self.assertEqual((stats["total"], stats["remaining"], stats["done"]), (2, 2, 0))
        self.assertEqual(stats["counts"]["queued"], 2)
        run_campaigns()
        Message.objects.filter(to_email="dee@example.com").update(
            state="failed", last_response="550 no such user"
        )
        stats = self.api("GET", f"campaigns/{campaign.code}/stats").json()
        self.assertEqual((stats["counts"]["sent"], stats["counts"]["failed"]), (1, 1))
        self.assertEqual((stats["done"], stats["remaining"]), (2, 0))
        self.assertEqual(stats["errors"], [{"response": "550 no such user", "count": 1}])
        self.assertGreaterEqual(stats["rate_per_minute"], 1)

    def test_the_eta_follows_the_senders_limits_before_anything_is_sent(self) -> None:
        Sender.objects.filter(pk=self.sender.pk).update(per_hour=1)
        campaign = self.start_campaign()
        stats = self.api("GET", f"campaigns/{campaign.code}/stats").json()
        self.assertEqual(stats["eta_seconds"], 2 * 3600)

    def test_it_lists_the_recipients_with_a_state_filter(self) -> None:
        campaign = self.start_campaign()
        run_campaigns()
        Message.objects.filter(to_email="dee@example.com").update(state="failed")
        url = f"campaigns/{campaign.code}/recipients"
        page = self.api("GET", url, {"limit": 1}).json()
        self.assertEqual(len(page["items"]), 1)
        rest = self.api("GET", url, {"limit": 1, "cursor": page["next_cursor"]}).json()
        emails = {page["items"][0]["to_email"], rest["items"][0]["to_email"]}
        self.assertEqual(emails, {"ann@example.com", "dee@example.com"})
        failed = self.api("GET", url, {"state": "failed"}).json()["items"]
        self.assertEqual(
            [(m["to_email"], m["state"]) for m in failed], [("dee@example.com", "failed")]
        )
        ann = Message.objects.get(to_email="ann@example.com")
        sent = self.api("GET", url, {"state": "sent"}).json()["items"][0]
        self.assertEqual((sent["id"], sent["attempts"]), (str(ann.code), 1))
        self.assertIsNotNone(sent["sent_at"])
        self.assertIsNone(sent["opened_at"])
        self.assert_error(self.api("GET", url, {"state": "lost"}), 422, "state")
        self.assert_error(self.api("GET", url, {"limit": 500}), 422, "limit")
        ann.bounced_at = ann.sent_at
        ann.save()
        bounced = self.api("GET", url, {"outcome": "bounced"}).json()["items"]
        self.assertEqual([m["to_email"] for m in bounced], ["ann@example.com"])
        self.assertEqual(bounced[0]["bounced_at"], bounced[0]["sent_at"])
        self.assert_error(self.api("GET", url, {"outcome": "lost"}), 422, "outcome")

    def test_a_draft_has_no_recipients_yet(self) -> None:
        created = self.create()
        r = self.api("GET", f"campaigns/{created['id']}/recipients")
        self.assertEqual(r.json(), {"items": [], "next_cursor": None})

    # --- tenancy and odd input -----------------------------------------------------------------

    def test_another_projects_campaign_is_a_404(self) -> None:
        theirs = self.charlies_campaign()
        mine = self.create()
        calls = [
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("GET", "/audience"),
            ("POST", "/send"),
            ("POST", "/schedule"),
            ("POST", "/unschedule"),
            ("POST", "/pause"),
            ("POST", "/resume"),
            ("POST", "/cancel"),
            ("POST", "/retry"),
            ("POST", "/duplicate"),
            ("POST", "/test"),
            ("GET", "/stats"),
            ("GET", "/recipients"),
        ]
        data = {"at": "2999-01-01T00:00Z", "to": ["a@example.org"], "state": "failed"}
        for method, tail in calls:
            with self.subTest(method=method, tail=tail):
                body = data if method in ("POST", "PATCH") else None
                r = self.api(method, f"campaigns/{theirs.code}{tail}", body)
                self.assertEqual(self.assert_error(r, 404)["message"], "No such campaign.")
                r = self.api(
                    method, f"campaigns/{mine['id']}{tail}", body, key=self.charlies_secret_key
                )
                self.assert_error(r, 404)
        theirs.refresh_from_db()
        self.assertEqual((theirs.state, theirs.name), ("draft", "Charlie's"))
        self.assertEqual(Campaign.objects.count(), 2)
        self.assertEqual(
            self.api("GET", "campaigns", key=self.charlies_secret_key).json()["items"][0]["id"],
            str(theirs.code),
        )

    def test_an_unknown_or_malformed_id_is_a_404(self) -> None:
        for campaign_id in ("not-a-uuid", UNKNOWN, "1", "%20"):
            with self.subTest(campaign_id=campaign_id):
                self.assert_error(self.api("GET", f"campaigns/{campaign_id}"), 404)
                self.assert_error(self.api("POST", f"campaigns/{campaign_id}/send"), 404)

    def test_it_requires_a_secret_key(self) -> None:
        r = self.client.get("/api/v1/campaigns")
        self.assert_error(r, 401)
        r = self.api("GET", "campaigns", key=self.project.public_key)
        self.assert_error(r, 403)

    def test_a_body_that_is_not_an_object_is_a_4xx(self) -> None:
        for raw in ("{not json", "[1, 2]", '"text"', "null"):
            with self.subTest(raw=raw):
                r = self.client.post(
                    "/api/v1/campaigns",
                    raw,
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
                )
                self.assertIn(r.status_code, (400, 422))
                self.assertIn("message", r.json())
        self.assertFalse(Campaign.objects.exists())

    def test_text_no_database_can_hold_is_a_422_naming_the_field(self) -> None:
        # A lone surrogate went on to the database: a 500 on SQLite and PostgreSQL.
        for field in ("name", "subject", "from_name"):
            with self.subTest(field=field):
                r = self.api("POST", "campaigns", {"name": "N", "subject": "S", field: "\ud800"})
                self.assert_error(r, 422, field)
        self.assertFalse(Campaign.objects.exists())
