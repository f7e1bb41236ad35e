from __future__ import annotations

import csv
import io

from postroom.contacts.actions import create_field
from postroom.contacts.models import Segment
from postroom.test import BaseTestCase

VIP = {"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]}


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def emails(response) -> list[str]:
    return [row[0] for row in csv_rows(response)[1:]]


class ExportApiTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_contact("ann@example.com", first_name="Ann", tags=["vip"])
        self.make_contact("bob@example.com", tags=["vip"], status="unsubscribed")
        self.make_contact("cy@example.com")
        self.make_contact("dan@example.com", project=self.charlies_project, tags=["vip"])

    def test_it_streams_every_contact_as_csv(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        r = self.api("GET", "contacts/export")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r["Content-Type"], "text/csv; charset=utf-8")
        self.assertIn('attachment; filename="contacts-', r["Content-Disposition"])
        rows = csv_rows(r)
        self.assertEqual(rows[0][:5], ["email", "first_name", "last_name", "status", "tags"])
        self.assertEqual(rows[0][-1], "plan")
        self.assertEqual(
            [row[0] for row in rows[1:]], ["ann@example.com", "bob@example.com", "cy@example.com"]
        )

    def test_it_filters(self) -> None:
        r = self.api("GET", "contacts/export", {"tag": "vip", "status": "unsubscribed"})
        self.assertEqual(emails(r), ["bob@example.com"])
        r = self.api("GET", "contacts/export", {"q": "ann"})
        self.assertEqual(emails(r), ["ann@example.com"])

    def test_it_exports_a_segment_narrowed_by_the_filters(self) -> None:
        segment = Segment.objects.create(project=self.project, name="VIPs", rules=VIP)
        r = self.api("GET", "contacts/export", {"segment": str(segment.code)})
        self.assertEqual(r["Content-Disposition"], 'attachment; filename="segment-vips.csv"')
        self.assertEqual(emails(r), ["ann@example.com", "bob@example.com"])
        r = self.api(
            "GET", "contacts/export", {"segment": str(segment.code), "status": "subscribed"}
        )
        self.assertEqual(emails(r), ["ann@example.com"])

    def test_it_adds_a_bom_when_asked(self) -> None:
        r = self.api("GET", "contacts/export", {"bom": "true"})
        self.assertTrue(b"".join(r.streaming_content).startswith(b"\xef\xbb\xbfemail,"))

    def test_another_projects_segment_is_a_404(self) -> None:
        theirs = Segment.objects.create(project=self.charlies_project, name="VIPs", rules=VIP)
        r = self.api("GET", "contacts/export", {"segment": str(theirs.code)})
        self.assert_error(r, 404)
        self.assert_error(self.api("GET", "contacts/export", {"segment": "nope"}), 404)

    def test_a_segment_whose_rules_no_longer_hold_is_a_409(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        rules = {
            "match": "all",
            "rules": [{"kind": "field", "key": "plan", "op": "equals", "value": "pro"}],
        }
        segment = Segment.objects.create(project=self.project, name="Pro", rules=rules)
        self.project.fields.all().delete()
        r = self.api("GET", "contacts/export", {"segment": str(segment.code)})
        self.assert_error(r, 409, "segment")

    def test_a_bad_status_is_a_422(self) -> None:
        self.assert_error(self.api("GET", "contacts/export", {"status": "happy"}), 422, "status")

    def test_it_requires_a_secret_key(self) -> None:
        self.assert_error(self.client.get("/api/v1/contacts/export"), 401)
        r = self.api("GET", "contacts/export", key=self.project.public_key)
        self.assertIn("secret key", self.assert_error(r, 403)["message"])

    def test_it_is_not_taken_for_a_contact_id(self) -> None:
        r = self.api("GET", "contacts/export")
        self.assertEqual(r["Content-Type"], "text/csv; charset=utf-8")
