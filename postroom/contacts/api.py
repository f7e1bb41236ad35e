"""Contacts and segments API (secret key). The contact endpoints take and answer Plunk's
shapes (its fields are a subset of ours: id, email, subscribed, data, createdAt, updatedAt),
so its clients work unchanged; data keys in camelCase become field keys (firstName ->
first_name, which is the contact's first name).

GET    /api/v1/contacts                  a list, newest first: ?limit=&cursor=&q=&status=&tag=;
                                         the next page's URL in the Link header (rel="next")
GET    /api/v1/contacts/count            {"count": N} (public key too, as Plunk's)
GET    /api/v1/contacts/export           CSV, streamed: ?segment=&status=&tag=&q=&bom=
                                         (bom=true for Excel: UTF-8 with a byte order mark)
POST   /api/v1/contacts                  create
PUT    /api/v1/contacts                  Plunk's update: {id, email?, subscribed?, data?}
DELETE /api/v1/contacts                  Plunk's delete: {id}; erases
POST   /api/v1/contacts/subscribe        {id} or {email}
POST   /api/v1/contacts/unsubscribe      {id} or {email}
GET    /api/v1/contacts/{id}             one contact
GET    /api/v1/contacts/{id}/export      everything kept about them, as one JSON document
PATCH  /api/v1/contacts/{id}             change some fields (data keys merged)
DELETE /api/v1/contacts/{id}             erase: what was done, in figures
GET    /api/v1/fields                    the custom fields: key, label, type
POST   /api/v1/fields                    add one {key, label?, type}
DELETE /api/v1/fields/{key}              remove one (values on contacts are kept)
GET    /api/v1/suppressions              keyset pages: ?limit=&cursor=&q= (an erased
                                         address shows as "" with erased: true)
POST   /api/v1/suppressions              {email, note?}: never mail this address
DELETE /api/v1/suppressions/{email}      mail it again (erased or not)
GET    /api/v1/segments                  all segments
POST   /api/v1/segments                  create (rules validated, errors name the rule)
GET    /api/v1/segments/{id}             one segment
PATCH  /api/v1/segments/{id}             rename or change rules
DELETE /api/v1/segments/{id}             delete
GET    /api/v1/segments/{id}/count       {"total": N, "subscribed": M}
"""

from __future__ import annotations

from dataclasses import asdict

from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Query, Router
from ninja import Status as Reply

from postroom.accounts.auth import public_or_secret_key_auth, secret_key_auth
from postroom.contacts import actions, privacy, rules
from postroom.contacts.actions import (
    ContactChanges,
    ContactError,
    ContactFilter,
    DuplicateContact,
    api_data,
)
from postroom.contacts.models import (
    ConsentSource,
    Contact,
    FieldDefinition,
    Segment,
    Status,
    Suppression,
)
from postroom.contacts.schemas import (
    ContactIn,
    ContactOut,
    ContactPatch,
    ContactRef,
    ContactWriteOut,
    CountOnlyOut,
    CountOut,
    DeletedOut,
    ErasedOut,
    FieldIn,
    FieldOut,
    PlunkContactUpdate,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    SubscriptionOut,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)
from postroom.imports.export import contacts_of_segment, export_filename, export_response
from postroom.lib.apierrors import ApiError
from postroom.lib.apiinput import InputSchema, find_unstorable
from postroom.lib.emails import lookup_email
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404

contacts_router = Router(tags=["contacts"], auth=secret_key_auth)
fields_router = Router(tags=["contacts"], auth=secret_key_auth)
suppressions_router = Router(tags=["contacts"], auth=secret_key_auth)
segments_router = Router(tags=["segments"], auth=secret_key_auth)


def _get_contact(request: HttpRequest, contact_id: str) -> Contact:
    return get_in_project_or_404(Contact, request.auth, contact_id, "contact")


def _get_segment(request: HttpRequest, segment_id: str) -> Segment:
    return get_in_project_or_404(Segment, request.auth, segment_id, "segment")


def contact_out(contact: Contact, tags: list[str] | None = None) -> dict:
    return {
        "id": str(contact.code),
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "status": contact.status,
        "subscribed": contact.status == Status.SUBSCRIBED,
        "status_changed_at": contact.status_changed_at,
        "status_reason": contact.status_reason,
        "data": contact.data,
        "tags": tags if tags is not None else [t.name for t in contact.tags.all()],
        "consent": {
            "at": contact.consent_at,
            "source": contact.consent_source,
            "ip": contact.consent_ip,
        },
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        # Plunk's names for the same.
        "createdAt": contact.created_at,
        "updatedAt": contact.updated_at,
    }


