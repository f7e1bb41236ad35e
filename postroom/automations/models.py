"""Automations: when a contact does something (an event), gets a tag or enters a segment, run
them through steps: wait, check, send, tag, update a field, call a webhook. Each contact's
journey is a Run, a row the worker claims when it is due, like a message (DESIGN.md)."""

from __future__ import annotations

import uuid
from datetime import timedelta as td

from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project


class Automation(models.Model):
    class Trigger(models.TextChoices):
        EVENT = "event", "An event happens"
        TAG = "tag", "A tag is added"
        SEGMENT = "segment", "The contact enters a segment"

    class Repeat(models.TextChoices):
        ONCE = "once", "Once per contact"
        EVERY_TIME = "every", "Every time"

    project = models.ForeignKey(Project, models.CASCADE, related_name="automations")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.EVENT)
    # EVENT: a custom event's name ("signup confirmed"), or an email event ("email.opened").
    trigger_event = models.CharField(max_length=100, blank=True)
    trigger_tag = models.CharField(max_length=100, blank=True)
    trigger_segment = models.ForeignKey(
        "contacts.Segment", models.PROTECT, null=True, blank=True, related_name="+"
    )
    repeat = models.CharField(max_length=5, choices=Repeat.choices, default=Repeat.ONCE)
    # A run still waiting is cancelled when its contact does this (a custom event's name).
    cancel_event = models.CharField(max_length=100, blank=True)
    # What "send email" steps send through; None: the project's default sender.
    sender = models.ForeignKey(
        "delivery.Sender", models.PROTECT, null=True, blank=True, related_name="+"
    )
    enabled = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Step(models.Model):
    """One step of an automation; `position` orders them from 0. What each kind reads from
    `config` is in automations.steps."""

    class Kind(models.TextChoices):
        WAIT = "wait", "Wait"
        CONDITION = "condition", "Check a condition"
        SEND = "send", "Send an email"
        ADD_TAG = "add_tag", "Add a tag"
        REMOVE_TAG = "remove_tag", "Remove a tag"
        UPDATE_FIELD = "update_field", "Update a field"
        WEBHOOK = "webhook", "Call a webhook"
        EXIT = "exit", "Exit"

    automation = models.ForeignKey(Automation, models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True)
    # SEND: the email as prepared for sending, made again when the step is edited; one Email
    # for every contact the step sends to, so its report counts them together.
    email = models.ForeignKey(
        "delivery.Email", models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["automation", "position"], name="automations_step_position"
            )
        ]
        ordering = ["position"]

    def __str__(self) -> str:
        return f"{self.position + 1}. {self.get_kind_display()}"


class Run(models.Model):
    """One contact going through one automation."""

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting"  # for next_run_at (now, for a run just started)
        DONE = "done", "Done"  # reached the end or an exit step
        CANCELLED = "cancelled", "Cancelled"  # by its cancel event, or the automation
        FAILED = "failed", "Failed"  # a step could not run: last_error says why

    project = models.ForeignKey(Project, models.CASCADE, related_name="+", db_index=False)
    automation = models.ForeignKey(Automation, models.CASCADE, related_name="runs")
    contact = models.ForeignKey("contacts.Contact", models.CASCADE, related_name="automation_runs")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING)
    position = models.PositiveSmallIntegerField(default=0)  # the next step to run
    next_run_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    # What started it: the event's name and data, for templates ({{ event.data.plan }}).
    trigger = models.JSONField(default=dict, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    LEASE = td(minutes=2)

    class Meta:
        indexes = [
            # The worker's claim: waiting runs that are due (automations.actions).
            models.Index(
                fields=["next_run_at"],
                condition=models.Q(state="waiting"),
                name="automations_run_due",
            ),
            # An automation's runs, newest first; "once per contact" and the cancel event.
            models.Index(fields=["automation", "contact"], name="automations_run_contact"),
            models.Index(fields=["automation", "id"], name="automations_run_page"),
        ]

    def __str__(self) -> str:
        return f"{self.automation_id}/{self.contact_id} ({self.state})"


class SegmentMember(models.Model):
    """Who was in a segment-triggered automation's segment when it last looked: a contact
    missing here and in the segment now has entered it."""

    automation = models.ForeignKey(Automation, models.CASCADE, related_name="+")
    contact = models.ForeignKey("contacts.Contact", models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["automation", "contact"], name="automations_segmentmember_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.automation_id}/{self.contact_id}"
