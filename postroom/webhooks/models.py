"""Outgoing webhooks: a project's endpoints, and one delivery row per event per endpoint. The
delivery rows are the queue (DESIGN.md): the worker claims the due ones, posts them signed,
and retries with backoff for up to a day."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta as td

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project
from postroom.tracking.models import Event

# What an endpoint can subscribe to. Email events come from the events (tracking); the rest
# are emitted where they happen (webhooks.actions.emit).
EMAIL_TYPES = [f"email.{kind}" for kind in Event.Kind.values if kind != Event.Kind.CUSTOM]
EVENT_TYPES = [
    *EMAIL_TYPES,
    "contact.created",
    "contact.updated",
    "contact.unsubscribed",
    "campaign.started",
    "campaign.paused",
    "campaign.finished",
    "import.finished",
]
TEST_TYPE = "webhook.test"  # the dashboard's and API's "send a test event"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Endpoint(models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="webhook_endpoints")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list)
    # Signs every payload (webhooks.signing); shown to the project's members to verify with.
    secret = models.CharField(max_length=100, default=new_secret)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # Since when every attempt failed (None: the last one succeeded). A day of that disables
    # the endpoint, and its other deliveries wait for its own backoff, not one each.
    failing_since = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.url


class Delivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # due at next_attempt_at, or being posted (claim)
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # gave up: a day of failures, or the endpoint disabled

    project = models.ForeignKey(Project, models.CASCADE, related_name="+", db_index=False)
    endpoint = models.ForeignKey(Endpoint, models.CASCADE, related_name="deliveries")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField(encoder=DjangoJSONEncoder)  # the body, as posted
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claim = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.CharField(max_length=500, blank=True)  # the start of the body
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    GIVE_UP_AFTER = td(hours=24)
    LEASE = td(minutes=2)

    class Meta:
        indexes = [
            # The worker's claim: pending deliveries that are due (webhooks.actions).
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="pending"),
                name="webhooks_delivery_due",
            ),
            # An endpoint's delivery log, newest first.
            models.Index(fields=["endpoint", "id"], name="webhooks_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.endpoint_id} ({self.state})"
