"""What Postroom keeps about one contact's person, for their data requests: the JSON export
(the contact page's "Download data (JSON)", GET /api/v1/contacts/{id}/export, and the
recipient's own "download my data" link), and the summary the erase confirm page shows. The
erase itself (contacts.actions.erase_contact) works on the same rows, chosen here.

The person's rows are the contact's, plus the ledger's messages sent to their address without
them (before they were a contact, or to a contact deleted since) and those messages' events.

The export is one JSON document streamed in constant memory, with no cap: the messages and
the events are each read by one query, through a server-side cursor on PostgreSQL and in
chunks of rows on SQLite, and written out a chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q, QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from postroom.contacts.models import Contact, ContactTag, FieldDefinition, Suppression
from postroom.delivery.models import Message
from postroom.lib.emails import hash_email
from postroom.tracking.models import Event

# Names the document's shape, for whoever reads it back; a change of shape changes it.
FORMAT = "postroom-contact-data/1"
# Rows read per fetch, and items written per piece of the response.
CHUNK = 1000
WAITING = [Message.State.QUEUED, Message.State.DEFERRED]


# --- the person's rows -------------------------------------------------------------------------


def messages_of(contact: Contact) -> QuerySet[Message]:
    """The contact's messages and every other one sent to their address in the project.
    The address has no index in the ledger: this reads the project's messages once."""
    return Message.objects.filter(project_id=contact.project_id).filter(
        Q(contact=contact) | Q(to_email=contact.email)
    )


def address_events(contact: Contact) -> QuerySet[Event]:
    """Events of messages sent to the contact's address that are not the contact's own."""
    others = Message.objects.filter(project_id=contact.project_id, to_email=contact.email)
    return Event.objects.filter(message__in=others.values("id")).exclude(contact=contact)


def suppressions_of(contact: Contact) -> QuerySet[Suppression]:
    return Suppression.objects.filter(
        project_id=contact.project_id, email_hash=hash_email(contact.email)
    )


# --- the export --------------------------------------------------------------------------------


