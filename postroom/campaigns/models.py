"""Campaigns: one Email to an audience snapshotted into the delivery ledger."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project


class Campaign(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        # Stopped; the worker is marking the recipients not yet sent to as cancelled.
        CANCELLING = "cancelling", "Cancelling"
        CANCELLED = "cancelled", "Cancelled"
        FINISHED = "finished", "Finished"

    class Audience(models.TextChoices):
        ALL = "all", "All subscribed contacts"
        SEGMENT = "segment", "A segment"
        TAGS = "tags", "Contacts with any of these tags"

    class Format(models.TextChoices):
        MARKDOWN = "markdown", "Markdown"
        HTML = "html", "HTML"
        MJML = "mjml", "MJML (responsive)"
        TEXT = "text", "Plain text"

    project = models.ForeignKey(Project, models.CASCADE, related_name="campaigns")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=300)
    preheader = models.CharField(max_length=200, blank=True)
    sender = models.ForeignKey("delivery.Sender", models.PROTECT, related_name="campaigns")
    from_email = models.CharField(max_length=254)
    from_name = models.CharField(max_length=100, blank=True)
    reply_to = models.CharField(max_length=254, blank=True)
    audience = models.CharField(max_length=10, choices=Audience.choices, default=Audience.ALL)
    segment = models.ForeignKey(
        "contacts.Segment", models.SET_NULL, null=True, blank=True, related_name="campaigns"
    )
    tags = models.JSONField(default=list, blank=True)
    body_format = models.CharField(max_length=10, choices=Format.choices, default=Format.MARKDOWN)
    body = models.TextField(blank=True)
    # A template with a {{ content }} slot that the body goes in (HTML or MJML).
    layout = models.ForeignKey(
        "content.Template", models.PROTECT, null=True, blank=True, related_name="campaigns"
    )
    # The plain-text part as written; empty: made from the HTML.
    text_body = models.TextField(blank=True)
    # Links through the signed click redirect, and an open pixel (content.render).
    track_links = models.BooleanField(default=True)
    track_opens = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # The Email every recipient's Message points at, made when the campaign starts.
    email = models.OneToOneField(
        "delivery.Email", models.SET_NULL, null=True, blank=True, related_name="campaign"
    )
    recipients = models.IntegerField(null=True, blank=True)
    # Set by campaigns.stalls when the campaign could send but made no progress.
    stalled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("accounts.User", models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The worker's start and finish steps (campaigns.actions).
            models.Index(fields=["state", "scheduled_at"], name="campaigns_due"),
            models.Index(fields=["project", "id"], name="campaigns_page"),
        ]

    def __str__(self) -> str:
        return self.name

    def is_editable(self) -> bool:
        return self.state in (self.State.DRAFT, self.State.SCHEDULED)
