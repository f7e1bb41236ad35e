"""The contact page's timeline gets the contact's events (contacts.timeline)."""

from __future__ import annotations

from collections.abc import Iterable

from postroom.contacts.models import Contact
from postroom.contacts.timeline import TimelineEntry, register
from postroom.tracking.models import Event


@register
def events(contact: Contact, limit: int) -> Iterable[TimelineEntry]:
    for event in Event.objects.filter(contact=contact).order_by("-id")[:limit]:
        yield TimelineEntry(event.created_at, event.kind, describe(event))


def describe(event: Event) -> str:
    if event.kind == Event.Kind.CUSTOM:
        return f"Event “{event.name}”"
    if event.kind == Event.Kind.CLICKED and event.url:
        return f"Clicked {event.url[:120]}"
    return f"Email {event.get_kind_display().lower()}"
