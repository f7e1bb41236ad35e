from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import StringConstraints


class ContactIn(Schema):
    email: str = Field(max_length=254)
    first_name: str = ""
    last_name: str = ""
    status: str = "subscribed"
    data: dict[str, Any] = {}
    tags: list[str] = []


class ContactPatch(Schema):
    """Fields left out stay as they are; data keys are merged (null removes a key)."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    data: dict[str, Any] | None = None
    tags: list[str] | None = None


class ConsentOut(Schema):
    at: dt.datetime | None
    source: str
    ip: str | None


class ContactOut(Schema):
    id: str
    email: str
    first_name: str
    last_name: str
    status: str
    subscribed: bool
    status_changed_at: dt.datetime | None
    status_reason: str
    data: dict[str, Any]
    tags: list[str]
    consent: ConsentOut
    created_at: dt.datetime
    updated_at: dt.datetime


class ContactPage(Schema):
    items: list[ContactOut]
    next_cursor: str | None


class CountOut(Schema):
    total: int
    subscribed: int


SegmentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class SegmentIn(Schema):
    name: SegmentName
    rules: dict[str, Any]


class SegmentPatch(Schema):
    name: SegmentName | None = None
    rules: dict[str, Any] | None = None


class SegmentOut(Schema):
    id: str
    name: str
    rules: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class DeletedOut(Schema):
    success: bool
    id: str
