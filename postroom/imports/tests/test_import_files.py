"""The real-world files in fixtures/ (see its README): each is sniffed, mapped and imported as
fixtures/expected.json says a correct importer must."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from django.test import override_settings

from postroom.contacts.models import Contact
from postroom.imports import actions
from postroom.imports.models import Import, ImportIssue
from postroom.test import BaseTestCase

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


class ImportFixture:
    """Imports stored in a temporary folder, run by calling the worker step."""

    def setUp(self) -> None:
        super().setUp()
        self.folder = tempfile.mkdtemp()
        self.override = override_settings(IMPORTS_DIR=Path(self.folder))
        self.override.enable()
        actions.sessions.clear()

    def tearDown(self) -> None:
        for session in list(actions.sessions):
            actions.drop_session(session)
        self.override.disable()
        shutil.rmtree(self.folder, ignore_errors=True)
        super().tearDown()

    def upload(self, name: str, content: bytes | None = None, **chosen) -> Import:
        path = FIXTURES / name
        data = content if content is not None else path.read_bytes()
        import io

        imp = actions.create_import(self.project, io.BytesIO(data), name, self.alice)
        if chosen:
            actions.configure_import(imp, actions.ImportSettings(**chosen))
        return imp

    def run_import(self, imp: Import) -> Import:
        if imp.state == Import.State.DRAFT:
            actions.start_import(imp)
        for _ in range(10_000):
            if not actions.handle_one_import():
                break
        imp.refresh_from_db()
        return imp

    def emails(self) -> list[str]:
        return list(
            Contact.objects.filter(project=self.project)
            .order_by("id")
            .values_list("email", flat=True)
        )

    def issues(self, imp: Import, kind: str) -> dict[int, str]:
        return dict(imp.issues.filter(kind=kind).values_list("line", "reason"))


class ImportTestCase(ImportFixture, BaseTestCase):
    pass


class FixtureFilesTest(ImportTestCase):
    def test_each_file_is_sniffed_as_expected(self) -> None:
        for name, expected in EXPECTED.items():
            with self.subTest(name):
                imp = self.upload(name)
                encoding = "cp1252" if imp.encoding == "latin-1" else imp.encoding
                self.assertEqual(encoding, expected["encoding"])
                self.assertEqual(imp.delimiter, expected["delimiter"])
                self.assertEqual(imp.has_header, expected["has_header"])
                if expected["has_header"]:
                    self.assertEqual(imp.headers, expected["columns"])
                targets = [e["target"] for e in imp.mapping]
                self.assertEqual(targets.count("email"), 1, imp.mapping)

    def test_each_file_imports_its_valid_rows_and_reports_the_rest(self) -> None:
        for name, expected in EXPECTED.items():
            with self.subTest(name):
                Contact.objects.filter(project=self.project).delete()
                imp = self.run_import(self.upload(name))
                self.assertEqual(imp.state, Import.State.DONE, imp.error)
                self.assertEqual(self.emails(), expected["valid_emails"])
                self.assertEqual(imp.created, len(expected["valid_emails"]))
                rejected = self.issues(imp, ImportIssue.Kind.REJECTED)
                self.assertEqual(
                    sorted(rejected), sorted(int(n) for n in expected["rejected_lines"])
                )
                skipped = self.issues(imp, ImportIssue.Kind.SKIPPED)
                self.assertEqual(sorted(skipped), expected["duplicate_lines"])
                self.assertEqual(imp.total_rows, imp.records_done)
