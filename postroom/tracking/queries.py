"""Reading events: the filters the events page, the contact page and the events API share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet

from postroom.accounts.models import Project
from postroom.campaigns.models import Campaign
from postroom.contacts.models import Contact
from postroom.tracking.models import Event


@dataclass
class EventFilter:
    kind: str = ""
    name: str = ""
    contact: Contact | None = None
    campaign: Campaign | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    people_only: bool = False  # leave out what scanners probably did (Event.machine)

    def is_empty(self) -> bool:
        return not (
            self.kind
            or self.name
            or self.contact
            or self.campaign
            or self.since
            or self.until
            or self.people_only
        )


def page_order(f: EventFilter) -> str | None:
    """What keyset_page orders by besides id: the time, for a time range (its index finds the
    range; ids in it need not be in time order)."""
    return "created_at" if f.since or f.until else None


def filtered_events(project: Project, f: EventFilter) -> QuerySet[Event]:
    """The project's events matching `f` (keyset pages by page_order(f), newest first), with
    what a list shows of each loaded in the same query."""
    events = Event.objects.filter(project=project)
    if f.kind:
        events = events.filter(kind=f.kind)
    if f.name:
        # Only custom events have names; saying so lets PostgreSQL use the partial index.
        events = events.filter(kind=Event.Kind.CUSTOM, name=f.name)
    if f.contact is not None:
        events = events.filter(contact=f.contact)
    if f.campaign is not None:
        email_id = f.campaign.email_id
        events = events.filter(email_id=email_id) if email_id else events.none()
    if f.since:
        events = events.filter(created_at__gte=f.since)
    if f.until:
        events = events.filter(created_at__lt=f.until)
    if f.people_only:
        events = events.filter(machine=False)
    return events.select_related("contact", "message").only(
        "id",
        "code",
        "kind",
        "name",
        "url",
        "data",
        "user_agent",
        "machine",
        "created_at",
        "email_id",
        "message_id",
        "contact_id",
        "contact__code",
        "contact__email",
        "message__code",
        "message__to_email",
    )
