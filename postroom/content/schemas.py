from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema

from postroom.lib.apiinput import InputSchema


class TemplateIn(InputSchema):
    """A template; one whose source has a {{ content }} slot is a layout for campaigns."""

    name: str
    format: str = "html"  # markdown, html, mjml or text
    source: str
    # The plain-text part as written; empty: made from the HTML.
    text: str = ""


class TemplatePatch(InputSchema):
    """Fields left out stay as they are."""

    name: str | None = None
    format: str | None = None
    source: str | None = None
    text: str | None = None


class TemplateOut(Schema):
    id: str
    name: str
    format: str
    source: str
    text: str
    is_layout: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class TemplatePage(Schema):
    items: list[TemplateOut]
    next_cursor: str | None


class PreviewIn(InputSchema):
    """Render for a contact of the project (a sample reader when left out), with `data`
    as an API send's data, and a subject to render beside the template."""

    contact_id: str | None = None
    data: dict[str, Any] = {}
    subject: str = ""


class PreviewOut(Schema):
    subject: str
    html: str
    text: str


class DeletedOut(Schema):
    success: bool
    id: str