def _contact_error(e: ContactError) -> ApiError:
    return ApiError(409 if isinstance(e, DuplicateContact) else 422, e.message, e.field)


class ContactQuery(InputSchema):
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None
    q: str = ""
    status: str = ""
    tag: str = ""


def status_from(status: str | None, subscribed: bool | None) -> str | None:
    """Our status, from ours or Plunk's `subscribed` (which must agree when both come)."""
    if subscribed is None:
        return status
    wanted = Status.SUBSCRIBED if subscribed else Status.UNSUBSCRIBED
    if status is not None and status != wanted:
        raise ApiError(422, f"says {status} but subscribed is {subscribed}.", "status")
    return wanted


@contacts_router.get("", response=list[ContactOut])
def list_contacts(request: HttpRequest, query: Query[ContactQuery], response: HttpResponse):
    """Plunk's shape (a list); pages of `limit` newest first, the next one in the Link header
    and in X-Next-Cursor."""
    if query.status and query.status not in Status.values:
        raise ApiError(422, f"must be one of {Status.values}.", "status")
    contact_filter = ContactFilter.from_dict(query.dict())
    qs = actions.filtered_contacts(request.auth, contact_filter).prefetch_related("tags")
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    if page.next_cursor:
        params = request.GET.copy()
        params["cursor"] = page.next_cursor
        response["Link"] = f'<{request.build_absolute_uri("?" + params.urlencode())}>; rel="next"'
        response["X-Next-Cursor"] = page.next_cursor
    return [contact_out(c) for c in page.items]


@contacts_router.get("/count", response=CountOnlyOut, auth=public_or_secret_key_auth)
def count_contacts(request: HttpRequest) -> dict:
    return {"count": Contact.objects.filter(project=request.auth).count()}


class ExportQuery(InputSchema):
    segment: str | None = None
    status: str = ""
    tag: str = ""
    q: str = ""
    bom: bool = False


