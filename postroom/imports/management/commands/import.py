"""`postroom import FILE --project CODE [--delimiter C] [--encoding E] [--header | --no-header]
[--mode M] [--overwrite KINDS] [--tag T]... [--dry-run] [--json] [--report PATH]`

Imports a CSV, TSV or TXT file (or a .zip holding one) into a project and waits for the
result. The chunks run in this process unless a worker has the import already; either way the
import is the same resumable row as one from the dashboard, and a second run of the command
never repeats a finished one. Exit status 0 when the import finished, 1 when it failed."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from postroom.accounts.models import Project
from postroom.imports import actions
from postroom.imports.actions import ImportProblem, ImportSettings
from postroom.imports.models import Import
from postroom.lib.gctuning import settle_for_batch_work


class Command(BaseCommand):
    help = "Import contacts from a CSV/TSV/TXT file (or a .zip holding one) and wait for it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The file to import.")
        parser.add_argument("--project", required=True, help="The project's id.")
        parser.add_argument("--delimiter", help="One of , ; | tab (default: detected).")
        parser.add_argument("--encoding", help="utf-8, utf-16, cp1252, latin-1 (detected).")
        header = parser.add_mutually_exclusive_group()
        header.add_argument("--header", dest="has_header", action="store_true", default=None)
        header.add_argument("--no-header", dest="has_header", action="store_false")
        parser.add_argument("--mode", choices=Import.Mode.values, default=Import.Mode.CREATE)
        parser.add_argument(
            "--overwrite",
            default="",
            help=f"Mode upsert: what may be overwritten, from {','.join(Import.OVERWRITABLE)}.",
        )
        parser.add_argument("--tag", action="append", default=[], help="Tag every row (repeat).")
        parser.add_argument("--dry-run", action="store_true", help="Report, change nothing.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument("--report", help="Where to write the rejected rows (CSV).")

    def handle(self, *args, **options) -> None:
        project = find_project(options["project"])
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"file: {path} is not a file.")
        chosen = ImportSettings(
            encoding=options["encoding"],
            delimiter=options["delimiter"],
            has_header=options["has_header"],
            mode=options["mode"],
            overwrite=[k for k in options["overwrite"].split(",") if k],
            tags=options["tag"],
            dry_run=options["dry_run"],
        )
        try:
            with open(path, "rb") as upload:
                imp = actions.create_import(project, upload, path.name, source=Import.Source.CLI)
            actions.configure_import(imp, chosen)
            actions.start_import(imp)
        except ImportProblem as e:
            raise CommandError(f"{e.field}: {e.message}") from None
        settle_for_batch_work()  # this process may run the import itself
        imp = actions.wait_for(imp, progress=None if options["json"] else self.progress)
        report = self.write_report(imp, options["report"])
        result = summary(imp, report)
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stderr.write("")
            for key, value in result.items():
                self.stdout.write(f"{key}: {value}")
        if imp.state != Import.State.DONE:
            sys.exit(1)

    def progress(self, imp: Import) -> None:
        if imp.total_rows:
            rate = imp.rows_per_second() or 0
            self.stderr.write(
                f"\r{imp.records_done:,} of {imp.total_rows:,} rows, {rate:,}/s",
                ending="",
            )

    def write_report(self, imp: Import, where: str | None) -> str | None:
        """The rejected and skipped rows as CSV: line, result, reason, row."""
        if not (imp.rejected or imp.skipped):
            return None
        path = Path(where) if where else settings.IMPORTS_DIR / f"{imp.code}-rejected.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.writelines(actions.report_csv(imp))
        return str(path)


def find_project(code: str) -> Project:
    try:
        project = Project.objects.filter(code=uuid.UUID(code)).first()
    except ValueError:
        project = None
    if project is None:
        raise CommandError(f"project: no project {code!r}; `postroom project list` shows them.")
    return project


def summary(imp: Import, report: str | None) -> dict:
    return {
        "id": str(imp.code),
        "state": imp.state,
        "dry_run": imp.dry_run,
        "error": imp.error,
        "rows": imp.records_done,
        **imp.counts(),
        "seconds": round(imp.elapsed_seconds(), 2),
        "rows_per_second": imp.rows_per_second() or 0,
        "report": report,
        "url": f"{settings.SITE_URL}/p/{imp.project.code}/imports/{imp.code}/",
    }
