"""The import's write modes (create, upsert, unsubscribe, suppress), its per-row validation,
the files it refuses, and dry runs: run through the worker step as a real import is."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from unittest.mock import patch

from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from postroom.contacts.models import (
    ConsentSource,
    Contact,
    ContactTag,
    FieldDefinition,
    Status,
    Suppression,
    Tag,
)
from postroom.imports import actions
from postroom.imports.actions import ImportProblem
from postroom.imports.models import Import, ImportIssue
from postroom.imports.tests.test_import_files import ImportTestCase


def csv_bytes(*lines: str, encoding: str = "utf-8") -> bytes:
    return "".join(f"{line}\n" for line in lines).encode(encoding)


def zipped(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class ModesTestCase(ImportTestCase):
    def imported(self, *lines: str, **chosen) -> Import:
        """Upload `lines` as contacts.csv with the chosen settings and run it to the end."""
        imp = self.run_import(self.upload("contacts.csv", csv_bytes(*lines), **chosen))
        self.assertEqual(imp.state, Import.State.DONE, imp.error)
        return imp

    def contact(self, email: str) -> Contact:
        return Contact.objects.get(project=self.project, email=email)

    def tag_names(self, email: str) -> set[str]:
        return set(self.contact(email).tags.values_list("name", flat=True))


class CreateModeTest(ModesTestCase):
    def test_it_creates_contacts_with_import_as_their_consent_source(self) -> None:
        before = timezone.now()
        imp = self.imported("email,first_name,last_name", "ann@example.com,Ann,Lee")
        self.assertEqual(imp.counts(), {**imp.counts(), "created": 1, "rejected": 0})
        ann = self.contact("ann@example.com")
        self.assertEqual((ann.first_name, ann.last_name), ("Ann", "Lee"))
        self.assertEqual(ann.status, Status.SUBSCRIBED)
        self.assertEqual(ann.consent_source, ConsentSource.IMPORT)
        self.assertGreaterEqual(ann.consent_at, before)

    def test_it_skips_existing_contacts_with_a_reason_and_leaves_them_alone(self) -> None:
        self.make_contact("ann@example.com", first_name="Ann", data={})
        imp = self.imported(
            "email,first_name,last_name", "ANN@example.com,Annie,Lee", "bob@example.org,Bob,"
        )
        self.assertEqual((imp.created, imp.skipped, imp.updated), (1, 1, 0))
        skipped = self.issues(imp, ImportIssue.Kind.SKIPPED)
        self.assertEqual(list(skipped), [2])
        self.assertIn("ann@example.com is already a contact", skipped[2])
        ann = self.contact("ann@example.com")
        self.assertEqual((ann.first_name, ann.last_name), ("Ann", ""))
        self.assertEqual(ann.consent_source, ConsentSource.MANUAL)


class UpsertModeTest(ModesTestCase):
    HEADER = "email,first_name,last_name,status,city"

    def setUp(self) -> None:
        super().setUp()
        FieldDefinition.objects.create(project=self.project, key="city", label="City")
        self.ann = self.make_contact(
            "ann@example.com", first_name="Ann", data={"city": "Berlin"}, tags=["old"]
        )

    def upsert(self, *lines: str, overwrite: list[str] | None = None, **chosen) -> Import:
        return self.imported(self.HEADER, *lines, mode="upsert", overwrite=overwrite, **chosen)

    def test_without_overwrite_it_fills_blanks_and_keeps_values(self) -> None:
        imp = self.upsert("ann@example.com,Annie,Lee,unsubscribed,Hamburg")
        self.assertEqual((imp.created, imp.updated, imp.unchanged), (0, 1, 0))
        ann = self.contact("ann@example.com")
        self.assertEqual((ann.first_name, ann.last_name), ("Ann", "Lee"))
        self.assertEqual(ann.data, {"city": "Berlin"})
        self.assertEqual(ann.status, Status.SUBSCRIBED)

    def test_it_fills_a_blank_custom_field_without_overwrite(self) -> None:
        self.make_contact("bob@example.org", first_name="Bob")
        imp = self.upsert("bob@example.org,,,,Köln")
        self.assertEqual(imp.updated, 1)
        self.assertEqual(self.contact("bob@example.org").data, {"city": "Köln"})

    def test_overwrite_names_replaces_the_names_only(self) -> None:
        self.upsert("ann@example.com,Annie,Lee,unsubscribed,Hamburg", overwrite=["names"])
        ann = self.contact("ann@example.com")
        self.assertEqual((ann.first_name, ann.last_name), ("Annie", "Lee"))
        self.assertEqual(ann.data, {"city": "Berlin"})
        self.assertEqual(ann.status, Status.SUBSCRIBED)

    def test_overwrite_data_replaces_custom_fields_only(self) -> None:
        self.upsert("ann@example.com,Annie,,unsubscribed,Hamburg", overwrite=["data"])
        ann = self.contact("ann@example.com")
        self.assertEqual(ann.first_name, "Ann")
        self.assertEqual(ann.data, {"city": "Hamburg"})
        self.assertEqual(ann.status, Status.SUBSCRIBED)

    def test_overwrite_status_changes_the_status_only(self) -> None:
        self.upsert("ann@example.com,Annie,,unsubscribed,Hamburg", overwrite=["status"])
        ann = self.contact("ann@example.com")
        self.assertEqual(ann.first_name, "Ann")
        self.assertEqual(ann.data, {"city": "Berlin"})
        self.assertEqual(ann.status, Status.UNSUBSCRIBED)
        self.assertIsNotNone(ann.status_changed_at)
        self.assertIn("import", ann.status_reason)

    def test_overwrite_status_resubscribes_with_the_import_as_consent(self) -> None:
        self.make_contact("bob@example.org", status=Status.UNSUBSCRIBED)
        self.upsert("bob@example.org,,,subscribed,", overwrite=["status"])
        bob = self.contact("bob@example.org")
        self.assertEqual(bob.status, Status.SUBSCRIBED)
        self.assertEqual(bob.consent_source, ConsentSource.IMPORT)
        self.assertIsNotNone(bob.consent_at)

    def test_empty_cells_never_erase_values(self) -> None:
        self.ann.last_name = "Lee"
        self.ann.save()
        imp = self.upsert("ann@example.com,,,,", overwrite=["names", "data", "status"])
        self.assertEqual((imp.updated, imp.unchanged), (0, 1))
        ann = self.contact("ann@example.com")
        self.assertEqual((ann.first_name, ann.last_name), ("Ann", "Lee"))
        self.assertEqual(ann.data, {"city": "Berlin"})
        self.assertEqual(ann.status, Status.SUBSCRIBED)

    def test_tags_are_added_never_removed(self) -> None:
        self.imported("email,tags", '"ann@example.com","new, vip"', mode="upsert", tags=["spring"])
        self.assertEqual(self.tag_names("ann@example.com"), {"old", "new", "vip", "spring"})

    def test_a_bounced_contact_is_not_resubscribed(self) -> None:
        for status in (Status.BOUNCED, Status.COMPLAINED):
            with self.subTest(status):
                Contact.objects.filter(pk=self.ann.pk).update(status=status)
                imp = self.upsert("ann@example.com,Ann,,subscribed,Berlin", overwrite=["status"])
                self.assertEqual(self.contact("ann@example.com").status, status)
                self.assertEqual((imp.updated, imp.unchanged), (0, 1))

    def test_a_row_that_changes_nothing_is_counted_unchanged(self) -> None:
        imp = self.upsert(
            "ann@example.com,Ann,,subscribed,Berlin", overwrite=["names", "data", "status"]
        )
        self.assertEqual(imp.counts(), {**imp.counts(), "updated": 0, "unchanged": 1})
        self.assertEqual(self.contact("ann@example.com").updated_at, self.ann.updated_at)

    def test_a_tag_the_contact_has_changes_nothing(self) -> None:
        imp = self.imported("email", "ann@example.com", mode="upsert", tags=["old"])
        self.assertEqual((imp.updated, imp.unchanged), (0, 1))

    def test_it_creates_the_contacts_that_do_not_exist(self) -> None:
        imp = self.upsert("ann@example.com,Ann,,,", "bob@example.org,Bob,Stone,,Köln")
        self.assertEqual((imp.created, imp.unchanged), (1, 1))
        bob = self.contact("bob@example.org")
        self.assertEqual((bob.first_name, bob.data), ("Bob", {"city": "Köln"}))
        self.assertEqual(bob.consent_source, ConsentSource.IMPORT)


class StatusModesTest(ModesTestCase):
    def test_unsubscribe_mode_unsubscribes_the_listed_contacts(self) -> None:
        self.make_contact("ann@example.com")
        self.make_contact("bob@example.org", status=Status.UNSUBSCRIBED)
        self.make_contact("cid@example.net")
        imp = self.imported(
            "email,first_name",
            "ann@example.com,Annie",
            "bob@example.org,Bob",
            "zed@example.com,Zed",
            mode="unsubscribe",
        )
        self.assertEqual(imp.counts(), {**imp.counts(), "created": 0, "updated": 1})
        self.assertEqual((imp.unchanged, imp.skipped), (1, 1))
        ann = self.contact("ann@example.com")
        self.assertEqual((ann.status, ann.first_name), (Status.UNSUBSCRIBED, ""))
        self.assertIsNotNone(ann.status_changed_at)
        self.assertEqual(self.contact("cid@example.net").status, Status.SUBSCRIBED)
        self.assertFalse(Contact.objects.filter(email="zed@example.com").exists())
        self.assertEqual(
            self.issues(imp, ImportIssue.Kind.SKIPPED), {4: "zed@example.com is not a contact."}
        )

    def test_suppress_mode_adds_suppressions(self) -> None:
        Suppression.objects.create(project=self.project, email="bob@example.org")
        imp = self.imported(
            "email", "ann@example.com", "BOB@example.org", "cid@example.net", mode="suppress"
        )
        self.assertEqual((imp.created, imp.unchanged, imp.rejected), (2, 1, 0))
        self.assertEqual(
            set(Suppression.objects.filter(project=self.project).values_list("email", flat=True)),
            {"ann@example.com", "bob@example.org", "cid@example.net"},
        )
        self.assertEqual(Contact.objects.filter(project=self.project).count(), 0)

    def test_status_modes_read_the_address_alone(self) -> None:
        # A bad name or date does not stop an address from being suppressed.
        imp = self.imported(
            "email,consent date", "ann@example.com,03/04/2024", "not-an-email,", mode="suppress"
        )
        self.assertEqual((imp.created, imp.rejected), (1, 1))


class TagsOptionTest(ModesTestCase):
    def test_the_tags_option_tags_created_and_updated_rows(self) -> None:
        self.make_contact("ann@example.com", tags=["old"])
        imp = self.imported(
            "email,tags",
            "ann@example.com,",
            "bob@example.org,vip",
            mode="upsert",
            tags=["spring", "fair"],
        )
        self.assertEqual((imp.created, imp.updated), (1, 1))
        self.assertEqual(self.tag_names("ann@example.com"), {"old", "spring", "fair"})
        self.assertEqual(self.tag_names("bob@example.org"), {"vip", "spring", "fair"})

    def test_the_tags_option_tags_created_rows_in_mode_create(self) -> None:
        self.imported("email", "ann@example.com", "bob@example.org", tags=["fair"])
        self.assertEqual(ContactTag.objects.filter(tag__name="fair").count(), 2)

    def test_a_tag_too_long_rejects_the_row(self) -> None:
        imp = self.imported("email,tags", f"ann@example.com,{'x' * 101}", "bob@example.org,ok")
        self.assertEqual(imp.created, 1)
        self.assertIn("tags:", self.issues(imp, ImportIssue.Kind.REJECTED)[2])


class ConsentAndStatusColumnsTest(ModesTestCase):
    def test_the_consent_date_column_sets_consent_at(self) -> None:
        imp = self.imported(
            "email,consent date",
            "ann@example.com,2024-03-01",
            "bob@example.org,15.04.2024",
            "cid@example.net,2024-05-06T07:08:09Z",
            "dan@example.com,13/04/2024",
            "eve@example.com,",
        )
        self.assertEqual((imp.created, imp.rejected), (5, 0))
        utc = dt.UTC
        self.assertEqual(
            self.contact("ann@example.com").consent_at, dt.datetime(2024, 3, 1, tzinfo=utc)
        )
        self.assertEqual(
            self.contact("bob@example.org").consent_at, dt.datetime(2024, 4, 15, tzinfo=utc)
        )
        self.assertEqual(
            self.contact("cid@example.net").consent_at,
            dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=utc),
        )
        self.assertEqual(
            self.contact("dan@example.com").consent_at, dt.datetime(2024, 4, 13, tzinfo=utc)
        )
        self.assertGreater(self.contact("eve@example.com").consent_at.year, 2024)
        for contact in Contact.objects.filter(project=self.project):
            self.assertEqual(contact.consent_source, ConsentSource.IMPORT)

    def test_an_ambiguous_or_bad_date_rejects_the_row(self) -> None:
        imp = self.imported(
            "email,consent date",
            "ann@example.com,03/04/2024",
            "bob@example.org,31.02.2024",
            "cid@example.net,yesterday",
            "dan@example.com,2024-03-01",
        )
        self.assertEqual(self.emails(), ["dan@example.com"])
        rejected = self.issues(imp, ImportIssue.Kind.REJECTED)
        self.assertEqual(sorted(rejected), [2, 3, 4])
        self.assertIn("day/month or month/day", rejected[2])
        self.assertIn("is not a date", rejected[3])
        self.assertIn("consent date 'yesterday'", rejected[4])

    def test_status_words_set_the_status(self) -> None:
        words = {
            "subscribed": Status.SUBSCRIBED,
            "Yes": Status.SUBSCRIBED,
            "ja": Status.SUBSCRIBED,
            "1": Status.SUBSCRIBED,
            "unsubscribed": Status.UNSUBSCRIBED,
            "no": Status.UNSUBSCRIBED,
            "Opted Out": Status.UNSUBSCRIBED,
            "nein": Status.UNSUBSCRIBED,
            "bounced": Status.BOUNCED,
            "spam": Status.COMPLAINED,
        }
        lines = [f"c{i}@example.com,{word}" for i, word in enumerate(words)]
        imp = self.imported("email,status", *lines, "bad@example.com,maybe")
        self.assertEqual(imp.created, len(words))
        for i, status in enumerate(words.values()):
            self.assertEqual(self.contact(f"c{i}@example.com").status, status, i)
        rejected = self.issues(imp, ImportIssue.Kind.REJECTED)
        self.assertEqual(list(rejected), [len(words) + 2])
        self.assertIn("status 'maybe'", rejected[len(words) + 2])

    def test_an_unsubscribed_row_gets_no_consent(self) -> None:
        self.imported("email,status,consent date", "ann@example.com,no,2024-03-01")
        ann = self.contact("ann@example.com")
        self.assertEqual(ann.status, Status.UNSUBSCRIBED)
        self.assertIsNone(ann.consent_at)
        self.assertIsNotNone(ann.status_changed_at)


class CustomFieldsTest(ModesTestCase):
    MAPPING = [
        {"target": "email"},
        {"target": "field", "field": "age", "type": "number"},
        {"target": "field", "field": "born", "type": "date"},
        {"target": "field", "field": "vip", "type": "boolean"},
    ]

    def test_typed_fields_are_created_and_their_values_coerced(self) -> None:
        imp = self.imported(
            "email,Age,Born,VIP",
            "ann@example.com,42,1990-01-31,yes",
            "bob@example.org,1.5,,no",
            mapping=self.MAPPING,
        )
        self.assertEqual((imp.created, imp.rejected), (2, 0))
        types = dict(
            FieldDefinition.objects.filter(project=self.project).values_list("key", "type")
        )
        self.assertEqual(types, {"age": "number", "born": "date", "vip": "boolean"})
        self.assertEqual(
            self.contact("ann@example.com").data, {"age": 42, "born": "1990-01-31", "vip": True}
        )
        self.assertEqual(self.contact("bob@example.org").data, {"age": 1.5, "vip": False})

    def test_a_bad_value_rejects_the_row_naming_the_field(self) -> None:
        imp = self.imported(
            "email,Age,Born,VIP",
            "ann@example.com,forty,1990-01-31,yes",
            "bob@example.org,7,31.01.1990,no",
            "cid@example.net,7,1990-01-31,perhaps",
            "dan@example.com,7,1990-01-31,y",
            mapping=self.MAPPING,
        )
        self.assertEqual(self.emails(), ["dan@example.com"])
        rejected = self.issues(imp, ImportIssue.Kind.REJECTED)
        self.assertTrue(rejected[2].startswith("age:"), rejected[2])
        self.assertTrue(rejected[3].startswith("born:"), rejected[3])
        self.assertTrue(rejected[4].startswith("vip:"), rejected[4])

    def test_an_unknown_header_becomes_a_text_field(self) -> None:
        self.imported("email,Lieblingsfarbe", "ann@example.com,Blau")
        self.assertEqual(self.contact("ann@example.com").data, {"lieblingsfarbe": "Blau"})
        field = FieldDefinition.objects.get(project=self.project)
        self.assertEqual((field.key, field.type), ("lieblingsfarbe", "text"))


class RowValidationTest(ModesTestCase):
    def test_a_first_name_over_100_characters_rejects_the_row(self) -> None:
        imp = self.imported(
            "email,first_name,last_name",
            f"ann@example.com,{'A' * 101},Lee",
            f"bob@example.org,{'B' * 100},Stone",
            f"cid@example.net,Cid,{'C' * 101}",
        )
        self.assertEqual(self.emails(), ["bob@example.org"])
        rejected = self.issues(imp, ImportIssue.Kind.REJECTED)
        self.assertEqual(rejected[2], "first_name: longer than 100 characters.")
        self.assertEqual(rejected[4], "last_name: longer than 100 characters.")

    def test_a_text_field_over_2000_characters_rejects_the_row(self) -> None:
        imp = self.imported("email,note", f"ann@example.com,{'x' * 2001}", "bob@example.org,ok")
        self.assertEqual(self.emails(), ["bob@example.org"])
        self.assertIn("longer than 2000", self.issues(imp, ImportIssue.Kind.REJECTED)[2])

    def test_a_row_with_a_nul_byte_is_rejected(self) -> None:
        imp = self.imported("email,first_name", "ann@example.com,A\x00nn", "bob@example.org,Bob")
        self.assertEqual(self.emails(), ["bob@example.org"])
        self.assertIn("NUL", self.issues(imp, ImportIssue.Kind.REJECTED)[2])

    def test_a_nul_byte_in_the_header_is_no_database_error(self) -> None:
        # PostgreSQL refuses NUL in text and in jsonb: the upload must refuse the file (naming
        # it) or read on, not fail on storing the headers.
        content = b"email,na\x00me\nann@example.com,Ann\nbob@example.org,Bob\n"
        try:
            imp = self.upload("contacts.csv", content)
        except ImportProblem as e:
            self.assertEqual(e.field, "file")
            return
        imp = self.run_import(imp)
        self.assertEqual(imp.state, Import.State.DONE, imp.error)
        self.assertEqual(self.emails(), ["ann@example.com", "bob@example.org"])

    def test_undecodable_bytes_reject_only_their_row(self) -> None:
        content = (
            b"email,first_name\n"
            b"ann@example.com,Ann\n"
            b"jose@example.org,Jos\xe9\n"  # cp1252 in a UTF-8 file
            + "zoe@example.net,Zoë\n".encode()
        )
        imp = self.run_import(self.upload("contacts.csv", content, encoding="utf-8"))
        self.assertEqual(imp.state, Import.State.DONE, imp.error)
        self.assertEqual(self.emails(), ["ann@example.com", "zoe@example.net"])
        self.assertEqual(self.contact("zoe@example.net").first_name, "Zoë")
        rejected = self.issues(imp, ImportIssue.Kind.REJECTED)
        self.assertEqual(list(rejected), [3])
        self.assertIn("encoding cannot read", rejected[3])
        report = "".join(actions.report_csv(imp))
        self.assertIn("jose@example.org,Jos\ufffd", report)  # the unreadable byte, shown as such

    def test_a_whole_row_in_the_email_cell_is_rejected_with_a_delimiter_hint(self) -> None:
        imp = self.imported(
            "email,first_name", '"ann@example.com;Ann;Lee",Ann', "bob@example.org,Bob"
        )
        self.assertEqual(self.emails(), ["bob@example.org"])
        self.assertIn("choose it as the delimiter", self.issues(imp, "rejected")[2])

    @patch.object(actions, "CHUNK", 3)
    def test_duplicates_inside_the_file_are_skipped_across_chunks(self) -> None:
        imp = self.imported(
            "email,first_name",
            "ann@example.com,Ann",  # line 2, chunk 1
            "bob@example.org,Bob",
            "cid@example.net,Cid",
            "ANN@example.com,Annie",  # line 5, chunk 2
            "dan@example.com,Dan",
            "bob@example.org,Bobby",
            "eve@example.com,Eve",  # line 8, chunk 3
            " Cid@Example.NET ,Cid",
            "ann@example.com,Ann",
        )
        self.assertEqual(
            self.emails(),
            ["ann@example.com", "bob@example.org", "cid@example.net", "dan@example.com",
             "eve@example.com"],
        )  # fmt: skip
        self.assertEqual(self.contact("ann@example.com").first_name, "Ann")
        skipped = self.issues(imp, ImportIssue.Kind.SKIPPED)
        self.assertEqual(sorted(skipped), [5, 7, 9, 10])
        self.assertIn("duplicate: ann@example.com is on an earlier line", skipped[5])
        self.assertEqual((imp.created, imp.skipped, imp.records_done), (5, 4, 9))

    @patch.object(actions, "CHUNK", 3)
    def test_a_rejected_row_does_not_make_its_address_a_duplicate(self) -> None:
        imp = self.imported(
            "email,status", "ann@example.com,maybe", "x@example.com,no", "a@example.com,no",
            "ann@example.com,yes",
        )  # fmt: skip
        self.assertIn("ann@example.com", self.emails())
        self.assertEqual(list(self.issues(imp, "rejected")), [2])
        self.assertEqual(self.issues(imp, "skipped"), {})


class FilesTest(ModesTestCase):
    def test_a_zip_holding_one_csv_is_imported(self) -> None:
        content = zipped(
            **{"export/contacts.csv": csv_bytes("email", "ann@example.com", "bob@example.org")},
            **{"__MACOSX/export/._contacts.csv": b"\x00\x05\x16\x07"},
        )
        imp = self.upload("export.zip", content)
        self.assertEqual(imp.file_name, "export.zip")
        imp = self.run_import(imp)
        self.assertEqual(imp.state, Import.State.DONE, imp.error)
        self.assertEqual(self.emails(), ["ann@example.com", "bob@example.org"])

    def assert_refused(self, name: str, content: bytes, message: str) -> None:
        with self.assertRaises(ImportProblem) as caught:
            self.upload(name, content)
        self.assertEqual(caught.exception.field, "file")
        self.assertIn(message, caught.exception.message)
        self.assertFalse(Import.objects.exists())
        self.assertEqual(list(self.folder_files()), [])

    def folder_files(self):
        return Path(self.folder).iterdir()

    def test_a_zip_with_two_csv_files_is_refused(self) -> None:
        content = zipped(**{"a.csv": csv_bytes("ann@example.com"), "b.csv": b"b@example.org"})
        self.assert_refused("two.zip", content, "it holds 2")

    def test_a_zip_with_no_data_file_is_refused(self) -> None:
        self.assert_refused("none.zip", zipped(**{"a.xlsx": b"PK"}), "it holds 0")

    def test_a_broken_zip_is_refused(self) -> None:
        self.assert_refused("broken.zip", b"PK\x03\x04 not really", "cannot be opened")

    def test_an_empty_file_is_refused(self) -> None:
        self.assert_refused("empty.csv", b"", "empty")
        self.assert_refused("blank.csv", b"\r\n  \n", "empty")

    def test_a_headerless_file_with_a_status_column_keeps_its_first_row(self) -> None:
        imp = self.run_import(
            self.upload(
                "list.csv",
                csv_bytes("ann@example.com,Ann,subscribed", "bob@example.org,Bob,subscribed"),
            )
        )
        self.assertFalse(imp.has_header)
        self.assertEqual(self.emails(), ["ann@example.com", "bob@example.org"])

    @override_settings(IMPORT_MAX_BYTES=100)
    def test_a_file_over_the_size_limit_is_refused(self) -> None:
        lines = [f"c{i}@example.com" for i in range(20)]
        self.assert_refused("big.csv", csv_bytes("email", *lines), "larger than")
        self.assert_refused("big.zip", zipped(**{"big.csv": csv_bytes("email", *lines)}), "larger")

    @override_settings(IMPORT_MAX_BYTES=100)
    def test_a_file_at_the_size_limit_is_accepted(self) -> None:
        content = csv_bytes("email", "ann@example.com")
        content += b" " * (100 - len(content))
        self.assertEqual(self.upload("exact.csv", content).file_size, 100)


class DryRunTest(ModesTestCase):
    def setUp(self) -> None:
        super().setUp()
        FieldDefinition.objects.create(project=self.project, key="city", label="City")
        self.make_contact("ann@example.com", first_name="Ann", data={"city": "Berlin"}, tags=["a"])
        self.make_contact("bob@example.org", first_name="Bob", status=Status.UNSUBSCRIBED)
        Suppression.objects.create(project=self.project, email="bob@example.org")

    def state(self) -> tuple:
        return (
            list(Contact.objects.order_by("id").values()),
            list(Suppression.objects.order_by("id").values_list("email", "note")),
            list(FieldDefinition.objects.order_by("id").values_list("key", "type")),
            list(Tag.objects.order_by("id").values_list("name", flat=True)),
            list(ContactTag.objects.order_by("id").values_list("contact_id", "tag_id")),
        )

    LINES = (
        "email,first_name,city,status,age",
        "ann@example.com,Annie,Hamburg,unsubscribed,41",
        "bob@example.org,Bobby,Köln,subscribed,12",
        "cid@example.net,Cid,Wien,,7",
        "cid@example.net,Cid,Wien,,7",
        "not-an-email,X,,,",
        "dan@example.com,Dan,,,old",
    )
    MAPPING = [
        "email",
        "first_name",
        {"target": "field", "field": "city"},
        "status",
        {"target": "field", "field": "age", "type": "number"},
    ]

    def dry_run(self, mode: str, **chosen) -> Import:
        before = self.state()
        imp = self.imported(
            *self.LINES, mode=mode, mapping=self.MAPPING, dry_run=True, tags=["new"], **chosen
        )
        self.assertEqual(self.state(), before)
        self.assertEqual(imp.issues.count(), imp.skipped + imp.rejected)
        return imp

    def test_a_dry_run_in_mode_create_changes_nothing(self) -> None:
        imp = self.dry_run("create")
        self.assertEqual(
            imp.counts(), {"created": 1, "updated": 0, "unchanged": 0, "skipped": 3, "rejected": 2}
        )

    def test_a_dry_run_in_mode_upsert_changes_nothing(self) -> None:
        imp = self.dry_run("upsert", overwrite=["names", "data", "status"])
        self.assertEqual(
            imp.counts(), {"created": 1, "updated": 2, "unchanged": 0, "skipped": 1, "rejected": 2}
        )

    def test_a_dry_run_in_mode_unsubscribe_changes_nothing(self) -> None:
        imp = self.dry_run("unsubscribe")
        self.assertEqual(
            imp.counts(), {"created": 0, "updated": 1, "unchanged": 1, "skipped": 3, "rejected": 1}
        )

    def test_a_dry_run_in_mode_suppress_changes_nothing(self) -> None:
        imp = self.dry_run("suppress")
        self.assertEqual(
            imp.counts(), {"created": 3, "updated": 0, "unchanged": 1, "skipped": 1, "rejected": 1}
        )

    def test_a_dry_run_knows_the_tags_a_contact_has(self) -> None:
        imp = self.imported("email", "ann@example.com", mode="upsert", tags=["a"], dry_run=True)
        self.assertEqual((imp.updated, imp.unchanged), (0, 1))

    def test_a_dry_run_counts_what_the_real_run_does(self) -> None:
        for mode, overwrite in [
            ("create", []),
            ("upsert", []),
            ("upsert", ["names", "data", "status"]),
            ("unsubscribe", []),
            ("suppress", []),
        ]:
            with self.subTest(mode=mode, overwrite=overwrite):
                sid = transaction.savepoint()
                dry = self.imported(
                    *self.LINES, mode=mode, mapping=self.MAPPING, overwrite=overwrite,
                    tags=["a"], dry_run=True,
                )  # fmt: skip
                real = self.run_import(actions.repeat_for_real(dry, self.alice))
                self.assertEqual(real.state, Import.State.DONE, real.error)
                self.assertEqual(real.counts(), dry.counts())
                self.assertEqual(
                    list(real.issues.order_by("line").values_list("line", "kind", "reason")),
                    list(dry.issues.order_by("line").values_list("line", "kind", "reason")),
                )
                transaction.savepoint_rollback(sid)
