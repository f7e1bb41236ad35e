from __future__ import annotations

import contextlib
import json
import logging
import uuid

from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.contacts import actions, privacy, rules
from postroom.contacts.actions import ContactChanges, ContactError, ContactFilter
from postroom.contacts.forms import ContactForm, FieldDefinitionForm, SegmentForm, SuppressionForm
from postroom.contacts.models import (
    BulkAction,
    Contact,
    FieldDefinition,
    Segment,
    Status,
    Suppression,
    Tag,
)
from postroom.contacts.timeline import timeline_for
from postroom.imports.export import contacts_of_segment, export_filename, export_response
from postroom.lib.keyset import keyset_page

log = logging.getLogger(__name__)

PAGE_SIZE = 50


def _get_contact(request: HttpRequest, code) -> Contact:
    return get_object_or_404(Contact, project=request.project, code=code)


def _get_segment(request: HttpRequest, code) -> Segment:
    return get_object_or_404(Segment, project=request.project, code=code)


def _definitions(request: HttpRequest) -> list[FieldDefinition]:
    return list(FieldDefinition.objects.filter(project=request.project))


def _redirect_contacts(request: HttpRequest) -> HttpResponse:
    return redirect("contacts", project_code=request.project.code)


# --- contacts ---------------------------------------------------------------------------------


@project_view
def contact_list(request: HttpRequest) -> HttpResponse:
    contact_filter = ContactFilter.from_dict(request.GET)
    qs = actions.filtered_contacts(request.project, contact_filter).prefetch_related("tags")
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=PAGE_SIZE
    )
    context = {
        "page": page,
        "filter": contact_filter,
        "query_string": _filter_query(contact_filter),
        "statuses": Status.choices,
        "tags": Tag.objects.filter(project=request.project)[:200],
        "bulk_kinds": BulkAction.Kind.choices,
        "has_any_contact": bool(page.items)
        or Contact.objects.filter(project=request.project).exists(),
        "running_bulk": BulkAction.objects.filter(
            project=request.project, state__in=[BulkAction.State.PENDING, BulkAction.State.RUNNING]
        ).order_by("-created_at")[:3],
    }
    return render(request, "contacts/list.html", context)


def _filter_query(contact_filter: ContactFilter) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in contact_filter.as_dict().items() if v})


@project_view
def contact_count(request: HttpRequest) -> HttpResponse:
    """The matching count, loaded after the list so a slow count never holds up the page."""
    contact_filter = ContactFilter.from_dict(request.GET)
    try:
        count = actions.filtered_contacts(request.project, contact_filter).count()
        error = None
    except Exception:
        log.exception("contact count failed")
        count, error = None, "Could not count the matching contacts."
    return render(
        request, "contacts/_count.html", {"count": count, "error": error, "filter": contact_filter}
    )


@project_view
def contact_new(request: HttpRequest) -> HttpResponse:
    definitions = _definitions(request)
    form = ContactForm(request.POST or None, definitions=definitions)
    if request.method == "POST" and form.is_valid():
        try:
            contact = actions.create_contact(
                request.project,
                form.cleaned_data["email"],
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                status=form.cleaned_data["status"],
                data=form.data_values(),
                tags=form.tag_names(),
            )
        except ContactError as e:
            _form_error(form, e)
        else:
            messages.success(request, f"{contact.email} added.")
            return redirect("contact", project_code=request.project.code, code=contact.code)
    return render(request, "contacts/new.html", {"form": form})


def _form_error(form: ContactForm, error: ContactError) -> None:
    name = "data__" + error.field[5:] if error.field.startswith("data.") else error.field
    form.add_error(name if name in form.fields else None, error.message)


@project_view
def contact_detail(request: HttpRequest, code) -> HttpResponse:
    contact = _get_contact(request, code)
    definitions = _definitions(request)
    if request.method == "POST":
        form = ContactForm(request.POST, definitions=definitions)
        if form.is_valid():
            changes = ContactChanges(
                email=form.cleaned_data["email"],
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                status=form.cleaned_data["status"],
                data=form.data_values(),
                tags=form.tag_names(),
            )
            try:
                actions.update_contact(contact, changes)
            except ContactError as e:
                # The action changed the object before failing; show what is really stored.
                contact.refresh_from_db()
                _form_error(form, e)
            else:
                messages.success(request, "Saved.")
                return redirect("contact", project_code=request.project.code, code=contact.code)
    else:
        form = ContactForm(initial=ContactForm.initial_for(contact), definitions=definitions)
    undefined = {k: v for k, v in contact.data.items() if k not in {d.key for d in definitions}}
    context = {
        "contact": contact,
        "form": form,
        "timeline": timeline_for(contact),
        "undefined_data": undefined,
        "suppressed": actions.suppression_of(request.project.id, contact.email),
    }
    return render(request, "contacts/detail.html", context)


