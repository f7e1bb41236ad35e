"""Contacts and segments API (secret key).

GET    /api/v1/contacts                  keyset pages: ?limit=&cursor=&q=&status=&tag=
POST   /api/v1/contacts                  create
GET    /api/v1/contacts/{id}             one contact
PATCH  /api/v1/contacts/{id}             change some fields (data keys merged)
DELETE /api/v1/contacts/{id}             erase
GET    /api/v1/segments                  all segments
POST   /api/v1/segments                  create (rules validated, errors name the rule)
GET    /api/v1/segments/{id}             one segment
PATCH  /api/v1/segments/{id}             rename or change rules
DELETE /api/v1/segments/{id}             delete
GET    /api/v1/segments/{id}/count       {"total": N, "subscribed": M}
"""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from ninja import Status as Reply

from postroom.accounts.auth import secret_key_auth
from postroom.contacts import actions, rules
from postroom.contacts.actions import ContactChanges, ContactError, ContactFilter, DuplicateContact
from postroom.contacts.models import ConsentSource, Contact, Segment, Status
from postroom.contacts.schemas import (
    ContactIn,
    ContactOut,
    ContactPage,
    ContactPatch,
    CountOut,
    DeletedOut,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
)
from postroom.lib.apierrors import ApiError
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404

contacts_router = Router(tags=["contacts"], auth=secret_key_auth)
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
    }


def _contact_error(e: ContactError) -> ApiError:
    return ApiError(409 if isinstance(e, DuplicateContact) else 422, e.message, e.field)


class ContactQuery(Schema):
    limit: int = 50
    cursor: str | None = None
    q: str = ""
    status: str = ""
    tag: str = ""


@contacts_router.get("", response=ContactPage)
def list_contacts(request: HttpRequest, query: Query[ContactQuery]) -> dict:
    if not 1 <= query.limit <= 500:
        raise ApiError(422, "must be between 1 and 500.", "limit")
    if query.status and query.status not in Status.values:
        raise ApiError(422, f"must be one of {Status.values}.", "status")
    contact_filter = ContactFilter.from_dict(query.dict())
    qs = actions.filtered_contacts(request.auth, contact_filter).prefetch_related("tags")
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    return {"items": [contact_out(c) for c in page.items], "next_cursor": page.next_cursor}


@contacts_router.post("", response={201: ContactOut})
def create_contact(request: HttpRequest, body: ContactIn) -> Reply:
    try:
        contact = actions.create_contact(
            request.auth,
            body.email,
            first_name=body.first_name,
            last_name=body.last_name,
            status=body.status,
            data=body.data,
            tags=body.tags,
            consent_source=ConsentSource.API,
            create_fields=True,
        )
    except ContactError as e:
        raise _contact_error(e) from None
    return Reply(201, contact_out(contact))


@contacts_router.get("/{contact_id}", response=ContactOut)
def get_contact(request: HttpRequest, contact_id: str) -> dict:
    return contact_out(_get_contact(request, contact_id))


@contacts_router.patch("/{contact_id}", response=ContactOut)
def update_contact(request: HttpRequest, contact_id: str, body: ContactPatch) -> dict:
    contact = _get_contact(request, contact_id)
    changes = ContactChanges(**body.dict(exclude_unset=True))
    if changes.status is not None:
        changes.status_reason = "Changed through the API"
    try:
        actions.update_contact(contact, changes, create_fields=True)
    except ContactError as e:
        raise _contact_error(e) from None
    return contact_out(contact)


@contacts_router.delete("/{contact_id}", response=DeletedOut)
def delete_contact(request: HttpRequest, contact_id: str) -> dict:
    contact = _get_contact(request, contact_id)
    code = str(contact.code)
    actions.erase_contact(contact)
    return {"success": True, "id": code}


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
    segment.delete()
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
