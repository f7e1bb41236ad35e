"""The automations API: create (with steps), read, change, enable and delete automations; add,
change, move and delete steps by number; runs in keyset pages; bad input a 422 naming the
field, enabling with no steps a 409, and another project's objects a 404."""

from __future__ import annotations

from datetime import timedelta as td

from django.utils import timezone

from postroom.automations import actions
from postroom.automations.models import Automation, Run
from postroom.contacts.models import Segment
from postroom.content.models import Template
from postroom.delivery.models import Sender
from postroom.test import BaseTestCase

WELCOME = {"name": "Welcome", "trigger": "event", "trigger_event": "signup confirmed"}
WAIT = {"kind": "wait", "config": {"amount": 1, "unit": "days"}}
SEND = {"kind": "send", "config": {"subject": "Welcome", "body": "Hello **there**"}}


class AutomationsApiTestCase(BaseTestCase):
    def create(self, **fields) -> dict:
        r = self.api("POST", "automations", {**WELCOME, **fields})
        self.assertEqual(r.status_code, 201, r.content)
        return r.json()

    def make_run(self, automation_id: str, email: str, **fields) -> Run:
        automation = Automation.objects.get(code=automation_id)
        return Run.objects.create(
            project=automation.project,
            automation=automation,
            contact=self.make_contact(email),
            **fields,
        )

    def test_create_read_list_update_and_delete(self) -> None:
        created = self.create(steps=[WAIT, SEND], enabled=True, cancel_event="purchase")
        self.assertEqual(
            [(s["number"], s["kind"], s["description"]) for s in created["steps"]],
            [(1, "wait", "Wait 1 day"), (2, "send", "Send “Welcome”")],
        )
        self.assertEqual(created["trigger_description"], "When a contact does “signup confirmed”")
        self.assertEqual(created["runs"], {"waiting": 0, "done": 0, "cancelled": 0, "failed": 0})
        self.assertIs(created["enabled"], True)
        self.assertIsNone(created["sender"])
        code = created["id"]
        self.assertEqual([a["id"] for a in self.api("GET", "automations").json()], [code])
        self.assertEqual(self.api("GET", f"automations/{code}").json()["cancel_event"], "purchase")

        # A change of name alone keeps the trigger; other settings change as sent.
        r = self.api("PATCH", f"automations/{code}", {"name": "Onboarding"})
        self.assertEqual(
            (r.json()["name"], r.json()["trigger_event"]), ("Onboarding", "signup confirmed")
        )
        sender = Sender.objects.create(project=self.project, name="News", from_email="n@x.com")
        r = self.api(
            "PATCH",
            f"automations/{code}",
            {
                "trigger": "tag",
                "trigger_tag": "trial",
                "sender": str(sender.code),
                "enabled": False,
            },
        )
        body = r.json()
        self.assertEqual(
            (body["trigger"], body["trigger_tag"], body["trigger_event"], body["sender"]),
            ("tag", "trial", "", str(sender.code)),
        )
        self.assertIs(body["enabled"], False)
        r = self.api("PATCH", f"automations/{code}", {"sender": None})
        self.assertIsNone(r.json()["sender"])

        self.assertEqual(self.api("DELETE", f"automations/{code}").json()["success"], True)
        self.assertEqual(self.api("GET", f"automations/{code}").status_code, 404)

    def test_bad_input_is_a_422_naming_the_field(self) -> None:
        cases = [
            ({"name": ""}, "name"),
            ({"trigger": "whenever"}, "trigger"),
            ({"trigger_event": ""}, "trigger_event"),
            ({"trigger": "segment", "trigger_segment": "nope"}, "trigger_segment"),
            ({"repeat": "twice"}, "repeat"),
            ({"sender": "nope"}, "sender"),
            ({"steps": [WAIT, {"kind": "wait", "config": {"amount": "x"}}]}, "steps.1.amount"),
            ({"steps": [{"kind": "teleport", "config": {}}]}, "steps.0.kind"),
            ({"steps": [{"kind": "wait", "config": {"unit": ["days"]}}]}, "steps.0.config.unit"),
        ]
        for fields, field in cases:
            r = self.api("POST", "automations", {**WELCOME, **fields})
            self.assert_error(r, 422, field)
        self.assertFalse(Automation.objects.exists())  # nothing half made
        code = self.create()["id"]
        self.assert_error(
            self.api("PATCH", f"automations/{code}", {"name": "x" * 101}), 422, "name"
        )
        self.assert_error(
            self.api("PATCH", f"automations/{code}", {"trigger": "tag"}), 422, "trigger_tag"
        )

    def test_enabling_with_no_steps_is_a_409(self) -> None:
        self.assert_error(self.api("POST", "automations", {**WELCOME, "enabled": True}), 409)
        self.assertFalse(Automation.objects.exists())
        code = self.create()["id"]
        body = self.assert_error(self.api("PATCH", f"automations/{code}", {"enabled": True}), 409)
        self.assertIn("no steps", body["message"])

    def test_steps_are_added_changed_moved_and_deleted_by_number(self) -> None:
        code = self.create(steps=[WAIT, SEND])["id"]
        steps = f"automations/{code}/steps"
        condition = {"test": "tag", "tag": "vip", "else": 3}
        r = self.api("POST", steps, {"kind": "condition", "config": condition, "after": 1})
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(
            r.json()["description"], "If the contact has the tag “vip”, go on; else go to step 3"
        )
        self.assertEqual(r.json()["number"], 2)
        r = self.api("POST", steps, {"kind": "add_tag", "config": {"tag": "x"}, "after": 0})
        self.assertEqual(r.json()["number"], 1)
        body = self.api("GET", f"automations/{code}").json()
        self.assertEqual(
            [s["kind"] for s in body["steps"]], ["add_tag", "wait", "condition", "send"]
        )
        self.assertEqual(body["steps"][2]["config"]["else"], 4)  # still the send

        r = self.api("PATCH", f"{steps}/2", {"config": {"amount": 3, "unit": "hours"}})
        self.assertEqual(r.json()["description"], "Wait 3 hours")
        self.assert_error(self.api("PATCH", f"{steps}/2", {"config": {"unit": "weeks"}}), 422)
        self.assert_error(
            self.api("PATCH", f"{steps}/2", {"config": {"amount": 1, "unit": "weeks"}}), 422, "unit"
        )

        r = self.api("POST", f"{steps}/1/move", {"direction": "down"})
        self.assertEqual(
            [s["kind"] for s in r.json()["steps"]], ["wait", "add_tag", "condition", "send"]
        )
        self.assert_error(self.api("POST", f"{steps}/1/move", {"direction": "up"}), 409)
        self.assert_error(self.api("POST", f"{steps}/3/move", {"direction": "down"}), 409)
        self.assert_error(self.api("POST", f"{steps}/1/move", {"direction": "left"}), 422)

        r = self.api("DELETE", f"{steps}/2")
        self.assertEqual([s["kind"] for s in r.json()["steps"]], ["wait", "condition", "send"])
        self.assertEqual(r.json()["steps"][1]["config"]["else"], 3)
        for path in (f"{steps}/9", f"{steps}/0", f"{steps}/99999999999"):
            self.assert_error(self.api("DELETE", path), 404)
        self.assert_error(
            self.api("POST", steps, {"kind": "exit", "config": {}, "after": 9}), 422, "after"
        )

    def test_a_step_counts_the_runs_waiting_at_it(self) -> None:
        created = self.create(steps=[WAIT, SEND])
        later = timezone.now() + td(hours=5)
        self.make_run(created["id"], "ann@example.com", position=1, next_run_at=later)
        self.make_run(created["id"], "bea@example.com", position=1)
        self.make_run(created["id"], "cat@example.com", position=2, state=Run.State.DONE)
        body = self.api("GET", f"automations/{created['id']}").json()
        self.assertEqual([s["waiting"] for s in body["steps"]], [1, 1])
        self.assertEqual(body["runs"], {"waiting": 2, "done": 1, "cancelled": 0, "failed": 0})
        self.assertEqual(self.api("GET", "automations").json()[0]["runs"]["waiting"], 2)

    def test_runs_come_in_keyset_pages_filtered_by_state(self) -> None:
        code = self.create(steps=[WAIT, SEND])["id"]
        later = timezone.now() + td(hours=5)
        ann = self.make_run(code, "ann@example.com", position=1, next_run_at=later)
        self.make_run(code, "bea@example.com", position=2, state=Run.State.DONE)
        self.make_run(code, "cat@example.com", state=Run.State.FAILED, last_error="boom")
        page = self.api("GET", f"automations/{code}/runs", {"limit": 2}).json()
        self.assertEqual(
            [r["email"] for r in page["items"]], ["cat@example.com", "bea@example.com"]
        )
        self.assertEqual(page["items"][1]["step"], None)
        page = self.api(
            "GET", f"automations/{code}/runs", {"limit": 2, "cursor": page["next_cursor"]}
        ).json()
        [run] = page["items"]
        self.assertEqual(
            (run["id"], run["contact"], run["step"], run["step_description"], run["state"]),
            (str(ann.code), str(ann.contact.code), 1, "Wait 1 day", "waiting"),
        )
        self.assertIsNotNone(run["next_run_at"])
        self.assertIsNone(page["next_cursor"])
        page = self.api("GET", f"automations/{code}/runs", {"state": "failed"}).json()
        self.assertEqual(
            [(r["email"], r["last_error"]) for r in page["items"]], [("cat@example.com", "boom")]
        )
        self.assert_error(
            self.api("GET", f"automations/{code}/runs", {"state": "lost"}), 422, "state"
        )


