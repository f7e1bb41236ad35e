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
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}".strip()
