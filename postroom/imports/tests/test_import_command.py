"""`postroom import FILE --project ID ...`: the command line import, run to the end in-process."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import uuid
import zipfile
from io import StringIO
from pathlib import Path
from unittest.mock import patch

from django.core.management import call_command
from django.core.management.base import CommandError

from postroom.contacts.models import Contact, Status
from postroom.imports import actions
from postroom.imports.models import Import
from postroom.imports.tests.test_import_files import ImportTestCase

CONTACTS = (
    "email,first_name,last_name\n"
    "ann@example.com,Ann,Lee\n"
    "not-an-email,Bad,Row\n"
    "bob@example.org,Bob,Stone\n"
    "ANN@example.com,Ann,Again\n"
)


class ImportCommandTest(ImportTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.inputs = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.inputs, True)

    def write(self, name: str, content: str | bytes = CONTACTS) -> Path:
        path = self.inputs / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return path

    def run_command(self, path: Path | str, *args: str, json_output: bool = True):
        out, err = StringIO(), StringIO()
        flags = ["--json"] if json_output else []
        call_command(
            "import",
            str(path),
            "--project",
            str(self.project.code),
            *flags,
            *args,
            stdout=out,
            stderr=err,
        )
        return json.loads(out.getvalue()) if json_output else out.getvalue()

    def contact(self, email: str) -> Contact:
        return Contact.objects.get(project=self.project, email=email)

    def test_it_imports_and_prints_json(self) -> None:
        result = self.run_command(self.write("contacts.csv"))
        self.assertEqual(result["state"], Import.State.DONE)
        self.assertIs(result["dry_run"], False)
        self.assertEqual(
            {k: result[k] for k in ("rows", "created", "updated", "unchanged")},
            {"rows": 4, "created": 2, "updated": 0, "unchanged": 0},
        )
        self.assertEqual((result["skipped"], result["rejected"]), (1, 1))
        self.assertIsInstance(result["rows_per_second"], int)
        self.assertGreater(result["rows_per_second"], 0)
        imp = Import.objects.get(project=self.project)
        self.assertEqual(result["id"], str(imp.code))
        self.assertEqual(imp.source, Import.Source.CLI)
        self.assertTrue(result["url"].endswith(f"/p/{self.project.code}/imports/{imp.code}/"))
        self.assertEqual(self.emails(), ["ann@example.com", "bob@example.org"])

    def test_the_report_lists_rejected_and_skipped_rows_with_line_and_reason(self) -> None:
        result = self.run_command(self.write("contacts.csv"))
        report = Path(result["report"])
        self.assertTrue(report.is_file())
        rows = list(csv.reader(report.read_text(encoding="utf-8").splitlines()))
        self.assertEqual(rows[0], ["line", "result", "reason", "row"])
        self.assertEqual([row[:2] for row in rows[1:]], [["3", "rejected"], ["5", "skipped"]])
        self.assertIn("@-sign", rows[1][2])
        self.assertEqual(rows[1][3], "not-an-email,Bad,Row")
        self.assertIn("duplicate", rows[2][2])

    def test_the_report_goes_where_asked(self) -> None:
        where = self.inputs / "rejected.csv"
        result = self.run_command(self.write("contacts.csv"), "--report", str(where))
        self.assertEqual(result["report"], str(where))
        self.assertIn("not-an-email", where.read_text())

    def test_a_clean_file_has_no_report(self) -> None:
        result = self.run_command(self.write("clean.csv", "email\nann@example.com\n"))
        self.assertEqual((result["created"], result["report"]), (1, None))

    def test_it_prints_lines_without_json(self) -> None:
        out = self.run_command(self.write("contacts.csv"), json_output=False)
        self.assertIn("state: done\n", out)
        self.assertIn("created: 2\n", out)
        self.assertIn("rejected: 1\n", out)

    def test_dry_run_changes_nothing_and_counts(self) -> None:
        result = self.run_command(self.write("contacts.csv"), "--dry-run", "--tag", "x")
        self.assertIs(result["dry_run"], True)
        self.assertEqual((result["created"], result["skipped"], result["rejected"]), (2, 1, 1))
        self.assertEqual(self.emails(), [])
        self.assertFalse(self.project.tags.exists())

    def test_mode_unsubscribe(self) -> None:
        self.make_contact("ann@example.com")
        result = self.run_command(self.write("contacts.csv"), "--mode", "unsubscribe")
        self.assertEqual((result["updated"], result["skipped"]), (1, 2))
        self.assertEqual(self.contact("ann@example.com").status, Status.UNSUBSCRIBED)
        self.assertEqual(self.emails(), ["ann@example.com"])

    def test_mode_upsert_with_overwrite(self) -> None:
        self.make_contact("ann@example.com", first_name="Annie")
        result = self.run_command(
            self.write("contacts.csv"), "--mode", "upsert", "--overwrite", "names"
        )
        self.assertEqual((result["created"], result["updated"]), (1, 1))
        self.assertEqual(self.contact("ann@example.com").first_name, "Ann")

    def test_tag_is_repeatable(self) -> None:
        self.run_command(self.write("contacts.csv"), "--tag", "fair", "--tag", "2024")
        for email in ("ann@example.com", "bob@example.org"):
            names = set(self.contact(email).tags.values_list("name", flat=True))
            self.assertEqual(names, {"fair", "2024"})

    def test_delimiter_overrides_the_detected_one(self) -> None:
        path = self.write("semi.csv", "email;first_name\nann@example.com;Ann\nbob@x.org;Bob\n")
        result = self.run_command(path, "--delimiter", ",")
        self.assertEqual((result["created"], result["rejected"]), (0, 2))
        report = Path(result["report"]).read_text()
        self.assertIn("choose it as the delimiter", report)
        self.assertEqual(Import.objects.get(project=self.project).delimiter, ",")

    def test_delimiter_tab_by_name(self) -> None:
        path = self.write("tabs.txt", "email\tfirst_name\nann@example.com\tAnn\n")
        result = self.run_command(path, "--delimiter", "tab")
        self.assertEqual(result["created"], 1)
        self.assertEqual(self.contact("ann@example.com").first_name, "Ann")

    def test_encoding_overrides_the_detected_one(self) -> None:
        path = self.write("utf8.csv", "email,first_name\nzoe@example.com,Zoë\n")
        self.run_command(path, "--encoding", "cp1252")
        self.assertEqual(self.contact("zoe@example.com").first_name, "ZoÃ«")

    def test_no_header_reads_the_first_row_as_data(self) -> None:
        path = self.write("list.csv", "email\nann@example.com\nbob@example.org\n")
        result = self.run_command(path, "--no-header")
        self.assertEqual((result["created"], result["rejected"]), (2, 1))
        self.assertEqual(Import.objects.get().issues.get().line, 1)

    def test_header_takes_the_first_row_as_the_header(self) -> None:
        path = self.write("list.csv", "ann@example.com\nbob@example.org\n")
        result = self.run_command(path, "--header")
        self.assertEqual(result["created"], 1)
        self.assertEqual(self.emails(), ["bob@example.org"])

    def test_a_zip_file(self) -> None:
        path = self.inputs / "contacts.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("contacts.csv", CONTACTS)
        self.assertEqual(self.run_command(path)["created"], 2)

    def assert_command_error(self, field: str, *args: str, path: Path | str | None = None):
        path = path if path is not None else self.write("contacts.csv")
        with self.assertRaises(CommandError) as caught:
            self.run_command(path, *args)
        self.assertIn(field, str(caught.exception))
        self.assertEqual(Contact.objects.filter(project=self.project).count(), 0)
        return caught.exception

    def test_an_unknown_project_is_an_error(self) -> None:
        for code in (str(uuid.uuid4()), "42", "not-a-uuid"):
            with self.subTest(code), self.assertRaises(CommandError) as caught:
                call_command("import", str(self.write("c.csv")), "--project", code, "--json")
            self.assertTrue(str(caught.exception).startswith("project:"), caught.exception)

    def test_a_missing_file_is_an_error(self) -> None:
        error = self.assert_command_error("file", path=self.inputs / "nope.csv")
        self.assertTrue(str(error).startswith("file:"))
        self.assert_command_error("file", path=self.inputs)  # a folder

    def test_a_bad_mode_is_an_error(self) -> None:
        self.assert_command_error("--mode", "--mode", "merge")

    def test_a_bad_delimiter_is_an_error(self) -> None:
        error = self.assert_command_error("delimiter", "--delimiter", ":")
        self.assertTrue(str(error).startswith("delimiter:"))
        self.assertFalse(Import.objects.filter(state=Import.State.PENDING).exists())

    def test_a_bad_encoding_is_an_error(self) -> None:
        error = self.assert_command_error("encoding", "--encoding", "ebcdic")
        self.assertTrue(str(error).startswith("encoding:"))

    def test_a_bad_overwrite_kind_is_an_error(self) -> None:
        self.assert_command_error("overwrite", "--mode", "upsert", "--overwrite", "email")

    def test_a_refused_file_is_an_error(self) -> None:
        error = self.assert_command_error("file", path=self.write("empty.csv", b""))
        self.assertTrue(str(error).startswith("file:"))
        self.assert_command_error("file", path=self.write("photo.png", b"\x89PNG"))

    def test_it_exits_with_status_1_when_the_import_fails(self) -> None:
        real_start = actions.start_import

        def start_then_lose_the_file(imp: Import) -> Import:
            # As if someone cleaned the imports folder between the upload and the run.
            imp = real_start(imp)
            imp.path.unlink()
            return imp

        out = StringIO()
        with (
            patch.object(actions, "start_import", start_then_lose_the_file),
            self.assertLogs("postroom.imports.actions", "ERROR"),
            self.assertRaises(SystemExit) as caught,
        ):
            call_command(
                "import",
                str(self.write("contacts.csv")),
                "--project",
                str(self.project.code),
                "--json",
                stdout=out,
            )
        self.assertEqual(caught.exception.code, 1)
        result = json.loads(out.getvalue())
        self.assertEqual(result["state"], Import.State.FAILED)
        self.assertIn("file is gone", result["error"])
        self.assertEqual(self.emails(), [])
