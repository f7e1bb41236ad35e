"""The imports pages: upload, settings with a preview, progress, result and report."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.contacts.actions import field_definitions
from postroom.contacts.models import FieldType
from postroom.imports import actions
from postroom.imports.actions import ImportProblem, ImportSettings
from postroom.imports.columns import TARGETS
from postroom.imports.models import Import
from postroom.lib.csvsniff import ENCODINGS
from postroom.lib.keyset import keyset_page

DELIMITER_CHOICES = [(",", "Comma ,"), (";", "Semicolon ;"), ("\t", "Tab"), ("|", "Pipe |")]


def _get_import(request: HttpRequest, code) -> Import:
    return get_object_or_404(Import, project=request.project, code=code)


def _back(request: HttpRequest, imp: Import) -> HttpResponse:
    return redirect("import", project_code=request.project.code, code=imp.code)


@project_view
def imports(request: HttpRequest) -> HttpResponse:
    """The imports so far, and the upload form."""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "file: choose a file to upload.")
        else:
            try:
                imp = actions.create_import(request.project, upload, upload.name, request.user)
            except ImportProblem as e:
                messages.error(request, f"{e.field}: {e.message}")
            else:
                return _back(request, imp)
    qs = Import.objects.filter(project=request.project).exclude(state=Import.State.DRAFT)
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=50
    )
    drafts = Import.objects.filter(project=request.project, state=Import.State.DRAFT)
    return render(
        request, "imports/list.html", {"page": page, "drafts": drafts.order_by("-id")[:5]}
    )


@project_view
def import_detail(request: HttpRequest, code) -> HttpResponse:
    imp = _get_import(request, code)
    if imp.state != Import.State.DRAFT:
        template = "imports/_progress.html" if request.htmx else "imports/detail.html"
        response = render(request, template, {"imp": imp})
        response["Cache-Control"] = "no-store"  # live progress: never a stale page
        return response
    if request.method == "POST":
        try:
            actions.configure_import(imp, settings_from_post(request.POST, len(imp.mapping)))
            if request.POST.get("action") == "start":
                actions.start_import(imp)
                return _back(request, imp)
        except ImportProblem as e:
            messages.error(request, f"{e.field}: {e.message}")
            imp.refresh_from_db()
    return render(request, "imports/settings.html", settings_context(imp))


def settings_from_post(post: Any, width: int) -> ImportSettings:
    """The settings form's choices. The mapping is read only when the columns stay the same
    (a new encoding, delimiter or header choice maps them again)."""
    mapping = []
    for index in range(width):
        target = post.get(f"target_{index}", "ignore")
        if target.startswith("field:"):
            mapping.append({"target": "field", "field": target[6:]})
        elif target == "new_field":
            entry = {"target": "field", "field": post.get(f"field_{index}", "").strip()}
            mapping.append({**entry, "type": post.get(f"type_{index}", FieldType.TEXT)})
        else:
            mapping.append({"target": target})
    return ImportSettings(
        encoding=post.get("encoding") or None,
        delimiter=post.get("delimiter") or None,
        has_header=post.get("has_header") == "1",
        mapping=mapping if post.get("remap") != "1" else None,
        mode=post.get("mode") or None,
        overwrite=post.getlist("overwrite"),
        tags=[t for t in post.get("tags", "").split(",") if t.strip()],
        dry_run=post.get("dry_run") == "1",
    )


def settings_context(imp: Import) -> dict[str, Any]:
    fields = field_definitions(imp.project)
    records = actions.preview(imp, 10)
    columns = []
    for index, entry in enumerate(imp.mapping):
        header = imp.headers[index] if index < len(imp.headers) else f"Column {index + 1}"
        is_new = entry["target"] == "field" and entry["field"] not in fields
        if entry["target"] == "field":
            chosen = "new_field" if is_new else f"field:{entry['field']}"
        else:
            chosen = entry["target"]
        columns.append(
            {"index": index, "header": header, "chosen": chosen, "entry": entry, "new": is_new}
        )
    return {
        "imp": imp,
        "columns": columns,
        "preview": actions.preview_rows(imp, records, fields),
        "targets": [(k, v) for k, v in TARGETS.items() if k != "field"],
        "fields": fields.values(),
        "field_types": FieldType.choices,
        "encodings": ENCODINGS,
        "delimiters": DELIMITER_CHOICES,
        "modes": Import.Mode.choices,
        "overwritable": Import.OVERWRITABLE.items(),
    }


@require_POST
@project_view
def import_cancel(request: HttpRequest, code) -> HttpResponse:
    imp = _get_import(request, code)
    if actions.cancel_import(imp):
        messages.success(request, "Import cancelled; rows imported before stay.")
    return _back(request, imp)


@require_POST
@project_view
def import_for_real(request: HttpRequest, code) -> HttpResponse:
    imp = _get_import(request, code)
    try:
        again = actions.repeat_for_real(imp, request.user)
    except ImportProblem as e:
        messages.error(request, f"{e.field}: {e.message}")
        return _back(request, imp)
    return _back(request, again)


@project_view
def import_report(request: HttpRequest, code) -> HttpResponse:
    """The rejected and skipped rows with line and reason, streamed in constant memory."""
    imp = _get_import(request, code)
    response = StreamingHttpResponse(
        actions.report_csv(imp), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="import-{imp.code}-rejected.csv"'
    return response
