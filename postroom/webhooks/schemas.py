from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema

from postroom.lib.apiinput import InputSchema


class EndpointIn(InputSchema):
    url: str = Field(..., max_length=2000)
    event_types: list[str]
    description: str = Field("", max_length=200)


class EndpointPatch(InputSchema):
    url: str | None = Field(None, max_length=2000)
    event_types: list[str] | None = None
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = None


class EndpointOut(Schema):
    id: str
    url: str
    description: str
    event_types: list[str]
    secret: str
    enabled: bool
    disabled_reason: str
    failing_since: dt.datetime | None
    next_attempt_at: dt.datetime | None
    consecutive_failures: int
    last_success_at: dt.datetime | None
    created_at: dt.datetime


class DeliveryOut(Schema):
    id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    last_status: int | None
    last_response: str
    last_error: str
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    payload: dict[str, Any]


class DeliveryPage(Schema):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveryQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    state: str = ""


class EndpointDeleted(Schema):
    success: bool
    id: str
