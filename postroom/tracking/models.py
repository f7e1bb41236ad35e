"""Events: what happened to whom. Email events (opened, clicked, unsubscribed, …) carry
their message; custom events (from `track`, issue 5) their name and data. The events page,
reports and the contact timeline read them (issue 7)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project
from postroom.lib.ids import uuid7


class Event(models.Model):
    class Kind(models.TextChoices):
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        FAILED = "failed", "Failed"
        CUSTOM = "custom", "Custom"

    project = models.ForeignKey(Project, models.CASCADE, related_name="events", db_index=False)
    # The public id (API responses): time-ordered, so the index grows at its end.
    code = models.UUIDField(default=uuid7, unique=True, editable=False)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    name = models.CharField(max_length=100, blank=True)  # a custom event's name
    contact = models.ForeignKey(
        "contacts.Contact", models.SET_NULL, null=True, blank=True, related_name="events"
    )
    message = models.ForeignKey(
        "delivery.Message", models.SET_NULL, null=True, blank=True, related_name="events"
    )
    email = models.ForeignKey(
        "delivery.Email",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        db_index=False,
    )
    url = models.CharField(max_length=2000, blank=True)  # a click's target
    user_agent = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # An open or click that a security scanner or a prefetching proxy probably made, not a
    # person (tracking.scanners): recorded, shown flagged, left out of reports on request.
    machine = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The events page: a project's events, newest first.
            models.Index(fields=["project", "id"], name="tracking_event_page"),
            # A campaign's report: its Email's events by kind.
            models.Index(fields=["email", "kind", "id"], name="tracking_event_email"),
            # The events page filtered by campaign, newest first (bench/events.py at 10M events:
            # 957 -> 30 ms; the index above leads with kind, so it cannot give id order).
            models.Index(fields=["email", "id"], name="tracking_event_email_page"),
            # The events page filtered by a custom event's name (a rare name, or none, read
            # every event without it: 620 -> 15 ms at 10M). Custom events alone carry names.
            models.Index(
                fields=["project", "name", "id"],
                condition=models.Q(kind="custom"),
                name="tracking_event_name",
            ),
            # The events page filtered by a time range, newest first by time (a day a month
            # back walked 3.2M newer ids first: 632 ms at 10M); the overview's recent events.
            models.Index(fields=["project", "created_at", "id"], name="tracking_event_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}".strip()


# Counts rolled up from Event by the worker (tracking.counts), so that a campaign's report and
# the overview's chart read a few hundred rows instead of every event (bench/events.py: 494 and
# 1,360 ms at 10M events). Hours in UTC; a page buckets them into its own days.


class HourCount(models.Model):
    """Events of one kind in one hour (UTC), people's and machines' apart."""

    kind = models.CharField(max_length=12, choices=Event.Kind.choices)
    machine = models.BooleanField(default=False)
    hour = models.DateTimeField()
    events = models.BigIntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.kind} {self.hour:%Y-%m-%d %H}h: {self.events}"


class ProjectCount(HourCount):
    """A project's events by hour and kind. The overview's chart reads these."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [
            # The rollup's upsert target, and the overview's range scan over hours.
            models.UniqueConstraint(
                fields=["project", "hour", "kind", "machine"], name="tracking_projectcount_key"
            )
        ]


class EmailCount(HourCount):
    """A campaign's or automation's Email: its events by hour and kind, and of those how many
    were their message's first of this kind, made by a person (`unique_people`: the report's
    "unique") and by anyone (`unique_all`: the same with scanners' hits in)."""

    email = models.ForeignKey("delivery.Email", models.CASCADE, related_name="+", db_index=False)
    unique_people = models.BigIntegerField(default=0)
    unique_all = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The rollup's upsert target, and the campaign report's read.
            models.UniqueConstraint(
                fields=["email", "hour", "kind", "machine"], name="tracking_emailcount_key"
            )
        ]


class EventStream(models.Model):
    """How far events are safe to read in id order: every event with an id up to `safe_id` is
    committed, and no transaction in progress holds a lower one (tracking.stream). One row (id
    1), made by the migration."""

    safe_id = models.BigIntegerField(default=0)
    # PostgreSQL: the largest id seen at `next_seen_at`, and a transaction id taken a while
    # after; once every transaction older than that one has ended, `next_id` is safe.
    next_id = models.BigIntegerField(default=0)
    next_seen_at = models.DateTimeField(null=True, blank=True)
    next_xid = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"events safe to read through id {self.safe_id}"


class EventCursor(models.Model):
    """How far one reader of the events has got: it has handled every event with an id up to
    `through_id` and none above. Readers: "counts" (tracking.counts), and the worker's other
    readers of new events."""

    name = models.CharField(max_length=30, unique=True)
    through_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name}: through id {self.through_id}"
