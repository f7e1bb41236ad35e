"""A contact's timeline: entries gathered from every app that knows something about them.

An app adds a source with `register(source)`; a source yields TimelineEntry values for one
contact, newest first, at most `limit`. Later features (messages, events) register theirs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from postroom.contacts.models import Contact, ContactTag


@dataclass
class TimelineEntry:
    at: dt.datetime
    kind: str
    text: str


Source = Callable[[Contact, int], Iterable[TimelineEntry]]
SOURCES: list[Source] = []


def register(source: Source) -> Source:
    SOURCES.append(source)
    return source


@register
def contact_lifecycle(contact: Contact, limit: int) -> Iterable[TimelineEntry]:
    yield TimelineEntry(contact.created_at, "created", "Contact created")
    if contact.consent_at:
        source = contact.get_consent_source_display() or "unknown source"
        ip = f" from {contact.consent_ip}" if contact.consent_ip else ""
        yield TimelineEntry(contact.consent_at, "consent", f"Consent given ({source}){ip}")
    if contact.status_changed_at:
        reason = f": {contact.status_reason}" if contact.status_reason else ""
        yield TimelineEntry(
            contact.status_changed_at,
            "status",
            f"Became {contact.get_status_display().lower()}{reason}",
        )


@register
def tags_added(contact: Contact, limit: int) -> Iterable[TimelineEntry]:
    links = ContactTag.objects.filter(contact=contact).select_related("tag").order_by("-created_at")
    for link in links[:limit]:
        yield TimelineEntry(link.created_at, "tag", f"Tagged “{link.tag.name}”")


def timeline_for(contact: Contact, limit: int = 50) -> list[TimelineEntry]:
    entries = [entry for source in SOURCES for entry in source(contact, limit)]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
