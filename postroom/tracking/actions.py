"""What recipients do with a message: opens, clicks, unsubscribes, their preferences."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from postroom.accounts.forms import client_ip
from postroom.contacts.actions import suppress
from postroom.contacts.models import ConsentSource, Contact, Status, Suppression
from postroom.delivery.models import Message
from postroom.tracking.models import Event


def user_agent(request: HttpRequest) -> str:
    return request.headers.get("User-Agent", "")[:300]


def record(message: Message, kind: str, request: HttpRequest, **fields) -> Event:
    return Event.objects.create(
        project_id=message.project_id,
        kind=kind,
        contact_id=message.contact_id,
        message=message,
        email_id=message.email_id,
        user_agent=user_agent(request),
        **fields,
    )


def record_open(message: Message, request: HttpRequest) -> None:
    """Every open is an event; the message keeps the first."""
    record(message, Event.Kind.OPENED, request)
    Message.objects.filter(pk=message.pk, opened_at=None).update(opened_at=timezone.now())


def record_click(message: Message, url: str, request: HttpRequest) -> None:
    """Every click is an event with its link; the message keeps the first. A click means
    the message was opened, pixel or not (images off)."""
    record(message, Event.Kind.CLICKED, request, url=url[:2000])
    now = timezone.now()
    Message.objects.filter(pk=message.pk, clicked_at=None).update(clicked_at=now)
    Message.objects.filter(pk=message.pk, opened_at=None).update(opened_at=now)


def unsubscribe(message: Message, request: HttpRequest, how: str) -> None:
    """The recipient of `message` wants no more marketing mail: their contact is marked
    unsubscribed, or, with no contact (a send to an address), the address is suppressed as
    unsubscribed. Transactional mail still reaches them (delivery.sending.skip_reasons)."""
    with transaction.atomic():
        contact = message.contact
        if contact is not None:
            if contact.status == Status.SUBSCRIBED:
                contact.set_status(Status.UNSUBSCRIBED, f"Unsubscribed by {how}")
                contact.updated_at = timezone.now()
                contact.save(
                    update_fields=["status", "status_changed_at", "status_reason", "updated_at"]
                )
        else:
            suppress(message.project, message.to_email, Suppression.Reason.UNSUBSCRIBED, how)
        record(message, Event.Kind.UNSUBSCRIBED, request, data={"how": how})


def resubscribe(contact: Contact, request: HttpRequest) -> None:
    """The contact asks for marketing mail again, on their own preference page: consent anew."""
    contact.set_status(Status.SUBSCRIBED, "Subscribed again on the preference page")
    contact.consent_at = timezone.now()
    contact.consent_source = ConsentSource.FORM
    contact.consent_ip = client_ip(request)
    contact.updated_at = timezone.now()
    contact.save()
    Suppression.objects.filter(
        project=contact.project, email=contact.email, reason=Suppression.Reason.UNSUBSCRIBED
    ).delete()


def personal_data(contact: Contact) -> dict:
    """Everything Postroom keeps about a contact, for "download my data"."""
    messages = contact.messages.select_related("email").order_by("-id")[:1000]
    events = contact.events.order_by("-id")[:1000]
    return {
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
        "custom_fields": contact.data,
        "tags": sorted(contact.contacttag_set.values_list("tag__name", flat=True)),
        "created_at": contact.created_at,
        "messages": [
            {"subject": m.email.subject, "state": m.state, "sent_at": m.sent_at} for m in messages
        ],
        "events": [
            {"kind": e.kind, "name": e.name, "url": e.url, "at": e.created_at} for e in events
        ],
    }