def export_response(contact: Contact, filename: str) -> StreamingHttpResponse:
    """The document as a download, written while it is sent."""
    response = StreamingHttpResponse(
        export_json(contact), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    # Personal data: no proxy or browser cache keeps a copy.
    response["Cache-Control"] = "private, no-store"
    return response


def signups_of(contact: Contact):
    """Signups of the contact's address on the project's forms (pending ones have no contact
    yet), with the consent they record."""
    from postroom.signups.models import Signup

    return Signup.objects.filter(form__project_id=contact.project_id).filter(
        Q(contact=contact) | Q(email=contact.email)
    )


def signup_items(contact: Contact) -> list[dict]:
    return [
        {
            "form": s.form.name,
            "state": s.state,
            "submitted": s.submitted,
            "ip": s.ip,
            "user_agent": s.user_agent,
            "referrer": s.referrer,
            "created_at": s.created_at,
            "confirmed_at": s.confirmed_at,
        }
        for s in signups_of(contact).select_related("form").order_by("id")
    ]


def run_items(contact: Contact) -> list[dict]:
    from postroom.automations.models import Run

    runs = Run.objects.filter(contact=contact).select_related("automation").order_by("id")
    return [
        {
            "automation": r.automation.name,
            "state": r.state,
            "step": r.position + 1,
            "trigger": r.trigger,
            "started_at": r.started_at,
            "next_run_at": r.next_run_at if r.state == "waiting" else None,
            "finished_at": r.finished_at,
        }
        for r in runs
    ]


def export_filename(contact: Contact) -> str:
    return f"contact-{contact.code}.json"


def export_json(contact: Contact) -> Iterator[str]:
    """The document, a piece at a time: the contact and their suppressions whole, then the
    messages and the events a chunk at a time, then how many of each were written."""
    head = {
        "format": FORMAT,
        "exported_at": timezone.now(),
        "project": contact.project.name,
        "contact": contact_part(contact),
        "suppressions": [suppression_item(s) for s in suppressions_of(contact).order_by("id")],
        "signups": signup_items(contact),
        "automation_runs": run_items(contact),
    }
    yield "{\n" + ",\n".join(f"{dumps(key)}: {dumps(value)}" for key, value in head.items())
    yield ',\n"messages": '
    messages = yield from json_array(message_items(contact))
    yield ',\n"events": '
    events = yield from json_array(event_items(contact))
    yield f',\n"totals": {dumps({"messages": messages, "events": events})}\n}}\n'


def dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def json_array(items: Iterable[dict]) -> Iterator[str]:
    """A JSON array of `items`, one per line, in pieces of CHUNK items; returns how many."""
    count = 0
    pieces = ["["]
    for item in items:
        pieces.append(("\n  " if count == 0 else ",\n  ") + dumps(item))
        count += 1
        if len(pieces) >= CHUNK:
            yield "".join(pieces)
            pieces = []
    pieces.append("\n]" if count else "]")
    yield "".join(pieces)
    return count


def contact_part(contact: Contact) -> dict:
    labels = dict(
        FieldDefinition.objects.filter(project_id=contact.project_id, key__in=list(contact.data))
        .values_list("key", "label")
        .order_by("key")
    )
    tags = (
        ContactTag.objects.filter(contact=contact)
        .order_by("tag__name")
        .values_list("tag__name", "created_at")
    )
    return {
        "id": contact.code,
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "status": contact.status,
        "status_changed_at": contact.status_changed_at,
        "status_reason": contact.status_reason,
        "consent": {
            "at": contact.consent_at,
            "source": contact.consent_source,
            "ip": contact.consent_ip,
        },
        "data": contact.data,
        "data_labels": labels,
        "tags": [{"name": name, "added_at": at} for name, at in tags],
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def suppression_item(suppression: Suppression) -> dict:
    return {
        "email": suppression.email,
        "erased": suppression.is_erased,
        "reason": suppression.reason,
        "note": suppression.note,
        "created_at": suppression.created_at,
    }


MESSAGE_FIELDS = {
    "id": "code",
    "email_id": "email__code",
    "kind": "email__kind",
    "subject": "email__subject",
    "from": "email__from_email",
    "to": "to_email",
    "to_name": "to_name",
    "state": "state",
    "attempts": "attempts",
    "last_response": "last_response",
    "maybe_duplicate": "maybe_duplicate",
    "data": "data",
    "created_at": "created_at",
    "sent_at": "sent_at",
    "opened_at": "opened_at",
    "clicked_at": "clicked_at",
    "updated_at": "updated_at",
}


def message_items(contact: Contact) -> Iterator[dict]:
    """Every message, oldest first, its Email's subject and sender with it."""
    rows = messages_of(contact).order_by("id").values_list(*MESSAGE_FIELDS.values())
    for row in rows.iterator(chunk_size=CHUNK):
        yield dict(zip(MESSAGE_FIELDS, row, strict=True))


EVENT_FIELDS = {
    "id": "code",
    "kind": "kind",
    "name": "name",
    "at": "created_at",
    "message_id": "message__code",
    "url": "url",
    "user_agent": "user_agent",
    "machine": "machine",
    "data": "data",
}


def event_items(contact: Contact) -> Iterator[dict]:
    """The contact's events oldest first, then those of messages sent to their address
    without them: two queries, each served by an index (an OR of the two is not)."""
    for events in (Event.objects.filter(contact=contact), address_events(contact)):
        rows = events.order_by("id").values_list(*EVENT_FIELDS.values())
        for row in rows.iterator(chunk_size=CHUNK):
            yield dict(zip(EVENT_FIELDS, row, strict=True))


# --- the erase confirm page --------------------------------------------------------------------


@dataclass
class Holdings:
    """How much an erase of the contact touches, in the confirm page's terms."""

    messages: int
    waiting: int
    custom_events: int
    email_events: int
    tags: int
    data_fields: int
    suppressions: list[Suppression]


def holdings(contact: Contact) -> Holdings:
    messages = messages_of(contact).aggregate(
        total=Count("id"), waiting=Count("id", filter=Q(state__in=WAITING))
    )
    custom = Q(kind=Event.Kind.CUSTOM) | Q(message=None)
    own = Event.objects.filter(contact=contact).aggregate(
        custom=Count("id", filter=custom), email=Count("id", filter=~custom)
    )
    return Holdings(
        messages=messages["total"],
        waiting=messages["waiting"],
        custom_events=own["custom"],
        email_events=own["email"] + address_events(contact).exclude(custom).count(),
        tags=ContactTag.objects.filter(contact=contact).count(),
        data_fields=len(contact.data),
        suppressions=list(suppressions_of(contact)),
    )
