"""Contacts as CSV: all of them, a segment or a selection, streamed in constant memory.

The header names are the ones the importer maps back by itself (email, first_name, last_name,
status, tags, consent_at, and each custom field's key), so an export imports again unchanged.
Every cell goes through lib.csvsafe.safe_cell: a text starting with = + - @ is not a formula
when the file is opened in a spreadsheet. Callers: contacts.views (dashboard), contacts.api
(GET /api/v1/contacts/export) and the `postroom export` command.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify

from postroom.accounts.models import Project
from postroom.contacts import rules
from postroom.contacts.models import Contact, ContactTag, FieldDefinition, Segment
from postroom.lib.csvsafe import line_writer, safe_cell

# Contacts read per query: each chunk costs two queries (contacts, then their tags) and holds
# this many rows in memory, whatever the size of the export.
CHUNK_SIZE = 2000

BASE_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "status",
    "tags",
    "consent_at",
    "consent_source",
    "created_at",
)
# Written for people reading the file: the importer has no target for them, and should
# ignore them rather than make custom fields of them.
EXPORT_ONLY_COLUMNS = ("consent_source", "created_at")
# Read from the database in this order: the id for the keyset, then the columns above but tags.
CONTACT_FIELDS = ("id", *(c for c in BASE_COLUMNS if c != "tags"), "data")
TAG_SEPARATOR = ", "
# Excel reads a CSV file as UTF-8 only when it starts with a byte order mark.
BOM = "\ufeff"


def contacts_of_segment(segment: Segment) -> QuerySet[Contact]:
    """The segment's contacts as its rules say today; raises rules.RuleError when the saved
    rules no longer hold (a custom field they use was removed)."""
    tree = rules.clean_tree(segment.rules, segment.project)
    return rules.segment_contacts(segment.project, tree)


def export_fields(project: Project) -> list[FieldDefinition]:
    return list(FieldDefinition.objects.filter(project=project).order_by("key")[:1000])


def header(definitions: list[FieldDefinition]) -> list[str]:
    """The base columns, then one per custom field (its key, or data.<key> when the key is
    also the name of a base column, so that no header appears twice)."""
    return [*BASE_COLUMNS, *(_field_header(d.key) for d in definitions)]


def _field_header(key: str) -> str:
    return f"data.{key}" if key in BASE_COLUMNS else key


def export_rows(
    project: Project, contacts: QuerySet[Contact], *, bom: bool = False
) -> Iterator[str]:
    """CSV text, one line at a time: the header (after a BOM if asked), then a line per
    contact of `contacts` (which must be `project`'s), oldest first."""
    writer = line_writer()
    definitions = export_fields(project)
    yield (BOM if bom else "") + writer.writerow(header(definitions))
    for chunk, tags in contact_chunks(contacts):
        for row in chunk:
            cells = contact_cells(row, tags.get(row[0], []), definitions)
            yield writer.writerow([safe_cell(cell) for cell in cells])


def contact_chunks(
    contacts: QuerySet[Contact], size: int | None = None
) -> Iterator[tuple[list[tuple], dict[int, list[str]]]]:
    """`contacts` as rows of CONTACT_FIELDS, by ascending id, `size` at a time, each chunk
    with its contacts' tag names: two queries per chunk, never more rows in memory."""
    size = size or CHUNK_SIZE
    last_id = 0
    while True:
        chunk = list(
            contacts.filter(id__gt=last_id).order_by("id").values_list(*CONTACT_FIELDS)[:size]
        )
        if not chunk:
            return
        yield chunk, tags_of([row[0] for row in chunk])
        if len(chunk) < size:
            return
        last_id = chunk[-1][0]


def tags_of(contact_ids: list[int]) -> dict[int, list[str]]:
    """Tag names by contact id, in name order, in one query."""
    tags: dict[int, list[str]] = defaultdict(list)
    pairs = ContactTag.objects.filter(contact_id__in=contact_ids).order_by("tag__name")
    for contact_id, name in pairs.values_list("contact_id", "tag__name"):
        tags[contact_id].append(name)
    return tags


def contact_cells(row: tuple, tags: list[str], definitions: list[FieldDefinition]) -> list[Any]:
    """One contact's cells in header order, from a row of CONTACT_FIELDS."""
    values = dict(zip(CONTACT_FIELDS, row, strict=True))
    values["tags"] = TAG_SEPARATOR.join(tags)
    data = values["data"] or {}
    cells = [_cell(values[column]) for column in BASE_COLUMNS]
    return cells + [_data_cell(data.get(d.key)) for d in definitions]


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    return value


def _data_cell(value: Any) -> Any:
    """A custom value as the importer reads it back: true/false; numbers stay numbers, which
    safe_cell leaves alone (-5 is a number to a spreadsheet, not a formula); nested data, which
    a typed field never holds but raw data may, as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def export_filename(segment: Segment | None = None, what: str = "contacts") -> str:
    """contacts-2025-06-01.csv, or segment-<its name as a slug>.csv: ASCII letters, digits and
    dashes only, safe inside a Content-Disposition header."""
    if segment is not None:
        return f"segment-{slugify(segment.name) or segment.code}.csv"
    return f"{slugify(what) or 'contacts'}-{timezone.localdate().isoformat()}.csv"


def export_response(
    project: Project, contacts: QuerySet[Contact], filename: str, *, bom: bool = False
) -> StreamingHttpResponse:
    """The CSV as a download, written while it is sent."""
    response = StreamingHttpResponse(
        export_rows(project, contacts, bom=bom), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
