"""The automations pages: the list, settings, the editor and the runs, each empty and with
data; bad input re-shown with its field named (422); steps added, edited, moved and deleted
with a condition's jump and the waiting runs following their step; every member edits; and
another project's automation is a 404."""

from __future__ import annotations

from datetime import timedelta as td

from django.test import override_settings
from django.utils import timezone

from postroom.automations import actions
from postroom.automations.models import Automation, Run, Step
from postroom.contacts.models import FieldDefinition, Segment
from postroom.content.models import Template
from postroom.delivery.models import Sender
from postroom.test import BaseTestCase
from postroom.tracking.actions import track
from postroom.webhooks.actions import create_endpoint


class AutomationTestCase(BaseTestCase):
    def make_automation(self, project=None, steps=(), **fields) -> Automation:
        automation = Automation(project=project or self.project)
        fields = {"name": "Welcome", "trigger": "event", "trigger_event": "signup confirmed"}
        actions.save_automation(automation, fields)
        for kind, config in steps:
            actions.add_step(automation, kind, config)
        return automation

    def make_run(self, automation: Automation, email: str, **fields) -> Run:
        contact = self.make_contact(email, project=automation.project)
        return Run.objects.create(
            project=automation.project, automation=automation, contact=contact, **fields
        )

    def page(self, automation: Automation, path: str = "") -> str:
        return self.url(f"automations/{automation.code}/{path}", automation.project)

    def steps_of(self, automation: Automation) -> list[tuple[str, dict]]:
        return [(s.kind, s.config) for s in automation.steps.order_by("position")]


EVERYONE = {"match": "all", "rules": []}  # a segment with no rules
WAIT = ("wait", {"amount": 2, "unit": "days"})
SEND = ("send", {"subject": "Welcome", "body": "Hello"})
TAGGED = ("condition", {"test": "tag", "tag": "vip", "else": "exit"})


class ListAndSettingsTestCase(AutomationTestCase):
    def test_the_list_has_an_empty_state_that_says_what_automations_do(self) -> None:
        self.login()
        r = self.client.get(self.url("automations/"))
        self.assertContains(r, "No automations yet")
        self.assertContains(r, "signup confirmed")
        self.assertContains(r, f'href="{self.url("automations/new/")}"')
        self.assertContains(r, ">Automations</a>")  # in the navigation

    def test_the_list_shows_the_trigger_in_words_the_state_and_the_runs(self) -> None:
        automation = self.make_automation(steps=[WAIT])
        actions.set_enabled(automation, True)
        self.make_run(automation, "ann@example.com")
        self.make_run(automation, "bea@example.com", state=Run.State.DONE)
        self.make_run(automation, "cat@example.com", state=Run.State.DONE)
        self.login()
        r = self.client.get(self.url("automations/"))
        self.assertContains(r, "Welcome")
        self.assertContains(r, "When a contact does “signup confirmed”")
        self.assertContains(r, "enabled")
        self.assertContains(r, "<td>1</td>")
        self.assertContains(r, '<td class="hide-narrow">2</td>')

    def test_the_new_form_suggests_recent_events_and_email_events(self) -> None:
        track(self.project, "purchase", "ann@example.com", None, {})
        track(self.charlies_project, "their-secret-event", "ann@example.com", None, {})
        self.login()
        r = self.client.get(self.url("automations/new/"))
        self.assertContains(r, '<datalist id="event-names">')
        self.assertContains(r, '<option value="purchase">')
        self.assertContains(r, '<option value="signup confirmed">')
        self.assertContains(r, '<option value="email.opened">')
        self.assertNotContains(r, "their-secret-event")

    def test_an_automation_is_created_and_bad_input_names_the_field(self) -> None:
        self.login()
        new = self.url("automations/new/")
        r = self.client.post(new, {"name": "", "trigger": "event", "trigger_event": "x"})
        self.assertContains(r, "name: required", status_code=422)
        r = self.client.post(new, {"name": "Welcome", "trigger": "event"})
        self.assertContains(r, "trigger_event: name the event", status_code=422)
        self.assertContains(r, 'value="Welcome"', status_code=422)  # kept
        r = self.client.post(new, {"name": "Welcome", "trigger": "segment"})
        self.assertContains(r, "trigger_segment: choose a segment", status_code=422)
        theirs = Sender.objects.filter(project=self.charlies_project).first()
        theirs = theirs or Sender.objects.create(
            project=self.charlies_project, name="Theirs", from_email="c@example.net"
        )
        post = {"name": "Welcome", "trigger": "event", "trigger_event": "signup confirmed"}
        r = self.client.post(new, {**post, "sender": str(theirs.code)})
        self.assertContains(r, "sender: no such sender", status_code=422)
        self.assertFalse(Automation.objects.exists())

        r = self.client.post(new, {**post, "repeat": "every", "cancel_event": "purchase"})
        automation = Automation.objects.get()
        self.assertRedirects(r, self.page(automation))
        self.assertEqual(
            (automation.trigger_event, automation.repeat, automation.cancel_event),
            ("signup confirmed", "every", "purchase"),
        )
        self.assertIsNone(automation.sender)
        self.assertFalse(automation.enabled)

    def test_the_settings_change_the_trigger_and_the_sender(self) -> None:
        automation = self.make_automation()
        segment = Segment.objects.create(project=self.project, name="Trial", rules=EVERYONE)
        sender = Sender.objects.create(
            project=self.project, name="News", from_email="news@example.com"
        )
        self.login()
        r = self.client.get(self.page(automation, "settings/"))
        self.assertContains(r, 'value="signup confirmed"')
        self.assertContains(r, "Trial")
        r = self.client.post(
            self.page(automation, "settings/"),
            {
                "name": "Trial nudges",
                "trigger": "segment",
                "trigger_segment": str(segment.code),
                "repeat": "once",
                "sender": str(sender.code),
            },
        )
        self.assertRedirects(r, self.page(automation))
        automation.refresh_from_db()
        self.assertEqual(
            (automation.name, automation.trigger_segment, automation.sender),
            ("Trial nudges", segment, sender),
        )
        r = self.client.get(self.page(automation))
        self.assertContains(r, "When a contact enters the segment “Trial”")
        self.assertContains(r, "Sends through News &lt;news@example.com&gt;")


