"""Imports API (secret key): contacts from a CSV, TSV or TXT file, or a .zip holding one,
imported by the worker.

GET    /api/v1/imports                   keyset pages, newest first: ?limit=1..100&cursor=&state=
POST   /api/v1/imports                   multipart/form-data: `file` and optional settings;
                                         queued at once, or a draft with start=false (201)
GET    /api/v1/imports/{id}              settings, progress, counts; a draft's first rows
POST   /api/v1/imports/{id}/start        a draft, with optional settings changed, queued
POST   /api/v1/imports/{id}/cancel       stop it; the rows imported so far stay
GET    /api/v1/imports/{id}/rejected     CSV of the rows turned away: line, result, reason, row

An upload is read as the dashboard reads it (imports.actions): encoding, delimiter, header row
and column mapping are detected, and each setting sent replaces what was detected. A bad file
or setting is a 422 naming it (`file`, `mapping`, ...); a step the import's state does not
allow is a 409.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pydantic
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from ninja import Field, Query, Router
from ninja import Status as Reply
from ninja.errors import ValidationError

from postroom.accounts.auth import secret_key_auth
from postroom.contacts.actions import field_definitions
from postroom.imports import actions
from postroom.imports.actions import ImportProblem, ImportSettings
from postroom.imports.models import Import
from postroom.imports.schemas import ImportOut, ImportPage, ImportStartIn, ImportUploadIn
from postroom.lib.apierrors import ApiError
from postroom.lib.apiinput import InputSchema
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404

imports_router = Router(tags=["imports"], auth=secret_key_auth)

PREVIEW_ROWS = 10


def _get_import(request: HttpRequest, import_id: str) -> Import:
    return get_in_project_or_404(Import, request.auth, import_id, "import")


def _problem(e: ImportProblem) -> ApiError:
    if e.field == "state":
        return ApiError(409, e.message)
    return ApiError(422, e.message, e.field)


# Bytes a file's encoding could not read reach its cells as lone surrogates (imports.rows):
# shown as the replacement character, since UTF-8 (and so JSON text) cannot hold them.
SURROGATES = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    return SURROGATES.sub("\ufffd", value)


def import_out(request: HttpRequest, imp: Import, with_preview: bool = False) -> dict:
    report_url = None
    if imp.rejected or imp.skipped:
        path = reverse("api:get_import_rejected", kwargs={"import_id": imp.code})
        report_url = request.build_absolute_uri(path)
    return {
        "id": str(imp.code),
        "state": imp.state,
        "file_name": imp.file_name,
        "file_size": imp.file_size,
        "source": imp.source,
        "dry_run": imp.dry_run,
        "mode": imp.mode,
        "overwrite": imp.overwrite,
        "tags": imp.tags,
        "encoding": imp.encoding,
        "delimiter": imp.delimiter,
        "has_header": imp.has_header,
        "detected": imp.detected,
        "headers": [_text(h) for h in imp.headers],
        "mapping": imp.mapping,
        "counts": imp.counts(),
        "total_rows": imp.total_rows,
        "records_done": imp.records_done,
        "progress_percent": imp.progress_percent(),
        "rows_per_second": imp.rows_per_second(),
        "eta_seconds": imp.eta_seconds(),
        "error": _text(imp.error),
        "created_at": imp.created_at,
        "started_at": imp.started_at,
        "finished_at": imp.finished_at,
        "report_url": report_url,
        "preview": _preview(imp) if with_preview else None,
    }


def _preview(imp: Import) -> list[dict] | None:
    """A draft's first rows as its settings read them, each with what the import would say
    of it (as the dashboard's settings page shows them); None for others."""
    if imp.state != Import.State.DRAFT or not imp.path.exists():
        return None
    records = actions.preview(imp, PREVIEW_ROWS)
    rows = actions.preview_rows(imp, records, field_definitions(imp.project))
    return [
        {
            "line": row["line"],
            "cells": [_text(cell) for cell in row["cells"]],
            "problem": _text(row["problem"] or ""),
        }
        for row in rows
    ]


class ImportQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    state: str = ""


@imports_router.get("", response=ImportPage)
def list_imports(request: HttpRequest, query: Query[ImportQuery]) -> dict:
    qs = Import.objects.filter(project=request.auth)
    if query.state:
        if query.state not in Import.State.values:
            raise ApiError(422, f"must be one of {Import.State.values}.", "state")
        qs = qs.filter(state=query.state)
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    return {"items": [import_out(request, i) for i in page.items], "next_cursor": page.next_cursor}


def _form_schema(model: type[pydantic.BaseModel], files: dict[str, str]) -> dict[str, Any]:
    """`model`'s fields, and `files` (name: description), as multipart/form-data parts. A
    form field is sent or left out, never null, so `X | None` is documented as X."""
    schema = model.model_json_schema()
    for prop in schema["properties"].values():
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if options:
            prop.update(options[0])
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    parts = {
        name: {"type": "string", "format": "binary", "description": text}
        for name, text in files.items()
    }
    schema["properties"] = {**parts, **schema["properties"]}
    schema["required"] = [*files, *schema.get("required", [])]
    return schema


UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _form_schema(
                    ImportUploadIn,
                    {"file": "The contacts: a .csv, .tsv or .txt file, or a .zip holding one."},
                ),
                # Its name says how a file is read (a .zip is unpacked): an example of one,
                # which clients such as Schemathesis also send.
                "encoding": {
                    "file": {
                        "headers": {
                            "Content-Disposition": {
                                "schema": {
                                    "type": "string",
                                    "example": 'form-data; name="file"; filename="contacts.csv"',
                                }
                            }
                        }
                    }
                },
            }
        },
    }
}


