from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema

from postroom.lib.apiinput import InputSchema


class TrackIn(InputSchema):
    """Plunk's body: `data` values are plain (kept on the contact) or
    {"value": ..., "persistent": false} (kept on the event only)."""

    event: str = Field(max_length=100)
    email: str = Field(max_length=254)
    subscribed: bool | None = None
    data: dict[str, Any] = {}


class TrackOut(Schema):
    success: bool
    contact: str
    event: str
    timestamp: dt.datetime


class EventContactOut(Schema):
    id: str
    email: str


class EventOut(Schema):
    id: str
    kind: str
    name: str
    contact: EventContactOut | None
    message: str | None
    url: str
    data: dict[str, Any]
    # An open or click a scanner or prefetching proxy probably made, not a person.
    machine: bool
    created_at: dt.datetime


class EventPage(Schema):
    items: list[EventOut]
    next_cursor: str | None