# django-ninja documents a response as JSON; this one is a CSV file.
CSV_RESPONSE = {
    "responses": {
        200: {
            "description": "The contacts as CSV: email, first_name, last_name, status, tags, "
            "consent_at, consent_source, created_at, then one column per custom field.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }
}


@contacts_router.get("/export", response={200: None}, openapi_extra=CSV_RESPONSE)
def export_contacts(request: HttpRequest, query: Query[ExportQuery]) -> HttpResponse:
    """Every contact, or a segment's, narrowed by the list's filters, as CSV streamed in
    constant memory; the header names are the ones an import maps back by itself."""
    if query.status and query.status not in Status.values:
        raise ApiError(422, f"must be one of {Status.values}.", "status")
    contacts = Contact.objects.filter(project=request.auth)
    filename = export_filename()
    if query.segment:
        segment = _get_segment(request, query.segment)
        try:
            contacts = contacts_of_segment(segment)
        except rules.RuleError as e:
            raise ApiError(409, f"The segment's rules no longer hold: {e}", "segment") from None
        filename = export_filename(segment)
    contacts = ContactFilter.from_dict(query.dict()).apply(contacts, request.auth)
    return export_response(request.auth, contacts, filename, bom=query.bom)


@contacts_router.post("", response={201: ContactWriteOut})
def create_contact(request: HttpRequest, body: ContactIn) -> Reply:
    data, names = api_data(body.data)
    try:
        contact = actions.create_contact(
            request.auth,
            body.email,
            first_name=body.first_name or names.get("first_name", ""),
            last_name=body.last_name or names.get("last_name", ""),
            status=status_from(body.status, body.subscribed) or Status.SUBSCRIBED,
            data=data,
            tags=body.tags,
            consent_source=ConsentSource.API,
            create_fields=True,
        )
    except ContactError as e:
        raise _contact_error(e) from None
    return Reply(201, {"success": True, **contact_out(contact)})


def _change(contact: Contact, body: ContactPatch | PlunkContactUpdate) -> Contact:
    fields = body.dict(exclude_unset=True)
    data, names = api_data(fields.pop("data", None))
    changes = ContactChanges(
        email=fields.get("email"),
        first_name=fields.get("first_name", names.get("first_name")),
        last_name=fields.get("last_name", names.get("last_name")),
        status=status_from(fields.get("status"), fields.get("subscribed")),
        data=data if "data" in body.model_fields_set else None,
        tags=fields.get("tags"),
    )
    if changes.status is not None:
        changes.status_reason = "Changed through the API"
    try:
        return actions.update_contact(contact, changes, create_fields=True)
    except ContactError as e:
        raise _contact_error(e) from None


@contacts_router.put("", response=ContactWriteOut)
def update_contact_by_body(request: HttpRequest, body: PlunkContactUpdate) -> dict:
    """Plunk's update: the contact's id in the body."""
    contact = _change(_get_contact(request, body.id), body)
    return {"success": True, **contact_out(contact)}


@contacts_router.delete("", response=ContactWriteOut)
def delete_contact_by_body(request: HttpRequest, body: ContactRef) -> dict:
    """Plunk's delete: the contact's id in the body; answers with the erased contact."""
    contact = _find_contact(request, body)
    erased = contact_out(contact)
    actions.erase_contact(contact)
    return {"success": True, **erased}


def _find_contact(request: HttpRequest, body: ContactRef) -> Contact:
    if body.id:
        return _get_contact(request, body.id)
    if body.email:
        contact = Contact.objects.filter(
            project=request.auth, email=lookup_email(body.email)
        ).first()
        if contact is not None:
            return contact
        raise Http404("No such contact.")
    raise ApiError(422, "send the contact's id or email.", "id")


@contacts_router.post("/subscribe", response=SubscriptionOut)
def subscribe_contact(request: HttpRequest, body: ContactRef) -> dict:
    contact = _find_contact(request, body)
    try:
        actions.subscribe(contact, "Subscribed through the API")
    except ContactError as e:
        raise ApiError(409, e.message, e.field) from None
    return {"success": True, "contact": str(contact.code), "subscribed": True}


@contacts_router.post("/unsubscribe", response=SubscriptionOut)
def unsubscribe_contact(request: HttpRequest, body: ContactRef) -> dict:
    contact = _find_contact(request, body)
    actions.unsubscribe(contact, "Unsubscribed through the API")
    return {"success": True, "contact": str(contact.code), "subscribed": False}


@contacts_router.get("/{contact_id}", response=ContactOut)
def get_contact(request: HttpRequest, contact_id: str) -> dict:
    return contact_out(_get_contact(request, contact_id))


@contacts_router.patch("/{contact_id}", response=ContactOut)
def update_contact(request: HttpRequest, contact_id: str, body: ContactPatch) -> dict:
    return contact_out(_change(_get_contact(request, contact_id), body))


# django-ninja documents a response as JSON; this one is streamed.
EXPORT_RESPONSE = {
    "responses": {
        200: {
            "description": "Everything kept about the contact (contacts.privacy): format, "
            "exported_at, project, contact (fields, custom data, tags, status, consent), "
            "suppressions, messages, events, totals.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
}


@contacts_router.get("/{contact_id}/export", response={200: None}, openapi_extra=EXPORT_RESPONSE)
def export_contact(request: HttpRequest, contact_id: str) -> HttpResponse:
    """A data subject's access request: one JSON document, streamed in constant memory."""
    contact = _get_contact(request, contact_id)
    return privacy.export_response(contact, privacy.export_filename(contact))


@contacts_router.delete("/{contact_id}", response=ErasedOut)
def delete_contact(request: HttpRequest, contact_id: str) -> dict:
    """Erase the contact (contacts.actions.erase_contact) and say what was done."""
    contact = _get_contact(request, contact_id)
    code = str(contact.code)
    erasure = actions.erase_contact(contact)
    return {"success": True, "id": code, "erased": asdict(erasure)}


def field_out(definition: FieldDefinition) -> dict:
    return {"key": definition.key, "label": definition.label, "type": definition.type}


@fields_router.get("", response=list[FieldOut])
def list_fields(request: HttpRequest) -> list[dict]:
    return [field_out(f) for f in FieldDefinition.objects.filter(project=request.auth)[:1000]]


@fields_router.post("", response={201: FieldOut})
def create_field(request: HttpRequest, body: FieldIn) -> Reply:
    if FieldDefinition.objects.filter(project=request.auth, key=body.key).exists():
        raise ApiError(409, f"there is already a field {body.key!r}.", "key")
    try:
        definition = actions.create_field(request.auth, body.key, body.label or body.key, body.type)
    except ContactError as e:
        raise ApiError(422, e.message, "key" if e.field.startswith("data.") else e.field) from None
    return Reply(201, field_out(definition))


@fields_router.delete("/{key}", response=DeletedOut)
def delete_field(request: HttpRequest, key: str) -> dict:
    definition = None
    if find_unstorable(key) is None:
        definition = FieldDefinition.objects.filter(project=request.auth, key=key).first()
    if definition is None:
        raise Http404("No such field.")
    definition.delete()
    return {"success": True, "id": key}


def suppression_out(suppression: Suppression) -> dict:
    return {
        "email": suppression.email,
        "erased": suppression.is_erased,
        "reason": suppression.reason,
        "note": suppression.note,
        "created_at": suppression.created_at,
    }


class SuppressionQuery(InputSchema):
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None
    q: str = ""


@suppressions_router.get("", response=SuppressionPage)
def list_suppressions(request: HttpRequest, query: Query[SuppressionQuery]) -> dict:
    qs = actions.search_suppressions(request.auth, query.q)
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    return {"items": [suppression_out(s) for s in page.items], "next_cursor": page.next_cursor}


@suppressions_router.post("", response={201: SuppressionOut})
def create_suppression(request: HttpRequest, body: SuppressionIn) -> Reply:
    try:
        suppression = actions.suppress(request.auth, body.email, note=body.note)
    except ContactError as e:
        raise ApiError(422, e.message, e.field) from None
    return Reply(201, suppression_out(suppression))


@suppressions_router.delete("/{email}", response=DeletedOut)
def delete_suppression(request: HttpRequest, email: str) -> dict:
    address = lookup_email(email)
    suppression = actions.suppression_of(request.auth.id, address) if address else None
    if suppression is None:
        raise Http404("No such address on the suppression list.")
    actions.unsuppress(suppression)
    return {"success": True, "id": address}


def segment_out(segment: Segment) -> dict:
    return {
        "id": str(segment.code),
        "name": segment.name,
        "rules": segment.rules,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
    }


def _clean_rules(request: HttpRequest, tree: dict) -> dict:
    try:
        return rules.clean_tree(tree, request.auth)
    except rules.RuleError as e:
        raise ApiError(422, e.message, f"rules.{e.path}" if e.path else "rules") from None


@segments_router.get("", response=list[SegmentOut])
def list_segments(request: HttpRequest) -> list[dict]:
    return [
        segment_out(s) for s in Segment.objects.filter(project=request.auth).order_by("name")[:1000]
    ]


@segments_router.post("", response={201: SegmentOut})
def create_segment(request: HttpRequest, body: SegmentIn) -> Reply:
    tree = _clean_rules(request, body.rules)
    segment = Segment.objects.create(project=request.auth, name=body.name.strip(), rules=tree)
    return Reply(201, segment_out(segment))


@segments_router.get("/{segment_id}", response=SegmentOut)
def get_segment(request: HttpRequest, segment_id: str) -> dict:
    return segment_out(_get_segment(request, segment_id))


@segments_router.patch("/{segment_id}", response=SegmentOut)
def update_segment(request: HttpRequest, segment_id: str, body: SegmentPatch) -> dict:
    segment = _get_segment(request, segment_id)
    if body.rules is not None:
        segment.rules = _clean_rules(request, body.rules)
    if body.name is not None:
        segment.name = body.name.strip()
    segment.updated_at = timezone.now()
    segment.save()
    return segment_out(segment)


@segments_router.delete("/{segment_id}", response=DeletedOut)
def delete_segment(request: HttpRequest, segment_id: str) -> dict:
    segment = _get_segment(request, segment_id)
    code = str(segment.code)
    try:
        actions.delete_segment(segment)
    except ContactError as e:
        raise ApiError(409, e.message, e.field) from None
    return {"success": True, "id": code}


@segments_router.get("/{segment_id}/count", response=CountOut)
def count_segment(request: HttpRequest, segment_id: str) -> dict:
    segment = _get_segment(request, segment_id)
    try:
        tree = rules.clean_tree(segment.rules, request.auth)
    except rules.RuleError as e:
        # Saved rules can go stale, e.g. when a custom field they use is removed.
        raise ApiError(409, f"The segment's rules no longer hold: {e}", "rules") from None
    matching = rules.segment_contacts(request.auth, tree)
    return matching.aggregate(
        total=Count("id"), subscribed=Count("id", filter=Q(status=Status.SUBSCRIBED))
    )