class EditorTestCase(AutomationTestCase):
    def test_an_automation_with_no_steps_says_so_and_cannot_be_enabled(self) -> None:
        automation = self.make_automation()
        self.login()
        r = self.client.get(self.page(automation))
        self.assertContains(r, "No steps yet")
        self.assertContains(r, "It can be enabled once it has a step")
        self.assertContains(r, 'id="add-wait"')
        self.assertContains(r, 'id="add-condition"')
        r = self.client.post(self.page(automation, "enable/"), follow=True)
        self.assertContains(r, "Add a step first: an automation with no steps does nothing.")
        automation.refresh_from_db()
        self.assertFalse(automation.enabled)

    def test_steps_are_added_at_the_end_or_after_a_step(self) -> None:
        template = Template.objects.create(
            project=self.project, name="Layout", source="<div>{{ content }}</div>"
        )
        automation = self.make_automation()
        self.login()
        add = self.page(automation, "steps/add/")
        r = self.client.post(add, {"kind": "wait", "mode": "for", "amount": "2", "unit": "days"})
        self.assertRedirects(r, self.page(automation) + "#step-1", fetch_redirect_response=False)
        self.client.post(
            add,
            {"kind": "send", "subject": "Hi", "template": str(template.code), "body": "Hello"},
        )
        self.client.post(
            add,
            {
                "kind": "condition",
                "test": "event",
                "event": "email.opened",
                "within_days": "3",
                "else_action": "exit",
                "after": "1",
            },
        )
        self.client.post(
            add, {"kind": "wait", "mode": "until", "until": "09:30", "zone": "project"}
        )
        self.assertEqual(
            self.steps_of(automation),
            [
                ("wait", {"amount": 2, "unit": "days"}),
                (
                    "condition",
                    {"test": "event", "event": "email.opened", "within_days": 3, "else": "exit"},
                ),
                ("send", {"subject": "Hi", "template": str(template.code), "body": "Hello"}),
                ("wait", {"until": "09:30", "zone": "project"}),
            ],
        )

    @override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
    def test_every_other_kind_of_step_is_added_from_its_form(self) -> None:
        endpoint = create_endpoint(self.project, "http://127.0.0.1:9/hook", ["email.sent"])
        FieldDefinition.objects.create(project=self.project, key="plan", label="Plan")
        automation = self.make_automation()
        self.login()
        r = self.client.get(self.page(automation))
        self.assertContains(r, f'<option value="{endpoint.code}"')
        self.assertContains(r, "Plan (plan)")
        add = self.page(automation, "steps/add/")
        for post in [
            {"kind": "condition", "test": "tag", "tag": "vip", "else_action": "goto",
             "else_step": "4"},
            {"kind": "add_tag", "tag": "onboarded"},
            {"kind": "remove_tag", "tag": "trial"},
            {"kind": "update_field", "field": "plan", "value": "pro"},
            {"kind": "webhook", "endpoint": str(endpoint.code)},
            {"kind": "exit"},
        ]:  # fmt: skip
            r = self.client.post(add, post)
            self.assertEqual(r.status_code, 302, (post, r.content[-2000:]))
        self.assertEqual(
            self.steps_of(automation),
            [
                ("condition", {"test": "tag", "tag": "vip", "else": 4}),
                ("add_tag", {"tag": "onboarded"}),
                ("remove_tag", {"tag": "trial"}),
                ("update_field", {"field": "plan", "value": "pro"}),
                ("webhook", {"endpoint": str(endpoint.code)}),
                ("exit", {}),
            ],
        )

    def test_bad_step_input_is_shown_again_with_the_field_named(self) -> None:
        automation = self.make_automation(steps=[WAIT])
        self.login()
        add = self.page(automation, "steps/add/")
        r = self.client.post(add, {"kind": "wait", "mode": "for", "amount": "soon"})
        self.assertContains(r, "amount: a whole number.", status_code=422)
        self.assertContains(r, '<details id="add-wait" open>', status_code=422)
        self.assertContains(r, 'value="soon"', status_code=422)
        r = self.client.post(add, {"kind": "wait", "mode": "until", "until": "25:00"})
        self.assertContains(r, "until: a time of day as HH:MM", status_code=422)
        r = self.client.post(add, {"kind": "send", "subject": "", "body": "x"})
        self.assertContains(r, "subject: required.", status_code=422)
        r = self.client.post(
            add,
            {
                "kind": "condition",
                "test": "tag",
                "tag": "vip",
                "else_action": "goto",
                "else_step": "1",
            },
        )
        self.assertContains(r, "else: must be a later step than this one.", status_code=422)
        r = self.client.post(add, {"kind": "add_tag", "tag": "a", "after": "7"})
        self.assertContains(r, "after: a step number from 0 to 1.", status_code=422)
        r = self.client.post(add, {"kind": "webhook", "endpoint": ""})
        self.assertContains(r, "endpoint: choose one.", status_code=422)
        self.assertEqual(automation.steps.count(), 1)

    def test_the_editor_lists_steps_with_branches_and_the_runs_at_each(self) -> None:
        automation = self.make_automation(
            steps=[
                WAIT,
                ("condition", {"test": "tag", "tag": "vip", "else": 4}),
                SEND,
                ("add_tag", {"tag": "<b>welcomed</b>"}),
            ]
        )
        later = timezone.now() + td(days=1)
        self.make_run(automation, "ann@example.com", position=1, next_run_at=later)
        self.make_run(automation, "bea@example.com", position=1, next_run_at=later)
        self.make_run(automation, "cat@example.com", position=2)
        self.make_run(automation, "dan@example.com", position=4, state=Run.State.DONE)
        self.make_run(automation, "eve@example.com", state=Run.State.FAILED)
        self.login()
        r = self.client.get(self.page(automation))
        self.assertContains(r, "Wait 2 days")
        self.assertContains(r, "If the contact has the tag “vip”, go on; else go to step 4")
        self.assertContains(r, 'No: <a href="#step-4">step 4</a>')
        self.assertContains(r, 'Yes: <a href="#step-3">step 3</a>')
        self.assertContains(r, "← from step 2 when its condition fails")
        self.assertContains(r, "&lt;b&gt;welcomed&lt;/b&gt;")  # escaped
        self.assertNotContains(r, "<b>welcomed</b>")
        # Two are waiting out the wait, one is due to run the send.
        waiting = [c.split("</span>")[0] for c in r.content.decode().split("step-waiting")[1:]]
        self.assertEqual(
            [w.split(">")[-1] for w in waiting],
            ["2 waiting", "0 waiting", "1 waiting", "0 waiting"],
        )
        self.assertContains(r, '<span class="n">3</span><span class="label">waiting</span>')
        self.assertContains(r, '<span class="n">1</span><span class="label">failed</span>')

    def test_a_step_is_edited_and_bad_input_names_the_field(self) -> None:
        automation = self.make_automation(steps=[WAIT, SEND])
        self.login()
        r = self.client.get(self.page(automation, "steps/2/"))
        self.assertContains(r, "Step 2: Send an email")
        self.assertContains(r, 'value="Welcome"')
        r = self.client.post(self.page(automation, "steps/2/"), {"subject": "", "body": "x"})
        self.assertContains(r, "subject: required.", status_code=422)
        r = self.client.post(
            self.page(automation, "steps/2/"), {"subject": "Welcome aboard", "body": "Hi"}
        )
        self.assertRedirects(r, self.page(automation) + "#step-2", fetch_redirect_response=False)
        self.assertEqual(self.steps_of(automation)[1][1]["subject"], "Welcome aboard")
        r = self.client.get(self.page(automation, "steps/1/"))
        self.assertContains(r, 'name="amount" value="2"')
        for missing in ("3", "0", "99999999999"):
            r = self.client.get(self.page(automation, f"steps/{missing}/"))
            self.assertEqual(r.status_code, 404, missing)

    def test_steps_move_and_a_condition_keeps_its_jump(self) -> None:
        automation = self.make_automation(
            steps=[("condition", {"test": "tag", "tag": "vip", "else": 3}), WAIT, SEND]
        )
        self.login()
        r = self.client.post(self.page(automation, "steps/3/up/"))
        self.assertRedirects(r, self.page(automation) + "#step-2", fetch_redirect_response=False)
        self.assertEqual(
            [kind for kind, _ in self.steps_of(automation)], ["condition", "send", "wait"]
        )
        self.assertEqual(self.steps_of(automation)[0][1]["else"], 2)  # still the send
        # Moving the condition below its target would make it jump back: refused.
        r = self.client.post(self.page(automation, "steps/1/down/"), follow=True)
        self.assertContains(r, "would jump back to step 1")
        self.assertEqual(self.steps_of(automation)[0][0], "condition")
        r = self.client.post(self.page(automation, "steps/1/up/"), follow=True)
        self.assertContains(r, "step 1 is already the first one.")

    def test_adding_and_deleting_steps_keeps_jumps_and_waiting_runs_on_their_step(self) -> None:
        automation = self.make_automation(
            steps=[("condition", {"test": "tag", "tag": "vip", "else": 3}), WAIT, SEND]
        )
        later = timezone.now() + td(days=1)
        waiting = self.make_run(automation, "ann@example.com", position=2, next_run_at=later)
        self.login()
        self.client.post(
            self.page(automation, "steps/add/"), {"kind": "add_tag", "tag": "new", "after": "0"}
        )
        steps = self.steps_of(automation)
        self.assertEqual([k for k, _ in steps], ["add_tag", "condition", "wait", "send"])
        self.assertEqual(steps[1][1]["else"], 4)
        waiting.refresh_from_db()
        self.assertEqual(waiting.position, 3)  # still about to send

        self.client.post(self.page(automation, "steps/1/delete/"))
        steps = self.steps_of(automation)
        self.assertEqual([k for k, _ in steps], ["condition", "wait", "send"])
        self.assertEqual(steps[0][1]["else"], 3)
        waiting.refresh_from_db()
        self.assertEqual(waiting.position, 2)

    def test_enable_disable_and_delete(self) -> None:
        automation = self.make_automation(steps=[WAIT])
        self.make_run(automation, "ann@example.com")
        self.login()
        r = self.client.post(self.page(automation, "enable/"), follow=True)
        self.assertContains(r, "Enabled: contacts who meet the trigger from now on start it.")
        automation.refresh_from_db()
        self.assertTrue(automation.enabled)
        self.assertContains(self.client.get(self.page(automation)), ">Disable</button>")
        self.client.post(self.page(automation, "disable/"))
        automation.refresh_from_db()
        self.assertFalse(automation.enabled)
        r = self.client.post(self.page(automation, "delete/"))
        self.assertRedirects(r, self.url("automations/"))
        self.assertFalse(Automation.objects.exists())
        self.assertFalse(Run.objects.exists())

    def test_a_member_edits_automations_as_they_do_campaigns(self) -> None:
        automation = self.make_automation()
        self.login(self.bob)
        r = self.client.post(self.page(automation, "steps/add/"), {"kind": "exit"}, follow=True)
        self.assertContains(r, "Step 1 added.")
        self.client.post(self.page(automation, "enable/"))
        automation.refresh_from_db()
        self.assertTrue(automation.enabled)


