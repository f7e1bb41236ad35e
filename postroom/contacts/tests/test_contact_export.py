"""Everything kept about one contact as JSON (contacts.privacy): the contact page's download
and GET /api/v1/contacts/{id}/export. The recipient's own "download my data" link reads the
same document (tracking/tests/test_unsubscribe.py)."""

from __future__ import annotations

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.contacts.actions import suppress
from postroom.contacts.models import Contact, Suppression
from postroom.contacts.privacy import export_json
from postroom.delivery.actions import default_sender, send_test_email
from postroom.delivery.models import Email, Message
from postroom.test import BaseTestCase, drain
from postroom.tracking.actions import track
from postroom.tracking.models import Event


def document(response) -> dict:
    return json.loads(b"".join(response.streaming_content))


class ContactExportTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ann = self.make_contact(
            "ann@example.com",
            first_name="Ann",
            last_name="Lee",
            data={"plan": "pro"},
            tags=["vip"],
            create_fields=True,
        )
        self.start_campaign(subject="Spring news")
        # Sent to her address before she was a contact, or after she was deleted once.
        send_test_email(self.project, default_sender(self.project), "ann@example.com", None)
        drain()
        track(self.project, "signed-up", "ann@example.com", None, {"plan": "pro"})
        suppress(self.project, "ann@example.com", Suppression.Reason.COMPLAINT, "Spam report")
        self.make_contact("bob@example.com")

    def test_the_contact_page_downloads_everything_as_one_json_document(self) -> None:
        self.login()
        r = self.client.get(self.url(f"contacts/{self.ann.code}/export.json"))
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.streaming)
        self.assertEqual(r["Content-Type"], "application/json; charset=utf-8")
        self.assertEqual(
            r["Content-Disposition"], f'attachment; filename="contact-{self.ann.code}.json"'
        )
        self.assertEqual(r["Cache-Control"], "private, no-store")
        data = document(r)
        self.assertEqual(data["format"], "postroom-contact-data/1")
        self.assertEqual(data["project"], "Alice's project")
        contact = data["contact"]
        self.assertEqual(contact["id"], str(self.ann.code))
        self.assertEqual(
            (contact["email"], contact["first_name"], contact["last_name"]),
            ("ann@example.com", "Ann", "Lee"),
        )
        self.assertEqual(
            (contact["data"], contact["data_labels"]), ({"plan": "pro"}, {"plan": "plan"})
        )
        self.assertEqual([t["name"] for t in contact["tags"]], ["vip"])
        self.assertEqual(contact["status"], "subscribed")
        self.assertEqual(contact["consent"]["source"], "manual")
        self.assertIsNotNone(contact["consent"]["at"])
        self.assertEqual(
            [(s["email"], s["reason"], s["erased"]) for s in data["suppressions"]],
            [("ann@example.com", "complaint", False)],
        )

    def test_it_holds_every_message_and_event_of_the_contact_and_their_address(self) -> None:
        data = json.loads("".join(export_json(self.ann)))
        subjects = [m["subject"] for m in data["messages"]]
        self.assertEqual(len(subjects), 2)
        self.assertIn("Spring news", subjects)
        kinds = {m["kind"]: m for m in data["messages"]}
        self.assertEqual(set(kinds), {"campaign", "test"})
        self.assertEqual(kinds["campaign"]["state"], "sent")
        self.assertIsNotNone(kinds["campaign"]["sent_at"])
        self.assertEqual(kinds["test"]["to"], "ann@example.com")
        events = {(e["kind"], e["name"]) for e in data["events"]}
        # Both messages' "sent" events: the test message's is hers by its address alone.
        self.assertEqual(events, {("sent", ""), ("custom", "signed-up")})
        self.assertEqual(len(data["events"]), 3)
        self.assertEqual(data["totals"], {"messages": 2, "events": 3})
        self.assertNotIn("bob@example.com", json.dumps(data))

    def test_it_has_no_cap_and_reads_as_many_queries_for_thousands_of_rows(self) -> None:
        with CaptureQueriesContext(connection) as few:
            small = json.loads("".join(export_json(self.ann)))
        email = Email.objects.create(
            project=self.project,
            kind=Email.Kind.CAMPAIGN,
            sender=default_sender(self.project),
            from_email="news@example.com",
            subject="Daily",
        )
        Message.objects.bulk_create(
            Message(
                project=self.project,
                email=email,
                sender=email.sender,
                contact=self.ann,
                to_email=self.ann.email,
                state=Message.State.SENT,
            )
            for _ in range(1_200)
        )
        Event.objects.bulk_create(
            Event(project=self.project, kind=Event.Kind.CUSTOM, name=f"e{i}", contact=self.ann)
            for i in range(2_500)
        )
        with CaptureQueriesContext(connection) as many:
            pieces = list(export_json(self.ann))
        big = json.loads("".join(pieces))
        self.assertEqual(big["totals"], {"messages": 1_202, "events": 2_503})
        self.assertEqual(len(big["events"]), 2_503)
        self.assertEqual(len(many), len(few))
        # Written out a chunk of rows at a time, never as one string.
        self.assertGreater(len(pieces), 5)
        self.assertEqual(small["totals"], {"messages": 2, "events": 3})

    def test_the_contact_page_offers_the_download(self) -> None:
        self.login(self.bob)
        r = self.client.get(self.url(f"contacts/{self.ann.code}/"))
        self.assertContains(r, "Download data (JSON)")
        self.assertContains(r, f"contacts/{self.ann.code}/export.json")

    def test_another_projects_contact_is_a_404(self) -> None:
        charlies = self.make_contact("ann@example.com", project=self.charlies_project)
        self.login()
        self.assertEqual(
            self.client.get(self.url(f"contacts/{charlies.code}/export.json")).status_code, 404
        )
        self.login(self.charlie)
        r = self.client.get(self.url(f"contacts/{self.ann.code}/export.json"))
        self.assertEqual(r.status_code, 404)

    def test_the_api_exports_with_the_secret_key(self) -> None:
        r = self.api("GET", f"contacts/{self.ann.code}/export")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r["Content-Type"], "application/json; charset=utf-8")
        data = document(r)
        self.assertEqual(data["contact"]["id"], str(self.ann.code))
        self.assertEqual(data["totals"], {"messages": 2, "events": 3})

    def test_the_api_answers_404_for_another_projects_or_an_unknown_contact(self) -> None:
        charlies = self.make_contact("ann@example.com", project=self.charlies_project)
        for path in (
            f"contacts/{charlies.code}/export",
            "contacts/00000000-0000-0000-0000-000000000000/export",
            "contacts/not-a-uuid/export",
        ):
            with self.subTest(path):
                self.assert_error(self.api("GET", path), 404)
        r = self.api("GET", f"contacts/{self.ann.code}/export", key=self.charlies_secret_key)
        self.assert_error(r, 404)

    def test_the_api_needs_the_secret_key(self) -> None:
        r = self.api("GET", f"contacts/{self.ann.code}/export", key=self.project.public_key)
        self.assertIn(r.status_code, (401, 403))
        self.assertTrue(r.json()["message"])
        self.assertTrue(Contact.objects.filter(pk=self.ann.pk).exists())
