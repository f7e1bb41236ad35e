"""`postroom export --project CODE [--segment CODE] [--status S] [--tag T] [--bom] [-o FILE]`:
a project's contacts as CSV (imports.export), on standard output or into FILE."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Model, QuerySet

from postroom.accounts.models import Project
from postroom.contacts import rules
from postroom.contacts.actions import ContactFilter
from postroom.contacts.models import Contact, Segment, Status
from postroom.imports.export import contacts_of_segment, export_rows


def find(model: type[Model], option: str, code: str, **scope) -> Model:
    """The row with public id `code` (within `scope`), or a CommandError naming the option."""
    try:
        public_id = uuid.UUID(code)
    except ValueError:
        raise CommandError(f"{option}: {code!r} is not a {option} id.") from None
    found = model.objects.filter(code=public_id, **scope).first()
    if found is None:
        raise CommandError(f"{option}: there is no {option} {code}.")
    return found


def selected_contacts(project: Project, options: dict) -> QuerySet[Contact]:
    """The contacts the options ask for: all, or a segment's, narrowed by status and tag."""
    status = options["status"] or ""
    if status and status not in Status.values:
        raise CommandError(f"status: must be one of {', '.join(Status.values)}.")
    contacts = Contact.objects.filter(project=project)
    if options["segment"]:
        segment = find(Segment, "segment", options["segment"], project=project)
        try:
            contacts = contacts_of_segment(segment)
        except rules.RuleError as e:
            raise CommandError(f"segment: its rules no longer hold: {e}") from None
    contact_filter = ContactFilter.from_dict({"status": status, "tag": options["tag"]})
    return contact_filter.apply(contacts, project)


class Command(BaseCommand):
    help = "Write a project's contacts (all, a segment's, or filtered) as CSV."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="the project's id")
        parser.add_argument("--segment", help="only this segment's contacts (the segment's id)")
        parser.add_argument("--status", default="", help=f"one of {', '.join(Status.values)}")
        parser.add_argument("--tag", default="", help="only contacts with this tag")
        parser.add_argument("--bom", action="store_true", help="UTF-8 with a BOM, for Excel")
        parser.add_argument("-o", "--output", help="the file to write (default: stdout)")

    def handle(self, *args, **options) -> None:
        project = find(Project, "project", options["project"])
        contacts = selected_contacts(project, options)
        if not options["output"]:
            self.write_csv(project, contacts, options["bom"], self.write_stdout)
            return
        try:
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                written = self.write_csv(project, contacts, options["bom"], out.write)
        except OSError as e:
            raise CommandError(f"output: {e.strerror or e}: {options['output']}") from None
        self.stderr.write(f"{written} contacts written to {options['output']}")

    def write_stdout(self, text: str) -> None:
        self.stdout.write(text, ending="")

    def write_csv(
        self, project: Project, contacts: QuerySet[Contact], bom: bool, write: Callable
    ) -> int:
        """Writes the CSV line by line; how many contacts it holds."""
        lines = 0
        for line in export_rows(project, contacts, bom=bom):
            write(line)
            lines += 1
        return lines - 1  # the header