class RunsPageTestCase(AutomationTestCase):
    def test_no_runs_says_how_they_start(self) -> None:
        automation = self.make_automation(steps=[WAIT])
        self.login()
        r = self.client.get(self.page(automation, "runs/"))
        self.assertContains(r, "No runs yet")
        self.assertContains(r, "The automation is disabled")
        r = self.client.get(self.page(automation, "runs/?state=failed"))
        self.assertContains(r, "No runs in this state")

    def test_runs_show_contact_step_state_next_run_and_error_filtered_by_state(self) -> None:
        automation = self.make_automation(steps=[WAIT, SEND])
        later = timezone.now() + td(days=2)
        ann = self.make_run(automation, "ann@example.com", position=1, next_run_at=later)
        self.make_run(
            automation,
            "bea@example.com",
            position=1,
            state=Run.State.FAILED,
            last_error="Step 2: <relay> said no",
        )
        self.make_run(automation, "cat@example.com", position=2, state=Run.State.DONE)
        self.login()
        r = self.client.get(self.page(automation, "runs/"))
        self.assertContains(r, f'href="{self.url(f"contacts/{ann.contact.code}/")}"')
        self.assertContains(r, "1. Wait 2 days")
        self.assertContains(r, "2. Send “Welcome”")
        self.assertContains(r, "finished")
        self.assertContains(r, later.strftime("%Y-%m-%d"))
        self.assertContains(r, "Step 2: &lt;relay&gt; said no")
        r = self.client.get(self.page(automation, "runs/?state=failed"))
        self.assertContains(r, "bea@example.com")
        self.assertNotContains(r, "ann@example.com")

    def test_runs_come_in_keyset_pages(self) -> None:
        automation = self.make_automation(steps=[WAIT])
        for i in range(51):
            self.make_run(automation, f"c{i:02}@example.com", state=Run.State.DONE)
        self.login()
        r = self.client.get(self.page(automation, "runs/?state=done"))
        self.assertContains(r, "c50@example.com")
        self.assertNotContains(r, "c00@example.com")
        after = r.content.decode().split("after=")[1].split('"')[0]
        self.assertIn("state=done&amp;after=", r.content.decode())
        r = self.client.get(self.page(automation, f"runs/?state=done&after={after}"))
        self.assertContains(r, "c00@example.com")
        self.assertNotContains(r, "c01@example.com")
        self.assertContains(r, "← Newer")


