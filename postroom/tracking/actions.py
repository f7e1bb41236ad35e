"""Recording what recipients do with a message: opens and clicks (here), unsubscribes."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone

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