def _read_upload(request: HttpRequest) -> tuple[Any, ImportUploadIn]:
    """The uploaded file and the settings beside it. Read here rather than by django-ninja's
    File and Form parameters, so that an error names the field as sent (`file`, `mode`)."""
    try:
        post, files = request.POST, request.FILES
    except RequestDataTooBig:
        raise
    except (MultiPartParserError, SuspiciousOperation) as e:
        raise ApiError(400, f"The multipart/form-data body cannot be read: {e}") from None
    fields = {}
    for name in ImportUploadIn.model_fields:
        values = [v for v in post.getlist(name) if v != ""]
        if values:  # an empty field (as a form sends one) leaves the setting as detected
            fields[name] = ",".join(values) if name in ("overwrite", "tags") else values[-1]
    try:
        form = ImportUploadIn.model_validate(fields)
    except pydantic.ValidationError as e:
        raise ValidationError(
            [{"loc": ("body", *error["loc"]), "msg": error["msg"]} for error in e.errors()]
        ) from None
    upload = files.get("file")
    if upload is None:
        raise ApiError(422, "send a .csv, .tsv or .txt file, or a .zip holding one.", "file")
    return upload, form


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _mapping(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise ApiError(422, "must be JSON: a list with one entry per column.", "mapping") from None


@imports_router.post("", response={201: ImportOut}, openapi_extra=UPLOAD_DOC)
def create_import(request: HttpRequest) -> Reply:
    """Upload a file (multipart/form-data) and queue its import, or with start=false keep it
    as a draft to inspect (its preview, headers and mapping) and start later."""
    upload, form = _read_upload(request)
    chosen = ImportSettings(
        encoding=form.encoding,
        delimiter=form.delimiter,
        has_header=form.has_header,
        mapping=_mapping(form.mapping),
        mode=form.mode,
        overwrite=_split(form.overwrite),
        tags=_split(form.tags),
        dry_run=form.dry_run,
    )
    try:
        imp = actions.create_import(request.auth, upload, upload.name, None, Import.Source.API)
    except ImportProblem as e:
        raise _problem(e) from None
    try:
        actions.configure_import(imp, chosen)
        if form.start:
            actions.start_import(imp)
    except ImportProblem as e:
        # Nothing is left of a request answered with an error (a retry starts afresh).
        imp.path.unlink(missing_ok=True)
        imp.delete()
        raise _problem(e) from None
    return Reply(201, import_out(request, imp, with_preview=True))


@imports_router.get("/{import_id}", response=ImportOut)
def get_import(request: HttpRequest, import_id: str) -> dict:
    return import_out(request, _get_import(request, import_id), with_preview=True)


@imports_router.post("/{import_id}/start", response=ImportOut)
def start_import(request: HttpRequest, import_id: str, body: ImportStartIn | None = None) -> dict:
    """Apply the settings given (the rest stay) to a draft and queue it."""
    imp = _get_import(request, import_id)
    if imp.state != Import.State.DRAFT:
        raise ApiError(409, f"Only a draft can be started; this import is {imp.state}.")
    body = body or ImportStartIn()
    try:
        actions.configure_import(imp, ImportSettings(**body.dict()))
        actions.start_import(imp)
    except ImportProblem as e:
        raise _problem(e) from None
    return import_out(request, imp)


@imports_router.post("/{import_id}/cancel", response=ImportOut)
def cancel_import(request: HttpRequest, import_id: str) -> dict:
    """Stop a draft, waiting or running import; the rows imported so far stay."""
    imp = _get_import(request, import_id)
    if not actions.cancel_import(imp):
        raise ApiError(409, f"The import is {imp.state} already.")
    return import_out(request, imp)


# django-ninja documents a response as JSON; this one is a CSV file.
CSV_RESPONSE = {
    "responses": {
        200: {
            "description": "The rejected and skipped rows in file order: line, result "
            "(rejected or skipped), reason, and the row as it was in the file.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }
}


@imports_router.get("/{import_id}/rejected", response={200: None}, openapi_extra=CSV_RESPONSE)
def get_import_rejected(request: HttpRequest, import_id: str) -> HttpResponse:
    """The rows the import turned away, with line number and reason, streamed as CSV."""
    imp = _get_import(request, import_id)
    response = StreamingHttpResponse(
        actions.report_csv(imp), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="import-{imp.code}-rejected.csv"'
    return response
