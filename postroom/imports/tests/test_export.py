from __future__ import annotations

import csv
import datetime as dt
import io
from unittest import mock

from django.db.models import QuerySet
from django.utils import timezone

from postroom.contacts import rules
from postroom.contacts.actions import create_field
from postroom.contacts.models import Contact, Segment
from postroom.imports.export import (
    BASE_COLUMNS,
    contacts_of_segment,
    export_filename,
    export_response,
    export_rows,
)
from postroom.test import BaseTestCase


class ExportTestCase(BaseTestCase):
    def rows(self, contacts: QuerySet[Contact] | None = None, **kw) -> list[list[str]]:
        contacts = (
            contacts if contacts is not None else Contact.objects.filter(project=self.project)
        )
        text = "".join(export_rows(self.project, contacts, **kw))
        return list(csv.reader(io.StringIO(text, newline="")))

    def by_email(self, rows: list[list[str]]) -> dict[str, dict[str, str]]:
        header, *body = rows
        return {row[0]: dict(zip(header, row, strict=True)) for row in body}

    def test_it_writes_the_importers_columns_then_the_custom_fields(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        create_field(self.project, "age", "Age", "number")
        create_field(self.project, "vip", "VIP", "boolean")
        create_field(self.project, "since", "Since", "date")
        self.assertEqual(self.rows(), [[*BASE_COLUMNS, "age", "plan", "since", "vip"]])

    def test_the_importer_maps_the_header_back(self) -> None:
        from postroom.imports.columns import auto_mapping

        create_field(self.project, "plan", "Plan", "text")
        fields = {f.key: f for f in self.project.fields.all()}
        (header,) = self.rows()
        mapping = dict(zip(header, auto_mapping(header, fields, []), strict=True))
        for column in ("email", "first_name", "last_name", "status", "tags", "consent_at"):
            self.assertEqual(mapping[column], {"target": column})
        self.assertEqual(mapping["plan"], {"target": "field", "field": "plan"})

    def test_it_writes_a_row_per_contact(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        create_field(self.project, "age", "Age", "number")
        create_field(self.project, "vip", "VIP", "boolean")
        create_field(self.project, "since", "Since", "date")
        ann = self.make_contact(
            "ann@example.com",
            first_name="Ann",
            last_name="Lee",
            tags=["vip", "customer"],
            data={"plan": "pro", "age": 42, "vip": True, "since": "2024-02-29"},
        )
        self.make_contact("bob@example.com", status="unsubscribed", data={"vip": False})
        rows = self.by_email(self.rows())
        self.assertEqual(
            rows["ann@example.com"],
            {
                "email": "ann@example.com",
                "first_name": "Ann",
                "last_name": "Lee",
                "status": "subscribed",
                "tags": "customer, vip",
                "consent_at": ann.consent_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
                "consent_source": "manual",
                "created_at": ann.created_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
                "plan": "pro",
                "age": "42",
                "vip": "true",
                "since": "2024-02-29",
            },
        )
        bob = rows["bob@example.com"]
        self.assertEqual((bob["status"], bob["tags"], bob["consent_at"]), ("unsubscribed", "", ""))
        self.assertEqual((bob["vip"], bob["plan"], bob["age"]), ("false", "", ""))

    def test_it_neutralises_formulas(self) -> None:
        create_field(self.project, "note", "Note", "text")
        create_field(self.project, "score", "Score", "number")
        self.make_contact(
            "ann@example.com",
            first_name='=HYPERLINK("http://evil")',
            last_name="+1+cmd|' /C calc'!A0",
            tags=["@SUM(1)"],
            data={"note": "-2+3", "score": -5},
        )
        ann = self.by_email(self.rows())["ann@example.com"]
        self.assertEqual(ann["first_name"], '\'=HYPERLINK("http://evil")')
        self.assertEqual(ann["last_name"], "'+1+cmd|' /C calc'!A0")
        self.assertEqual(ann["tags"], "'@SUM(1)")
        self.assertEqual(ann["note"], "'-2+3")
        # A number is a number to a spreadsheet, and must import back as one.
        self.assertEqual(ann["score"], "-5")

    def test_every_line_ends_as_rfc_4180_says_and_quotes_what_needs_it(self) -> None:
        self.make_contact("ann@example.com", first_name='Ann "A", B')
        text = "".join(export_rows(self.project, Contact.objects.all()))
        self.assertIn('"Ann ""A"", B"', text)
        self.assertTrue(all(line.endswith("\r\n") for line in text.splitlines(keepends=True)))

    def test_it_starts_with_a_bom_for_excel_only_when_asked(self) -> None:
        self.make_contact("zoe@example.com", first_name="Zoë")
        plain = "".join(export_rows(self.project, Contact.objects.all()))
        excel = "".join(export_rows(self.project, Contact.objects.all(), bom=True))
        self.assertTrue(plain.startswith("email,"))
        self.assertEqual(excel, "\ufeff" + plain)
        self.assertTrue(excel.encode().startswith(b"\xef\xbb\xbfemail,"))

    def test_it_walks_the_contacts_in_chunks_by_id(self) -> None:
        emails = [f"c{i}@example.com" for i in range(7)]
        for i, email in enumerate(emails):
            self.make_contact(email, tags=[f"t{i}"])
        with mock.patch("postroom.imports.export.CHUNK_SIZE", 3):
            rows = self.rows()
        self.assertEqual([row[0] for row in rows[1:]], emails)
        self.assertEqual([row[4] for row in rows[1:]], [f"t{i}" for i in range(7)])

    def test_it_costs_two_queries_per_chunk_whatever_the_number_of_contacts(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        for i in range(7):
            self.make_contact(f"c{i}@example.com", tags=["a", "b"], data={"plan": "pro"})
        contacts = Contact.objects.filter(project=self.project)
        with mock.patch("postroom.imports.export.CHUNK_SIZE", 3):
            # The fields, then 3 chunks (3, 3, 1 contacts) of contacts and their tags.
            with self.assertNumQueries(1 + 3 * 2):
                self.assertEqual(len(self.rows(contacts)), 8)
            # A last full chunk costs one more query to learn that nothing follows.
            Contact.objects.filter(email="c6@example.com").delete()
            with self.assertNumQueries(1 + 2 * 2 + 1):
                self.assertEqual(len(self.rows(contacts)), 7)

    def test_it_exports_the_queryset_it_is_given(self) -> None:
        self.make_contact("ann@example.com", tags=["vip"])
        self.make_contact("bob@example.com")
        self.make_contact("cy@example.com", project=self.charlies_project, tags=["vip"])
        segment = Segment.objects.create(
            project=self.project,
            name="VIPs",
            rules={"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]},
        )
        self.assertEqual(
            list(self.by_email(self.rows(contacts_of_segment(segment)))), ["ann@example.com"]
        )

    def test_a_segment_with_stale_rules_is_an_error(self) -> None:
        create_field(self.project, "plan", "Plan", "text")
        segment = Segment.objects.create(
            project=self.project,
            name="Pro",
            rules={
                "match": "all",
                "rules": [{"kind": "field", "key": "plan", "op": "equals", "value": "pro"}],
            },
        )
        contacts_of_segment(segment)
        self.project.fields.all().delete()
        with self.assertRaises(rules.RuleError):
            contacts_of_segment(segment)

    def test_the_file_names_are_safe(self) -> None:
        today = timezone.localdate().isoformat()
        self.assertEqual(export_filename(), f"contacts-{today}.csv")
        segment = Segment(project=self.project, name='../Ann\'s "VIPs"\r\n; x=y')
        self.assertEqual(export_filename(segment), "segment-anns-vips-xy.csv")
        segment.name = "日本"
        self.assertEqual(export_filename(segment), f"segment-{segment.code}.csv")

    def test_the_response_is_a_csv_download(self) -> None:
        self.make_contact("ann@example.com")
        r = export_response(self.project, Contact.objects.all(), "contacts-2025-01-01.csv")
        self.assertEqual(r["Content-Type"], "text/csv; charset=utf-8")
        self.assertEqual(r["Content-Disposition"], 'attachment; filename="contacts-2025-01-01.csv"')
        body = b"".join(r.streaming_content).decode()
        self.assertIn("\r\nann@example.com,", body)
