from __future__ import annotations

import csv
import email as email_lib
import io
from datetime import timedelta as td
from email.policy import default as default_policy
from unittest import mock

from django.utils import timezone

from postroom.campaigns import actions
from postroom.campaigns.actions import CampaignError
from postroom.campaigns.models import Campaign
from postroom.contacts.actions import suppress
from postroom.contacts.models import Segment
from postroom.delivery.actions import default_sender
from postroom.delivery.models import MailboxMessage, Message, Sender
from postroom.delivery.sending import handle_one_send_batch
from postroom.ops.worker import Worker
from postroom.test import BaseTestCase


def run_worker() -> None:
    worker = Worker(name="test:campaigns")
    while worker.run_once():
        pass


class CampaignTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_contact("ann@example.com", tags=["vip"])
        self.make_contact("bob@example.com", tags=["vip"])
        self.make_contact("cy@example.com", status="unsubscribed", tags=["vip"])
        self.make_contact("dee@example.com")
        suppress(self.project, "bob@example.com", reason="complaint")
        self.make_contact("eve@example.com", project=self.charlies_project)
        self.login()

    def form(self, **kw) -> dict:
        sender = default_sender(self.project)
        data = {
            "name": "November news",
            "subject": "News\r\nfor you",
            "preheader": "",
            "sender": sender.pk,
            "from_email": sender.from_email,
            "from_name": "Acme",
            "reply_to": "",
            "audience": "all",
            "segment": "",
            "tags_text": "",
            "body_format": "text",
            "body": "=cmd Hello!",
        }
        data.update(kw)
        return data

    def create(self, **kw) -> Campaign:
        r = self.client.post(self.url("campaigns/new/"), self.form(**kw))
        self.assertEqual(
            r.status_code, 302, getattr(r, "context", None) and r.context["form"].errors
        )
        return Campaign.objects.latest("id")

    def test_the_empty_list_says_what_a_campaign_is(self) -> None:
        self.assertContains(self.client.get(self.url("campaigns/")), "Write your first campaign")

    def test_it_gives_an_honest_count_before_sending(self) -> None:
        campaign = self.create()
        r = self.client.get(self.url(f"campaigns/{campaign.code}/"))
        self.assertContains(
            r,
            "Matches <strong>4</strong>, will send to <strong>2</strong>: "
            "1 not subscribed, 1 suppressed.",
            html=False,
        )

    def test_send_now_snapshots_sends_and_finishes(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "scheduled")
        run_worker()
        campaign.refresh_from_db()
        self.assertEqual((campaign.state, campaign.recipients), ("finished", 2))
        self.assertEqual(
            set(Message.objects.filter(email=campaign.email).values_list("to_email", "state")),
            {("ann@example.com", "sent"), ("dee@example.com", "sent")},
        )
        self.assertEqual(MailboxMessage.objects.count(), 2)
        self.assertEqual(campaign.email.subject, "News for you")
        r = self.client.get(self.url(f"campaigns/{campaign.code}/"))
        self.assertContains(r, '<strong id="campaign-done">2</strong> of 2', html=False)

    def test_segment_and_tag_audiences(self) -> None:
        segment = Segment.objects.create(
            project=self.project,
            name="A",
            rules={"match": "all", "rules": [{"kind": "email", "op": "starts_with", "value": "a"}]},
        )
        by_segment = self.create(audience="segment", segment=segment.pk)
        self.assertEqual(actions.count_audience(by_segment).will_send, 1)
        by_tags = self.create(audience="tags", tags_text="vip, nobody")
        count = actions.count_audience(by_tags)
        self.assertEqual((count.matches, count.will_send), (3, 1))

    def test_an_audience_needs_its_segment_or_tags(self) -> None:
        r = self.client.post(self.url("campaigns/new/"), self.form(audience="segment"))
        self.assertContains(r, "Choose the segment")
        r = self.client.post(self.url("campaigns/new/"), self.form(audience="tags"))
        self.assertContains(r, "Name at least one tag")

    def test_the_from_address_must_belong_to_the_sender(self) -> None:
        r = self.client.post(self.url("campaigns/new/"), self.form(from_email="me@elsewhere.org"))
        self.assertContains(r, "may send from")

    def test_pause_holds_resume_continues_and_it_finishes_only_when_done(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        actions.start_due_campaigns()
        self.client.post(self.url(f"campaigns/{campaign.code}/pause/"))
        self.assertFalse(handle_one_send_batch())
        actions.finish_done_campaigns()
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "paused")
        self.client.post(self.url(f"campaigns/{campaign.code}/resume/"))
        run_worker()
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "finished")

    def test_cancel_marks_the_rest_cancelled(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        actions.start_due_campaigns()
        self.client.post(self.url(f"campaigns/{campaign.code}/cancel/"))
        run_worker()
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "cancelled")
        self.assertEqual(set(Message.objects.values_list("state", flat=True)), {"cancelled"})

    def test_cancel_stops_at_once_and_the_worker_marks_the_rest_in_chunks(self) -> None:
        for i in range(5):
            self.make_contact(f"extra{i}@example.com")
        campaign = self.create(audience="all")
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        actions.start_due_campaigns()
        campaign.refresh_from_db()
        # One recipient is in flight with a worker when the campaign is cancelled.
        flying = Message.objects.order_by("id").first()
        Message.objects.filter(pk=flying.pk).update(state="sending")
        r = self.client.post(self.url(f"campaigns/{campaign.code}/cancel/"), follow=True)
        self.assertContains(r, "being marked cancelled")
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "cancelling")
        self.assertFalse(handle_one_send_batch())  # nothing more goes out
        with mock.patch.object(actions, "CANCEL_CHUNK", 2):
            steps = 0
            while actions.cancel_unsent_recipients():
                steps += 1
        unsent = campaign.recipients - 1
        self.assertGreater(unsent, 4)
        self.assertEqual(steps, -(-unsent // 2))  # 2 at a time
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "cancelling")  # one is still in flight
        # Its worker records it as deferred: the next step cancels it, then the campaign.
        Message.objects.filter(pk=flying.pk).update(state="deferred")
        while actions.cancel_unsent_recipients():
            pass
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "cancelled")
        self.assertIsNotNone(campaign.finished_at)
        self.assertEqual(set(Message.objects.values_list("state", flat=True)), {"cancelled"})
        r = self.client.post(self.url(f"campaigns/{campaign.code}/cancel/"), follow=True)
        self.assertContains(r, "already cancelled")

    def test_each_recipient_gets_their_own_personalised_message(self) -> None:
        from postroom.content.models import Template

        self.make_contact(
            "zoe@example.com",
            first_name="<Zoë>",
            data={"city": "Köln"},
            tags=["gardener"],
            create_fields=True,
        )
        layout = Template.objects.create(
            project=self.project,
            name="Brand",
            source="<html><head><style>p { color: #123456 }</style></head><body>"
            "{{ content }}<p>From {{ project.name }}</p></body></html>",
        )
        body = (
            "# Hi {{ contact.first_name | default('friend') }}\n\n"
            "{% if 'gardener' in contact.tags %}Plant tips for {{ contact.data.city }}."
            "{% else %}News.{% endif %}"
        )
        campaign = self.create(
            subject="For {{ contact.first_name | default('you') }}",
            body_format="markdown",
            body=body,
            layout=layout.pk,
        )
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        run_worker()
        received = {}
        for copy in MailboxMessage.objects.select_related("message"):
            parsed = email_lib.message_from_bytes(bytes(copy.raw), policy=default_policy)
            text, html = [p.get_content() for p in parsed.iter_parts()]
            received[copy.message.to_email] = (parsed["Subject"], text, html)
        subject, text, html = received["zoe@example.com"]
        self.assertEqual(subject, "For <Zoë>")
        self.assertIn("<h1>Hi &lt;Zoë&gt;</h1>", html)
        self.assertIn("Plant tips for Köln.", html)
        self.assertIn('<p style="color: #123456;">From Alice', html)
        self.assertIn("Hi <Zoë>", text)
        subject, text, html = received["ann@example.com"]
        self.assertEqual(subject, "For you")
        self.assertIn("<h1>Hi friend</h1>", html)
        self.assertIn("News.", html)

    def test_a_template_error_is_refused_on_save_with_its_line(self) -> None:
        r = self.client.post(
            self.url("campaigns/new/"), self.form(body_format="markdown", body="Hi\n{{ x ")
        )
        self.assertContains(r, "Body, line 2, column 1")
        r = self.client.post(
            self.url("campaigns/new/"),
            self.form(
                body_format="markdown", body="{{ ''.__class__.__mro__[1].__subclasses__() }}"
            ),
        )
        self.assertEqual(r.status_code, 200)
        self.assertFalse(Campaign.objects.filter(body__contains="__class__").exists())

    def test_the_preview_shows_the_message_for_a_chosen_contact(self) -> None:
        self.make_contact("fay@example.com", first_name="Fay")
        campaign = self.create(body_format="markdown", body="Hello {{ contact.first_name }}")
        r = self.client.post(
            self.url(f"campaigns/{campaign.code}/preview/"), {"preview_email": "fay@example.com"}
        )
        self.assertContains(r, "As fay@example.com would get it")
        self.assertContains(r, "Hello Fay")
        self.assertContains(r, "Phone (375 px)")

    def test_a_test_send_goes_to_each_address_personalised_and_first(self) -> None:
        self.make_contact("fay@example.com", first_name="Fay")
        campaign = self.create(body_format="markdown", body="Hello {{ contact.first_name }}")
        r = self.client.post(
            self.url(f"campaigns/{campaign.code}/send-test/"),
            {"to": "fay@example.com, new@example.org"},
            follow=True,
        )
        self.assertContains(r, "Test sent to fay@example.com, new@example.org")
        tests = Message.objects.filter(email__kind="test").order_by("to_email")
        self.assertEqual([m.priority for m in tests], [0, 0])
        run_worker()
        kept = {
            m.message.to_email: email_lib.message_from_bytes(bytes(m.raw), policy=default_policy)
            for m in MailboxMessage.objects.select_related("message")
        }
        fay = kept["fay@example.com"]
        self.assertEqual(fay["Subject"], "[Test] News for you")
        self.assertIn("Hello Fay", fay.get_body(preferencelist=("html",)).get_content())
        new = kept["new@example.org"].get_body(preferencelist=("plain",)).get_content()
        self.assertTrue(new.startswith("Hello"))
        self.assertIn("Unsubscribe: http", new)  # the footer, as the campaign will have it
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "draft")  # a test does not start the campaign

    def test_a_test_send_refuses_bad_or_too_many_addresses(self) -> None:
        campaign = self.create()
        url = self.url(f"campaigns/{campaign.code}/send-test/")
        r = self.client.post(url, {"to": "ok@example.org, not-an-address"}, follow=True)
        self.assertContains(r, "not-an-address")
        many = ", ".join(f"r{i}@example.org" for i in range(21))
        self.assertContains(self.client.post(url, {"to": many}, follow=True), "Up to 20")
        self.assertFalse(Message.objects.filter(email__kind="test").exists())

    def test_the_editor_previews_what_the_form_holds(self) -> None:
        r = self.client.post(
            self.url("campaigns/preview/"),
            {
                "body_format": "markdown",
                "body": "# Hi {{ contact.first_name | default('you') }}",
                "subject": "Yo",
                "layout": "x",
            },
        )
        self.assertContains(r, "Hi Ada")
        r = self.client.post(self.url("campaigns/preview/"), {"body": "{{ oops "})
        self.assertContains(r, "This template cannot be used yet")

    def test_a_cancelled_campaign_cannot_be_retried(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        actions.start_due_campaigns()
        Message.objects.update(state="failed")
        self.client.post(self.url(f"campaigns/{campaign.code}/cancel/"))
        r = self.client.get(self.url(f"campaigns/{campaign.code}/"))
        self.assertNotContains(r, "Retry failed")
        r = self.client.post(
            self.url(f"campaigns/{campaign.code}/retry/"), {"state": "failed"}, follow=True
        )
        self.assertContains(r, "duplicate it instead")
        self.assertEqual(set(Message.objects.values_list("state", flat=True)), {"failed"})

    def test_a_reply_to_must_be_plain_ascii_before_the_at(self) -> None:
        r = self.client.post(self.url("campaigns/new/"), self.form(reply_to="jörg@example.com"))
        self.assertContains(r, "plain ASCII before the @")
        r = self.client.post(self.url("campaigns/new/"), self.form(reply_to="help@bücher.de"))
        self.assertEqual(r.status_code, 302)

    def test_a_scheduled_campaign_is_cancelled_at_once(self) -> None:
        campaign = self.create()
        actions.start(campaign, when=timezone.now() + td(days=1))
        self.client.post(self.url(f"campaigns/{campaign.code}/cancel/"))
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "cancelled")

    def test_retry_failed_requeues_and_reopens(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        run_worker()
        Message.objects.filter(to_email="ann@example.com").update(
            state="failed", last_response="550 nope"
        )
        r = self.client.get(self.url(f"campaigns/{campaign.code}/"))
        self.assertContains(r, "Retry failed (1)")
        self.assertContains(r, "550 nope")
        self.client.post(self.url(f"campaigns/{campaign.code}/retry/"), {"state": "failed"})
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "sending")
        run_worker()
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "finished")

    def test_scheduling_waits_for_its_time(self) -> None:
        campaign = self.create()
        when = (timezone.now() + td(days=1)).strftime("%Y-%m-%dT%H:%M")
        self.client.post(
            self.url(f"campaigns/{campaign.code}/schedule/"),
            {"when": when, "time_zone": "Europe/Berlin"},
        )
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "scheduled")
        self.assertFalse(actions.start_due_campaigns())
        Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=timezone.now() - td(seconds=1))
        self.assertTrue(actions.start_due_campaigns())

    def test_a_past_schedule_is_refused(self) -> None:
        campaign = self.create()
        r = self.client.post(
            self.url(f"campaigns/{campaign.code}/schedule/"),
            {"when": "2001-01-01T10:00", "time_zone": "UTC"},
            follow=True,
        )
        self.assertContains(r, "in the future")
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "draft")

    def test_duplicate_makes_a_draft(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        self.client.post(self.url(f"campaigns/{campaign.code}/duplicate/"))
        copy = Campaign.objects.latest("id")
        self.assertEqual(
            (copy.state, copy.name, copy.email), ("draft", "November news (copy)", None)
        )

    def test_recipients_filter_and_export(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        run_worker()
        Message.objects.filter(to_email="ann@example.com").update(
            state="failed", last_response="=HYPERLINK(evil)"
        )
        r = self.client.get(self.url(f"campaigns/{campaign.code}/recipients/"), {"state": "failed"})
        self.assertContains(r, "ann@example.com")
        self.assertNotContains(r, "dee@example.com")
        r = self.client.get(self.url(f"campaigns/{campaign.code}/recipients.csv"))
        rows = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode())))
        self.assertEqual(rows[0][:2], ["to_email", "state"])
        self.assertIn(
            ["ann@example.com", "failed", "1", "'=HYPERLINK(evil)"], [row[:4] for row in rows]
        )
        self.assertIn("bounced_at", rows[0])

    def test_recipients_show_and_filter_their_outcome(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        run_worker()
        Message.objects.filter(to_email="ann@example.com").update(
            opened_at=timezone.now(), complained_at=timezone.now()
        )
        page = self.url(f"campaigns/{campaign.code}/recipients/")
        r = self.client.get(page, {"outcome": "complained"})
        self.assertContains(r, '<span class="badge complained">Complained</span>')
        self.assertContains(r, "ann@example.com")
        self.assertNotContains(r, "dee@example.com")
        r = self.client.get(page, {"outcome": "opened"})
        self.assertContains(r, "ann@example.com")  # opened, then complained: both match

    def test_the_limits_eta_is_shown_before_sending(self) -> None:
        Sender.objects.filter(project=self.project).update(per_hour=35)
        for i in range(68):
            self.make_contact(f"x{i}@example.com")
        campaign = self.create()
        r = self.client.get(self.url(f"campaigns/{campaign.code}/"))
        self.assertContains(r, "70 recipients at 35 per hour: about 2 hours")

    def test_a_started_campaign_cannot_be_edited(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        actions.start_due_campaigns()  # scheduled campaigns stay editable until the snapshot
        r = self.client.get(self.url(f"campaigns/{campaign.code}/edit/"), follow=True)
        self.assertContains(r, "cannot be edited")

    def test_another_projects_campaigns_are_404(self) -> None:
        campaign = self.create()
        self.login(self.charlie)
        for path in ("", "edit/", "recipients/", "recipients.csv"):
            self.assertEqual(
                self.client.get(self.url(f"campaigns/{campaign.code}/{path}")).status_code, 404
            )
            self.assertEqual(
                self.client.get(
                    self.url(f"campaigns/{campaign.code}/{path}", project=self.charlies_project)
                ).status_code,
                404,
            )
        for path in ("send/", "pause/", "cancel/", "duplicate/", "retry/"):
            r = self.client.post(
                self.url(f"campaigns/{campaign.code}/{path}", project=self.charlies_project)
            )
            self.assertEqual(r.status_code, 404, path)
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "draft")

    def test_the_live_part_reloads_the_page_when_the_state_moves_on(self) -> None:
        campaign = self.create()
        self.client.post(self.url(f"campaigns/{campaign.code}/send/"))
        url = self.url(f"campaigns/{campaign.code}/") + "?seen=scheduled"
        r = self.client.get(url, HTTP_HX_REQUEST="true")
        self.assertNotIn("HX-Refresh", r)
        run_worker()
        r = self.client.get(url, HTTP_HX_REQUEST="true")
        self.assertEqual(r["HX-Refresh"], "true")


class StartRaceTestCase(BaseTestCase):
    """The worker may start a campaign between the moment a page or a request read it and
    the moment it writes: nothing may put it back to scheduled, to be started twice."""

    def test_an_edit_saved_after_the_start_is_refused(self) -> None:
        self.make_contact("ann@example.com")
        campaign = self.make_campaign()
        stale = Campaign.objects.get(pk=campaign.pk)
        actions.start(campaign)
        actions.start_due_campaigns()
        stale.subject = "Edited"
        self.assertFalse(actions.save_edits(stale, ["subject"]))
        campaign.refresh_from_db()
        self.assertEqual((campaign.state, campaign.subject), ("sending", "S"))

    def test_a_second_start_from_a_stale_copy_is_refused(self) -> None:

        self.make_contact("ann@example.com")
        campaign = self.make_campaign()
        stale = Campaign.objects.get(pk=campaign.pk)
        actions.start(campaign)
        actions.start_due_campaigns()
        with self.assertRaises(CampaignError):
            actions.start(stale)
        campaign.refresh_from_db()
        self.assertEqual(campaign.state, "sending")
        self.assertFalse(actions.start_due_campaigns())

    def test_the_edit_page_says_so(self) -> None:

        campaign = self.make_campaign()
        self.login()
        Campaign.objects.filter(pk=campaign.pk).update(state="sending")
        # The page read it editable a moment ago; the POST arrives after the start.
        with mock.patch.object(Campaign, "is_editable", return_value=True):
            r = self.client.post(
                self.url(f"campaigns/{campaign.code}/edit/"),
                {
                    "name": "New",
                    "subject": "S2",
                    "sender": campaign.sender_id,
                    "from_email": campaign.from_email,
                    "audience": "all",
                    "body_format": "markdown",
                    "body": "Hello",
                },
                follow=True,
            )
        self.assertContains(r, "started while you edited it")
        campaign.refresh_from_db()
        self.assertEqual((campaign.state, campaign.subject), ("sending", "S"))
