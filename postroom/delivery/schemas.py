from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from ninja import Field, Schema

from postroom.lib.apiinput import InputSchema


class RecipientIn(InputSchema):
    email: str = Field(max_length=254)
    name: str = Field("", max_length=100)


class AttachmentIn(InputSchema):
    filename: str = Field(max_length=255)
    content: str = Field(description="The file, base64-encoded.")
    content_type: str = Field("", max_length=100, description="Guessed from the name if left out.")
    contentType: str = Field("", max_length=100, description="Plunk's spelling of content_type.")


class SendIn(InputSchema):
    """Plunk's body, and a few fields of ours (sender, skip_unsubscribed, track_*)."""

    to: str | RecipientIn | list[str | RecipientIn]
    subject: str = Field(max_length=998)
    body: str = Field("", max_length=1_000_000)
    type: Literal["html", "markdown", "text"] = "html"
    from_: str = Field("", alias="from", max_length=254)
    name: str | None = Field(None, max_length=100, description="The sender's name.")
    reply: str = Field("", max_length=254, description="Reply-To address.")
    subscribed: bool = Field(False, description="Subscribe the recipients to marketing mail.")
    headers: dict[str, str] = {}
    attachments: list[AttachmentIn] = []
    template: str | None = Field(None, description="A template's id: the email, or its layout.")
    data: dict[str, Any] = Field({}, description="Values for the templates: {{ data.key }}.")
    sender: str | None = Field(None, description="A sender's id; the default sender if left out.")
    skip_unsubscribed: bool = Field(
        False, description="Leave out recipients who unsubscribed from marketing mail."
    )
    track_opens: bool = True
    track_links: bool = True


class SentContactOut(Schema):
    id: str
    email: str


class SentOut(Schema):
    contact: SentContactOut
    email: str = Field(description="The message's id: GET /api/v1/messages/{id}.")


class SendOut(Schema):
    success: bool
    emails: list[SentOut]
    timestamp: dt.datetime


class MessageEventOut(Schema):
    id: str
    kind: str
    url: str
    created_at: dt.datetime


class MessageOut(Schema):
    id: str
    kind: str
    to: str
    to_name: str
    contact: SentContactOut | None
    subject: str
    from_email: str
    state: str
    attempts: int
    last_response: str
    provider_id: str
    maybe_duplicate: bool
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    opened_at: dt.datetime | None
    clicked_at: dt.datetime | None
    bounced_at: dt.datetime | None
    complained_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class MessageDetailOut(MessageOut):
    events: list[MessageEventOut]


class MessagePage(Schema):
    items: list[MessageOut]
    next_cursor: str | None


class SenderOut(Schema):
    id: str
    name: str
    kind: str
    is_default: bool
    from_email: str
    from_name: str
    from_domains: list[str]
    host: str
    port: int | None
    security: str
    username: str
    pool_size: int
    per_second: int | None
    per_minute: int | None
    per_hour: int | None
    per_day: int | None
    paused_reason: str
    paused_at: dt.datetime | None
    created_at: dt.datetime