@project_view
def contact_delete(request: HttpRequest, code) -> HttpResponse:
    """GET says what an erase will do, with the figures; POST erases."""
    contact = _get_contact(request, code)
    if request.method == "POST":
        email = contact.email
        erasure = actions.erase_contact(contact)
        kept = " It stays suppressed." if erasure.suppressions else ""
        messages.success(request, f"{email} and everything about them was erased.{kept}")
        return _redirect_contacts(request)
    context = {"contact": contact, "holdings": privacy.holdings(contact)}
    return render(request, "contacts/delete.html", context)


@project_view
def contact_export(request: HttpRequest, code) -> HttpResponse:
    """Everything kept about the contact as one JSON document (contacts.privacy)."""
    contact = _get_contact(request, code)
    return privacy.export_response(contact, privacy.export_filename(contact))


@require_POST
@project_view
def contacts_bulk(request: HttpRequest) -> HttpResponse:
    """Apply a bulk action to the ticked contacts, or queue it for every matching contact."""
    kind = request.POST.get("action", "")
    tag_name = request.POST.get("bulk_tag", "")
    try:
        if request.POST.get("scope") == "all":
            contact_filter = ContactFilter.from_dict(request.POST)
            bulk = actions.queue_bulk_action(
                request.project, kind, tag_name, contact_filter, request.user
            )
            return redirect("bulk_action", project_code=request.project.code, code=bulk.code)
        codes = request.POST.getlist("contact")
        if not codes:
            messages.error(request, "Tick some contacts first, or choose “all matching”.")
            return _redirect_contacts(request)
        done = actions.bulk_on_selection(request.project, kind, tag_name, codes)
    except ContactError as e:
        messages.error(request, e.message if e.field == "action" else f"{e.field}: {e.message}")
        return _redirect_contacts(request)
    messages.success(request, f"{BulkAction.Kind(kind).label}: {done} contacts.")
    return _redirect_contacts(request)


# --- export -----------------------------------------------------------------------------------

# The most contacts an "Export ticked" may name: a page of the list holds 50.
MAX_SELECTION = 500


def _wants_bom(params) -> bool:
    """The "Excel (UTF-8 with BOM)" choice: Excel reads UTF-8 only after a byte order mark."""
    return params.get("bom", "") in ("1", "true", "on", "yes")


@project_view
def contacts_export(request: HttpRequest) -> HttpResponse:
    """What the list shows under its current filter (every contact without one), as CSV."""
    contacts = actions.filtered_contacts(request.project, ContactFilter.from_dict(request.GET))
    return export_response(
        request.project, contacts, export_filename(), bom=_wants_bom(request.GET)
    )


@require_POST
@project_view
def contacts_export_selection(request: HttpRequest) -> HttpResponse:
    """The contacts ticked on the list (the bulk form's "Export ticked" button), as CSV."""
    codes = []
    for code in request.POST.getlist("contact")[:MAX_SELECTION]:
        with contextlib.suppress(ValueError):
            codes.append(uuid.UUID(code))
    if not codes:
        messages.error(request, "Tick the contacts to export first.")
        return _redirect_contacts(request)
    contacts = Contact.objects.filter(project=request.project, code__in=codes)
    filename = export_filename(what="contacts-selection")
    return export_response(request.project, contacts, filename, bom=_wants_bom(request.POST))


@project_view
def segment_export(request: HttpRequest, code) -> HttpResponse:
    """A saved segment's contacts as its rules select them now, as CSV."""
    segment = _get_segment(request, code)
    try:
        contacts = contacts_of_segment(segment)
    except rules.RuleError as e:
        messages.error(request, f"Cannot export: the rules no longer hold. {e.for_people()}")
        return redirect("segment", project_code=request.project.code, code=segment.code)
    return export_response(
        request.project, contacts, export_filename(segment), bom=_wants_bom(request.GET)
    )


@project_view
def bulk_action(request: HttpRequest, code) -> HttpResponse:
    bulk = get_object_or_404(BulkAction, project=request.project, code=code)
    template = "contacts/_bulk_progress.html" if request.htmx else "contacts/bulk.html"
    return render(request, template, {"bulk": bulk})


# --- custom fields ------------------------------------------------------------------------------


@project_view
def fields(request: HttpRequest) -> HttpResponse:
    form = FieldDefinitionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        key = form.cleaned_data["key"].replace("-", "_").lower()
        if FieldDefinition.objects.filter(project=request.project, key=key).exists():
            form.add_error("key", f"There is already a field {key!r}.")
        else:
            try:
                actions.create_field(
                    request.project,
                    key,
                    form.cleaned_data["label"] or key,
                    form.cleaned_data["type"],
                )
            except ContactError as e:
                form.add_error("key", e.message)
            else:
                messages.success(request, f"Field {key!r} added.")
                return redirect("fields", project_code=request.project.code)
    definitions = FieldDefinition.objects.filter(project=request.project)
    return render(request, "contacts/fields.html", {"form": form, "definitions": definitions})


