from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Field, Schema

from postroom.lib.apiinput import InputSchema


class CampaignIn(InputSchema):
    """A new draft. Ids are public ids: sender_id a sender's (the project's default sender
    when left out), segment_id a segment's, layout_id a template's with a {{ content }} slot."""

    name: str
    subject: str
    preheader: str = ""
    sender_id: str | None = None
    # Left out: the sender's own address and name.
    from_email: str | None = None
    from_name: str | None = None
    reply_to: str = ""
    audience: str = "all"
    segment_id: str | None = None
    tags: list[str] = Field([], max_length=100)
    body_format: str = "markdown"
    body: str = ""
    layout_id: str | None = None
    text_body: str = ""
    track_links: bool = True
    track_opens: bool = True


class CampaignPatch(InputSchema):
    """Fields left out stay as they are; segment_id or layout_id null removes it. A new
    sender_id without a from_email takes that sender's address."""

    name: str | None = None
    subject: str | None = None
    preheader: str | None = None
    sender_id: str | None = None
    from_email: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    audience: str | None = None
    segment_id: str | None = None
    tags: list[str] | None = Field(None, max_length=100)
    body_format: str | None = None
    body: str | None = None
    layout_id: str | None = None
    text_body: str | None = None
    track_links: bool | None = None
    track_opens: bool | None = None


class CampaignOut(Schema):
    id: str
    name: str
    subject: str
    preheader: str
    state: str
    sender_id: str
    from_email: str
    from_name: str
    reply_to: str
    audience: str
    segment_id: str | None
    tags: list[str]
    body_format: str
    body: str
    layout_id: str | None
    text_body: str
    track_links: bool
    track_opens: bool
    scheduled_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    # How many were snapshotted into the ledger when it started; null before.
    recipients: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CampaignPage(Schema):
    items: list[CampaignOut]
    next_cursor: str | None


class ScheduleIn(InputSchema):
    """`at` with an offset (2030-01-02T09:00:00+01:00), or without one in `time_zone`."""

    at: dt.datetime
    time_zone: str = "UTC"


class RetryIn(InputSchema):
    state: Literal["failed", "deferred"] = "failed"


class RetryOut(Schema):
    success: bool
    queued: int


class TestSendIn(InputSchema):
    to: list[str]


class TestSendOut(Schema):
    success: bool
    to: list[str]
    message_ids: list[str]


class AudienceOut(Schema):
    """Who the audience matches now, and who of them would get it."""

    matches: int
    will_send: int
    not_subscribed: int
    suppressed: int


class ErrorCount(Schema):
    response: str
    count: int


class StatsOut(Schema):
    state: str
    recipients: int | None
    # Recipients per delivery state: queued, sending, sent, deferred, failed, skipped, cancelled.
    counts: dict[str, int]
    total: int
    done: int
    remaining: int
    rate_per_minute: int
    # Seconds left at the rate of the last minute, else at the sender's limits; null: unknown.
    eta_seconds: float | None
    # The most common answers of failed and deferred recipients.
    errors: list[ErrorCount]


class RecipientOut(Schema):
    id: str
    to_email: str
    state: str
    attempts: int
    last_response: str
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    opened_at: dt.datetime | None
    clicked_at: dt.datetime | None
    bounced_at: dt.datetime | None
    complained_at: dt.datetime | None
    updated_at: dt.datetime


class RecipientPage(Schema):
    items: list[RecipientOut]
    next_cursor: str | None


class DeletedOut(Schema):
    success: bool
    id: str
