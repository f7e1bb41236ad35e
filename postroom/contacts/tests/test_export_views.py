from __future__ import annotations

import csv
import io

from django.utils import timezone

from postroom.contacts.actions import create_field
from postroom.contacts.models import Contact, Segment
from postroom.test import BaseTestCase

VIP = {"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]}


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def emails(response) -> list[str]:
    return [row[0] for row in csv_rows(response)[1:]]


class ExportViewsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ann = self.make_contact("ann@example.com", first_name="Ann", tags=["vip"])
        self.bob = self.make_contact("bob@example.com", tags=["vip"], status="unsubscribed")
        self.cy = self.make_contact("cy@example.com")
        self.make_contact("dan@example.com", project=self.charlies_project, tags=["vip"])
        self.login()

    def test_the_list_offers_exports_of_what_it_shows(self) -> None:
        r = self.client.get(self.url("contacts/"), {"tag": "vip"})
        self.assertContains(r, f'href="{self.url("contacts/export.csv")}?tag=vip"')
        self.assertContains(r, f'href="{self.url("contacts/export.csv")}?tag=vip&amp;bom=1"')
        self.assertContains(r, f'formaction="{self.url("contacts/export/selection/")}"')
        r = self.client.get(self.url("contacts/"))
        self.assertContains(r, f'href="{self.url("contacts/export.csv")}"')
        self.assertContains(r, "Export all contacts")

    def test_it_exports_every_contact_without_a_filter(self) -> None:
        r = self.client.get(self.url("contacts/export.csv"))
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r["Content-Type"], "text/csv; charset=utf-8")
        today = timezone.localdate().isoformat()
        self.assertEqual(r["Content-Disposition"], f'attachment; filename="contacts-{today}.csv"')
        self.assertEqual(emails(r), ["ann@example.com", "bob@example.com", "cy@example.com"])

    def test_it_exports_what_the_filter_shows(self) -> None:
        r = self.client.get(self.url("contacts/export.csv"), {"tag": "vip", "status": "subscribed"})
        self.assertEqual(emails(r), ["ann@example.com"])
        r = self.client.get(self.url("contacts/export.csv"), {"q": "Ann"})
        self.assertEqual(emails(r), ["ann@example.com"])
        r = self.client.get(self.url("contacts/export.csv"), {"tag": "nobody-has-this"})
        self.assertEqual(csv_rows(r)[0][0], "email")
        self.assertEqual(emails(r), [])

    def test_it_adds_a_bom_for_excel(self) -> None:
        r = self.client.get(self.url("contacts/export.csv"), {"bom": "1"})
        self.assertTrue(b"".join(r.streaming_content).startswith(b"\xef\xbb\xbfemail,"))

    def test_it_exports_custom_fields(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        self.make_contact("eve@example.com", data={"plan": "pro"})
        rows = csv_rows(self.client.get(self.url("contacts/export.csv")))
        self.assertEqual(rows[0][-1], "plan")
        self.assertEqual(rows[-1][0], "eve@example.com")
        self.assertEqual(rows[-1][-1], "pro")

    def test_it_exports_the_ticked_contacts(self) -> None:
        theirs = Contact.objects.get(email="dan@example.com")
        r = self.client.post(
            self.url("contacts/export/selection/"),
            {"contact": [str(self.ann.code), str(self.cy.code), str(theirs.code), "junk"]},
        )
        self.assertEqual(r.status_code, 200)
        self.assertIn("contacts-selection-", r["Content-Disposition"])
        self.assertEqual(emails(r), ["ann@example.com", "cy@example.com"])

    def test_exporting_nothing_ticked_says_so(self) -> None:
        r = self.client.post(self.url("contacts/export/selection/"), {"contact": []}, follow=True)
        self.assertRedirects(r, self.url("contacts/"))
        self.assertContains(r, "Tick the contacts to export first.")

    def test_the_ticked_export_is_a_post(self) -> None:
        r = self.client.get(self.url("contacts/export/selection/"), {"contact": str(self.ann.code)})
        self.assertEqual(r.status_code, 405)

    def test_the_bulk_actions_still_work_beside_it(self) -> None:
        r = self.client.post(
            self.url("contacts/bulk/"),
            {"action": "tag", "bulk_tag": "new", "scope": "selected", "contact": [self.cy.code]},
        )
        self.assertRedirects(r, self.url("contacts/"))
        self.assertEqual([t.name for t in self.cy.tags.all()], ["new"])

    def test_it_exports_a_segment(self) -> None:
        segment = Segment.objects.create(project=self.project, name="Our VIPs", rules=VIP)
        r = self.client.get(self.url(f"segments/{segment.code}/"))
        self.assertContains(r, f'href="{self.url(f"segments/{segment.code}/export.csv")}"')
        r = self.client.get(self.url(f"segments/{segment.code}/export.csv"), {"bom": "1"})
        self.assertEqual(r["Content-Disposition"], 'attachment; filename="segment-our-vips.csv"')
        rows = csv_rows(r)
        self.assertEqual(rows[0][0], "\ufeffemail")
        self.assertEqual([row[0] for row in rows[1:]], ["ann@example.com", "bob@example.com"])

    def test_a_segment_whose_rules_no_longer_hold_is_not_exported(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        rules = {
            "match": "all",
            "rules": [{"kind": "field", "key": "plan", "op": "equals", "value": "pro"}],
        }
        segment = Segment.objects.create(project=self.project, name="Pro", rules=rules)
        self.project.fields.all().delete()
        r = self.client.get(self.url(f"segments/{segment.code}/export.csv"), follow=True)
        self.assertRedirects(r, self.url(f"segments/{segment.code}/"))
        self.assertContains(r, "Cannot export: the rules no longer hold.")

    def test_another_projects_segment_is_a_404(self) -> None:
        theirs = Segment.objects.create(project=self.charlies_project, name="VIPs", rules=VIP)
        r = self.client.get(self.url(f"segments/{theirs.code}/export.csv"))
        self.assertEqual(r.status_code, 404)
        r = self.client.get(self.url(f"segments/{theirs.code}/export.csv", self.charlies_project))
        self.assertEqual(r.status_code, 404)

    def test_another_projects_contacts_are_a_404(self) -> None:
        r = self.client.get(self.url("contacts/export.csv", self.charlies_project))
        self.assertEqual(r.status_code, 404)

    def test_it_requires_login(self) -> None:
        self.client.logout()
        segment = Segment.objects.create(project=self.project, name="VIPs", rules=VIP)
        for path in ("contacts/export.csv", f"segments/{segment.code}/export.csv"):
            r = self.client.get(self.url(path))
            self.assertEqual(r.status_code, 302, path)
            self.assertIn("login", r["Location"])
        r = self.client.post(self.url("contacts/export/selection/"), {"contact": self.ann.code})
        self.assertEqual(r.status_code, 302)
        self.assertIn("login", r["Location"])