class TenancyTestCase(AutomationTestCase):
    def test_another_projects_automation_is_a_404(self) -> None:
        theirs = self.make_automation(project=self.charlies_project, steps=[WAIT])
        self.login()
        mine = self.url(f"automations/{theirs.code}/")
        for path in ("", "settings/", "runs/", "steps/1/"):
            self.assertEqual(self.client.get(mine + path).status_code, 404, path)
        for path in ("enable/", "delete/", "steps/add/", "steps/1/up/", "steps/1/delete/"):
            self.assertEqual(self.client.post(mine + path, {"kind": "exit"}).status_code, 404, path)
        theirs.refresh_from_db()
        self.assertFalse(theirs.enabled)
        self.assertEqual(theirs.steps.count(), 1)

    def test_an_outsider_cannot_reach_the_project(self) -> None:
        automation = self.make_automation()
        self.login(self.charlie)
        self.assertEqual(self.client.get(self.url("automations/")).status_code, 404)
        self.assertEqual(self.client.get(self.page(automation)).status_code, 404)

    def test_another_projects_segment_or_template_is_refused(self) -> None:
        automation = self.make_automation()
        segment = Segment.objects.create(
            project=self.charlies_project, name="Theirs", rules=EVERYONE
        )
        template = Template.objects.create(project=self.charlies_project, name="T", source="x")
        self.login()
        add = self.page(automation, "steps/add/")
        r = self.client.post(
            add, {"kind": "condition", "test": "segment", "segment": str(segment.code)}
        )
        self.assertContains(r, "segment: no such segment in this project.", status_code=422)
        r = self.client.post(add, {"kind": "send", "subject": "S", "template": str(template.code)})
        self.assertContains(r, "template: no such template in this project.", status_code=422)
        self.assertNotContains(r, "Theirs", status_code=422)
        self.assertEqual(Step.objects.count(), 0)
