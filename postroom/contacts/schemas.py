from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import StringConstraints

from postroom.lib.apiinput import InputSchema


class ContactIn(InputSchema):
    """Ours, or Plunk's {email, subscribed, data}."""

    email: str = Field(max_length=254)
    first_name: str = ""
    last_name: str = ""
    status: str | None = None
    subscribed: bool | None = None
    data: dict[str, Any] = {}
    tags: list[str] = []


class ContactPatch(InputSchema):
    """Fields left out stay as they are; data keys are merged (null removes a key)."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    subscribed: bool | None = None
    data: dict[str, Any] | None = None
    tags: list[str] | None = None


class PlunkContactUpdate(ContactPatch):
    """Plunk's update: the contact's id in the body."""

    id: str


class ContactRef(InputSchema):
    """A contact by its id or its email address (Plunk's subscribe, unsubscribe, delete)."""

    id: str | None = None
    email: str | None = Field(None, max_length=254)


class SubscriptionOut(Schema):
    success: bool
    contact: str
    subscribed: bool


class CountOnlyOut(Schema):
    count: int


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
    createdAt: dt.datetime
    updatedAt: dt.datetime


class ContactWriteOut(ContactOut):
    success: bool


class CountOut(Schema):
    total: int
    subscribed: int


SegmentName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class SegmentIn(InputSchema):
    name: SegmentName
    rules: dict[str, Any]


class SegmentPatch(InputSchema):
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


class ErasureOut(Schema):
    messages: int = Field(description="messages whose address, name and data were removed")
    cancelled: int = Field(description="of those, messages not sent yet, now cancelled")
    events_deleted: int = Field(description="the contact's custom events, deleted")
    events_anonymised: int = Field(
        description="email events kept for reports, no longer leading to the contact"
    )
    suppressions: int = Field(
        description="suppression entries of the address, now keeping only its hash"
    )


class ErasedOut(DeletedOut):
    erased: ErasureOut


class FieldIn(InputSchema):
    key: str = Field(max_length=64, description="e.g. signup_date: lower case, digits, _")
    label: str = Field("", max_length=100)
    type: Literal["text", "number", "date", "boolean"] = "text"


class FieldOut(Schema):
    key: str
    label: str
    type: str


class SuppressionIn(InputSchema):
    email: str = Field(max_length=254)
    note: str = Field("", max_length=200)


class SuppressionOut(Schema):
    email: str = Field(description='"" once the address was erased')
    erased: bool
    reason: str
    note: str
    created_at: dt.datetime


class SuppressionPage(Schema):
    items: list[SuppressionOut]
    next_cursor: str | None
