from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema

from postroom.lib.apiinput import InputSchema

MAPPING_HELP = (
    "One entry per column, in order: a target (email, first_name, last_name, name, status, "
    'tags, consent_at, ignore) or {"target": "field", "field": key, "type": text|number|'
    "boolean|date} for a custom field (a new one is created with that type). Exactly one "
    "column goes to email; columns past the list's end are ignored."
)


class ImportUploadIn(InputSchema):
    """The settings sent beside the file (multipart/form-data fields, all optional): left out,
    each is what the file's sniffing detected."""

    encoding: str | None = Field(
        None, description="utf-8, utf-8-sig, utf-16, utf-16-le, utf-16-be, cp1252 or latin-1."
    )
    delimiter: str | None = Field(None, description=", ; | or tab.")
    has_header: bool | None = Field(None, description="Whether the first row holds headers.")
    mode: str | None = Field(None, description="create (default), upsert, unsubscribe or suppress.")
    overwrite: str | None = Field(
        None,
        description="Mode upsert: what may be overwritten, comma-separated: names,data,status.",
    )
    tags: str | None = Field(None, description="Tags for every imported contact, comma-separated.")
    dry_run: bool | None = Field(None, description="Report what would happen, change nothing.")
    mapping: str | None = Field(None, description=f"JSON. {MAPPING_HELP}")
    start: bool = Field(
        True, description="Queue the import at once; false leaves a draft to inspect and start."
    )


class ImportStartIn(InputSchema):
    """Settings to change before starting; left out, a setting stays as it is. A new encoding,
    delimiter or has_header reads the columns again and maps them anew, unless a mapping is
    given too."""

    encoding: str | None = None
    delimiter: str | None = None
    has_header: bool | None = None
    mapping: list[str | dict[str, Any]] | None = Field(None, description=MAPPING_HELP)
    mode: str | None = None
    overwrite: list[str] | None = Field(None, max_length=10)
    tags: list[str] | None = Field(None, max_length=100)
    dry_run: bool | None = None


class MappingEntryOut(Schema):
    target: str
    field: str | None = None
    # Only on a column whose custom field the import will create.
    type: str | None = None


class CountsOut(Schema):
    created: int
    updated: int
    unchanged: int
    skipped: int
    rejected: int


class PreviewRowOut(Schema):
    line: int
    cells: list[str]
    # Why the import would turn this row away as mapped now; empty when it would not.
    problem: str


class ImportOut(Schema):
    id: str
    state: str
    file_name: str
    file_size: int
    source: str
    dry_run: bool
    mode: str
    overwrite: list[str]
    tags: list[str]
    encoding: str
    delimiter: str
    has_header: bool
    # What sniffing the file guessed: encoding, delimiter, has_header.
    detected: dict[str, Any]
    headers: list[str]
    mapping: list[MappingEntryOut]
    counts: CountsOut
    # Records in the file after the header, once the worker has counted them.
    total_rows: int | None
    records_done: int
    progress_percent: int
    rows_per_second: int | None
    eta_seconds: int | None
    error: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    # The CSV of rejected and skipped rows, when there are any.
    report_url: str | None
    # A draft's first rows as read with its settings (single imports only, else null).
    preview: list[PreviewRowOut] | None = None


class ImportPage(Schema):
    items: list[ImportOut]
    next_cursor: str | None
