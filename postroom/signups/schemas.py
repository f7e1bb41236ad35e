from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Schema

from postroom.lib.apiinput import InputSchema


class SignupFormIn(InputSchema):
    """A form's settings; on PATCH, only those sent change."""

    name: str | None = Field(None, max_length=100)
    title: str | None = Field(None, max_length=200)
    intro: str | None = Field(None, max_length=2000)
    fields: list[str] | None = None  # first_name, last_name, or custom fields' keys
    required: list[str] | None = None
    tags: list[str] | None = None
    button_label: str | None = Field(None, max_length=50)
    double_opt_in: bool | None = None
    confirm_subject: str | None = Field(None, max_length=200)
    confirm_text: str | None = Field(None, max_length=10_000)
    success_message: str | None = Field(None, max_length=2000)
    success_url: str | None = Field(None, max_length=2000)
    confirmed_message: str | None = Field(None, max_length=2000)
    confirmed_url: str | None = Field(None, max_length=2000)
    event_name: str | None = Field(None, max_length=100)
    active: bool | None = None


class SignupFormOut(Schema):
    id: str
    name: str
    title: str
    intro: str
    fields: list[str]
    required: list[str]
    tags: list[str]
    button_label: str
    double_opt_in: bool
    confirm_subject: str
    confirm_text: str
    success_message: str
    success_url: str
    confirmed_message: str
    confirmed_url: str
    event_name: str
    active: bool
    hosted_url: str
    embed_html: str
    created_at: dt.datetime
    updated_at: dt.datetime


class SignupOut(Schema):
    id: str
    email: str
    state: str
    submitted: dict[str, Any]
    ip: str | None
    referrer: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    contact: str | None


class SignupPage(Schema):
    items: list[SignupOut]
    next_cursor: str | None


class SignupQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    state: str = ""


class SignupFormDeleted(Schema):
    success: bool
    id: str
