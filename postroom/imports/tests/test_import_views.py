from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from postroom.contacts.models import Contact, FieldDefinition
from postroom.imports import actions
from postroom.imports.models import Import
from postroom.imports.tests.test_import_files import FIXTURES, ImportTestCase


class ImportViewsTest(ImportTestCase):
    def post_file(self, name: str, content: bytes | None = None):
        data = content if content is not None else (FIXTURES / name).read_bytes()
        return self.client.post(self.url("imports/"), {"file": SimpleUploadedFile(name, data)})

    def test_the_page_shows_what_to_do_when_there_is_no_import(self) -> None:
        self.login()
        r = self.client.get(self.url("imports/"))
        self.assertContains(r, "No imports yet")
        self.assertContains(r, f"postroom import contacts.csv --project {self.project.code}")

    def test_it_requires_a_member(self) -> None:
        self.client.force_login(self.charlie)
        self.assertEqual(self.client.get(self.url("imports/")).status_code, 404)

    def test_an_upload_shows_the_detected_settings_and_the_preview(self) -> None:
        self.login()
        r = self.post_file("excel_de_semicolon_cp1252.csv")
        imp = Import.objects.get(project=self.project)
        self.assertRedirects(r, self.url(f"imports/{imp.code}/"))
        r = self.client.get(self.url(f"imports/{imp.code}/"))
        self.assertContains(r, "cp1252 (detected)")
        self.assertContains(r, "Semicolon ; (detected)")
        self.assertContains(r, "München")
        self.assertContains(r, "Stadt")
        self.assertEqual(Contact.objects.count(), 0)  # nothing imported before the start

    def test_the_preview_marks_rows_that_would_be_rejected(self) -> None:
        self.login()
        self.post_file("malformed_rows.csv")
        imp = Import.objects.get(project=self.project)
        r = self.client.get(self.url(f"imports/{imp.code}/"))
        self.assertContains(r, "An email address must have an @-sign")

    def test_a_file_of_another_kind_is_refused_with_a_reason(self) -> None:
        self.login()
        r = self.post_file("photo.png", b"\x89PNG....")
        self.assertContains(r, "file: upload a .csv, .tsv or .txt file", status_code=200)
        self.assertFalse(Import.objects.exists())

    def test_changing_the_delimiter_reads_the_columns_again(self) -> None:
        self.login()
        self.post_file("malformed_semicolon_read_as_comma.csv")
        imp = Import.objects.get(project=self.project)
        self.assertEqual(imp.delimiter, ";")
        form = {
            "encoding": "utf-8",
            "delimiter": ",",
            "has_header": "1",
            "remap": "1",
            "mode": "create",
            "action": "preview",
        }
        self.client.post(self.url(f"imports/{imp.code}/"), form)
        imp.refresh_from_db()
        self.assertEqual(imp.delimiter, ",")
        self.assertEqual(imp.headers, ["email;first_name;last_name"])
        r = self.client.get(self.url(f"imports/{imp.code}/"))
        self.assertContains(r, "choose it as the delimiter")

    def test_starting_applies_the_mapping_and_the_worker_imports(self) -> None:
        self.login()
        self.post_file("excel_de_semicolon_cp1252.csv")
        imp = Import.objects.get(project=self.project)
        form = {
            "encoding": imp.encoding,
            "delimiter": imp.delimiter,
            "has_header": "1",
            "target_0": "email",
            "target_1": "first_name",
            "target_2": "last_name",
            "target_3": "new_field",
            "field_3": "city",
            "type_3": "text",
            "target_4": "ignore",
            "mode": "create",
            "tags": "de, 2026",
            "action": "start",
        }
        r = self.client.post(self.url(f"imports/{imp.code}/"), form)
        self.assertRedirects(r, self.url(f"imports/{imp.code}/"))
        imp = self.run_import(Import.objects.get(pk=imp.pk))
        self.assertEqual(imp.created, 5)
        self.assertTrue(FieldDefinition.objects.filter(project=self.project, key="city").exists())
        anna = Contact.objects.get(email="anna.schaefer@example.com")
        self.assertEqual(anna.data, {"city": "München"})
        self.assertEqual(sorted(anna.tags.values_list("name", flat=True)), ["2026", "de"])
        r = self.client.get(self.url(f"imports/{imp.code}/"))
        self.assertContains(r, "Done")
        self.assertEqual(r["Cache-Control"], "no-store")

    def test_a_bad_mapping_is_an_error_naming_it(self) -> None:
        self.login()
        self.post_file("no_header.csv")
        imp = Import.objects.get(project=self.project)
        form = {
            "encoding": imp.encoding,
            "delimiter": imp.delimiter,
            "target_0": "ignore",
            "target_1": "first_name",
            "target_2": "last_name",
            "mode": "create",
            "action": "start",
        }
        r = self.client.post(self.url(f"imports/{imp.code}/"), form, follow=True)
        self.assertContains(r, "mapping: map exactly one column to email.")
        imp.refresh_from_db()
        self.assertEqual(imp.state, Import.State.DRAFT)

    def test_the_progress_fragment_polls_while_running(self) -> None:
        self.login()
        imp = self.upload("google_sheets.csv")
        actions.start_import(imp)
        r = self.client.get(self.url(f"imports/{imp.code}/"), HTTP_HX_REQUEST="true")
        self.assertContains(r, 'hx-trigger="every 2s"')
        self.assertContains(r, "Waiting for the worker")
        self.run_import(imp)
        r = self.client.get(self.url(f"imports/{imp.code}/"), HTTP_HX_REQUEST="true")
        self.assertNotContains(r, "hx-trigger")

    def test_the_report_lists_rejected_rows_with_line_and_reason(self) -> None:
        self.login()
        imp = self.run_import(self.upload("malformed_rows.csv"))
        r = self.client.get(self.url(f"imports/{imp.code}/rejected.csv"))
        body = b"".join(r.streaming_content).decode()
        lines = body.splitlines()
        self.assertEqual(lines[0], "line,result,reason,row")
        self.assertTrue(lines[1].startswith("4,rejected,email: An email address must have"))
        self.assertIn("11,skipped,duplicate", body)
        self.assertEqual(len(lines), 1 + imp.rejected + imp.skipped)

    def test_another_projects_import_is_a_404(self) -> None:
        self.login()
        imp = actions.create_import(
            self.charlies_project, (FIXTURES / "no_header.csv").open("rb"), "x.csv"
        )
        for path in ("", "rejected.csv"):
            self.assertEqual(
                self.client.get(self.url(f"imports/{imp.code}/{path}")).status_code, 404
            )
        r = self.client.post(self.url(f"imports/{imp.code}/cancel/"))
        self.assertEqual(r.status_code, 404)

    def test_cancel_stops_a_waiting_import(self) -> None:
        self.login()
        imp = actions.start_import(self.upload("google_sheets.csv"))
        self.client.post(self.url(f"imports/{imp.code}/cancel/"))
        imp.refresh_from_db()
        self.assertEqual(imp.state, Import.State.CANCELLED)
        self.assertFalse(actions.handle_one_import())

    def test_a_dry_run_changes_nothing_and_can_then_run_for_real(self) -> None:
        self.login()
        imp = self.run_import(self.upload("google_sheets.csv", dry_run=True))
        self.assertEqual((imp.state, imp.created), (Import.State.DONE, 5))
        self.assertEqual(Contact.objects.count(), 0)
        self.assertFalse(FieldDefinition.objects.filter(project=self.project).exists())
        r = self.client.post(self.url(f"imports/{imp.code}/for-real/"))
        real = Import.objects.exclude(pk=imp.pk).get()
        self.assertRedirects(r, self.url(f"imports/{real.code}/"))
        real = self.run_import(real)
        self.assertEqual((real.dry_run, real.created), (False, 5))
        self.assertEqual(Contact.objects.count(), 5)