@require_POST
@project_view
def field_delete(request: HttpRequest, key: str) -> HttpResponse:
    definition = get_object_or_404(FieldDefinition, project=request.project, key=key)
    definition.delete()
    messages.success(
        request, f"Field {key!r} removed. Values already stored on contacts are kept as raw data."
    )
    return redirect("fields", project_code=request.project.code)


# --- suppression list ---------------------------------------------------------------------------


@project_view
def suppressions(request: HttpRequest) -> HttpResponse:
    form = SuppressionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            s = actions.suppress(
                request.project, form.cleaned_data["email"], note=form.cleaned_data["note"]
            )
        except ContactError as e:
            form.add_error("email", e.message)
        else:
            messages.success(request, f"{s.email} will never be mailed by this project.")
            return redirect("suppressions", project_code=request.project.code)
    q = (request.GET.get("q") or "").strip().lower()
    qs = actions.search_suppressions(request.project, q)
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=PAGE_SIZE
    )
    return render(request, "contacts/suppressions.html", {"form": form, "page": page, "q": q})


@require_POST
@project_view
def suppression_delete(request: HttpRequest, suppression_id: int) -> HttpResponse:
    suppression = get_object_or_404(Suppression, project=request.project, id=suppression_id)
    actions.unsuppress(suppression)
    what = "An erased address" if suppression.is_erased else suppression.email
    messages.success(request, f"{what} removed from the suppression list.")
    return redirect("suppressions", project_code=request.project.code)


# --- segments -----------------------------------------------------------------------------------


def parse_tree(text: str, project) -> dict:
    """The editor's JSON, parsed and cleaned; anything malformed becomes a RuleError."""
    try:
        return rules.clean_tree(json.loads(text), project)
    except rules.RuleError:
        raise
    except (ValueError, TypeError, RecursionError):
        raise rules.RuleError("", "the rules are not valid JSON.") from None


@project_view
def segments(request: HttpRequest) -> HttpResponse:
    items = Segment.objects.filter(project=request.project).order_by("name")
    return render(request, "contacts/segments.html", {"segments": items})


@project_view
def segment_edit(request: HttpRequest, code=None) -> HttpResponse:
    segment = _get_segment(request, code) if code else None
    initial_rules = segment.rules if segment else rules.empty_tree()
    form = SegmentForm(
        request.POST or None,
        initial={"name": segment.name if segment else "", "rules": json.dumps(initial_rules)},
    )
    rule_error = None
    if request.method == "POST" and form.is_valid():
        try:
            tree = parse_tree(form.cleaned_data["rules"], request.project)
        except rules.RuleError as e:
            rule_error = e
        else:
            if segment is None:
                segment = Segment(project=request.project)
            segment.name = form.cleaned_data["name"]
            segment.rules = tree
            segment.updated_at = timezone.now()
            segment.save()
            messages.success(request, f"Segment “{segment.name}” saved.")
            return redirect("segment", project_code=request.project.code, code=segment.code)
    context = {
        "segment": segment,
        "form": form,
        "rules_json": form.data.get("rules") if form.is_bound else json.dumps(initial_rules),
        "schema": rules.editor_schema(request.project),
        "rule_error": rule_error,
    }
    return render(request, "contacts/segment_edit.html", context)


@require_POST
@project_view
def segment_delete(request: HttpRequest, code) -> HttpResponse:
    segment = _get_segment(request, code)
    try:
        actions.delete_segment(segment)
    except ContactError as e:
        messages.error(request, f"Not deleted: {e.message}")
        return redirect("segment", project_code=request.project.code, code=segment.code)
    messages.success(request, f"Segment “{segment.name}” deleted.")
    return redirect("segments", project_code=request.project.code)


@require_POST
@project_view
def segment_count(request: HttpRequest) -> HttpResponse:
    """The editor's live figure and preview for the tree being edited (an htmx fragment)."""
    context: dict = {}
    try:
        tree = parse_tree(request.POST.get("rules", ""), request.project)
        matching = rules.segment_contacts(request.project, tree)
        context["counts"] = matching.aggregate(
            total=Count("id"), subscribed=Count("id", filter=Q(status=Status.SUBSCRIBED))
        )
        context["preview"] = list(matching.order_by("-id")[:10])
        context["contacts_url"] = reverse("contacts", kwargs={"project_code": request.project.code})
    except rules.RuleError as e:
        context["error"] = e
    except Exception:
        log.exception("segment count failed")
        context["failed"] = True
    return render(request, "contacts/_segment_count.html", context)