class AutomationsApiTenancyTestCase(BaseTestCase):
    def test_another_projects_automation_is_a_404(self) -> None:
        theirs = Automation(project=self.charlies_project)
        actions.save_automation(theirs, WELCOME)
        actions.add_step(theirs, "exit", {})
        code = theirs.code
        for method, path, data in [
            ("GET", f"automations/{code}", None),
            ("PATCH", f"automations/{code}", {"enabled": True}),
            ("DELETE", f"automations/{code}", None),
            ("POST", f"automations/{code}/steps", {"kind": "exit", "config": {}}),
            ("PATCH", f"automations/{code}/steps/1", {"config": {}}),
            ("DELETE", f"automations/{code}/steps/1", None),
            ("POST", f"automations/{code}/steps/1/move", {"direction": "down"}),
            ("GET", f"automations/{code}/runs", None),
        ]:
            self.assert_error(self.api(method, path, data), 404)
        self.assertEqual(self.api("GET", "automations").json(), [])
        theirs.refresh_from_db()
        self.assertFalse(theirs.enabled)
        self.assertEqual(theirs.steps.count(), 1)

    def test_another_projects_segment_template_and_sender_are_refused(self) -> None:
        rules = {"match": "all", "rules": []}
        segment = Segment.objects.create(project=self.charlies_project, name="S", rules=rules)
        template = Template.objects.create(project=self.charlies_project, name="T", source="x")
        sender = Sender.objects.create(
            project=self.charlies_project, name="Theirs", from_email="c@example.net"
        )
        for fields, field in [
            ({"trigger": "segment", "trigger_segment": str(segment.code)}, "trigger_segment"),
            ({"sender": str(sender.code)}, "sender"),
            (
                {
                    "steps": [
                        {"kind": "send", "config": {"subject": "S", "template": str(template.code)}}
                    ]
                },
                "steps.0.template",
            ),
        ]:
            self.assert_error(self.api("POST", "automations", {**WELCOME, **fields}), 422, field)

    def test_it_requires_a_secret_key(self) -> None:
        r = self.client.get("/api/v1/automations")
        self.assert_error(r, 401)
        r = self.api("GET", "automations", key=self.project.public_key)
        self.assert_error(r, 403)
