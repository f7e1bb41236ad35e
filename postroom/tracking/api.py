"""Events API.

POST /api/v1/track    Plunk's track (public or secret key; CORS for the public key)
GET  /api/v1/events   keyset pages, newest first: ?limit=&cursor=&kind=&name=&contact=
                      &campaign=&since=&until=
"""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router

from postroom.accounts.auth import public_or_secret_key_auth, secret_key_auth
from postroom.accounts.forms import client_ip
from postroom.campaigns.models import Campaign
from postroom.contacts.actions import ContactError
from postroom.contacts.models import Contact
from postroom.lib.apierrors import ApiError
from postroom.lib.apiinput import InputSchema
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404
from postroom.tracking import actions
from postroom.tracking.models import Event
from postroom.tracking.queries import EventFilter, filtered_events, page_order
from postroom.tracking.schemas import EventPage, TrackIn, TrackOut

router = Router(tags=["events"])


@router.post("/track", response=TrackOut, auth=public_or_secret_key_auth)
def track_event(request: HttpRequest, body: TrackIn) -> dict:
    """Record a custom event for the contact with `email`, created if need be (Plunk's
    track: `new Plunk(key, {baseUrl: "https://host/api/v1/"}).events.track(...)`)."""
    try:
        tracked = actions.track(
            request.auth,
            body.event,
            body.email,
            body.subscribed,
            body.data,
            client_ip(request),
            public=request.api_key is None,
        )
    except ContactError as e:
        raise ApiError(422, e.message, e.field) from None
    return {
        "success": True,
        "contact": str(tracked.contact),
        "event": str(tracked.event),
        "timestamp": tracked.at,
    }


class EventQuery(InputSchema):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None
    kind: str = ""
    name: str = ""
    contact: str = ""
    campaign: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    # Leave out opens and clicks flagged as a scanner's (Event.machine).
    people_only: bool = False


def event_out(event: Event) -> dict:
    contact = event.contact
    return {
        "id": str(event.code),
        "kind": event.kind,
        "name": event.name,
        "contact": {"id": str(contact.code), "email": contact.email} if contact else None,
        "message": str(event.message.code) if event.message_id else None,
        "url": event.url,
        "data": event.data,
        "machine": event.machine,
        "created_at": event.created_at,
    }


def _in_utc(when: dt.datetime, field: str) -> dt.datetime:
    """`when` in UTC (a naive one read in the default time zone, as Django would); one that
    falls outside the years 1 to 9999 once converted is a 422, not a database error."""
    if timezone.is_naive(when):
        when = when.replace(tzinfo=timezone.get_default_timezone())
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        raise ApiError(422, "is out of range.", field) from None


@router.get("/events", response=EventPage, auth=secret_key_auth)
def list_events(request: HttpRequest, query: Query[EventQuery]) -> dict:
    if query.kind and query.kind not in Event.Kind.values:
        raise ApiError(422, f"must be one of {Event.Kind.values}.", "kind")
    chosen = EventFilter(
        kind=query.kind,
        name=query.name,
        contact=get_in_project_or_404(Contact, request.auth, query.contact, "contact")
        if query.contact
        else None,
        campaign=get_in_project_or_404(Campaign, request.auth, query.campaign, "campaign")
        if query.campaign
        else None,
        since=_in_utc(query.since, "since") if query.since else None,
        until=_in_utc(query.until, "until") if query.until else None,
        people_only=query.people_only,
    )
    events = filtered_events(request.auth, chosen)
    page = keyset_page(events, after=query.cursor, size=query.limit, by=page_order(chosen))
    return {"items": [event_out(e) for e in page.items], "next_cursor": page.next_cursor}
