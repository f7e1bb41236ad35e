"""Signup forms and the signups they take.

A SignupForm is hosted at /f/<code> and can be embedded anywhere as a plain HTML form posting
there. Every accepted submission is a Signup row: with double opt-in it stays pending until
the address opens the signed link in its confirmation email, and the row keeps the consent
record (when, from which IP and browser, on which form, when confirmed) beside the contact's
own consent fields.
"""

from __future__ import annotations

import uuid
from datetime import timedelta as td

from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project

DEFAULT_SUBJECT = "Please confirm your subscription to {{ project.name }}"
# Without what visitors typed besides the address: anyone can type anyone's address, and the
# email must not carry a stranger's words (a link in a "name") to its owner.
DEFAULT_TEXT = """Hello,

please confirm that you want to receive email from {{ project.name }} at {{ contact.email }}:

{{ confirm_url }}

If you did not ask for this, ignore this email: you will not be added to any list.
"""
DEFAULT_EVENT = "signup confirmed"


class SignupForm(models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="signup_forms")
    # The public id, in the hosted page's URL and the embed snippet.
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    # The hosted page's heading (the name when empty) and the text under it.
    title = models.CharField(max_length=200, blank=True)
    intro = models.TextField(max_length=2000, blank=True)
    # What the form asks besides the email, in order: "first_name", "last_name" and custom
    # fields as "data.<key>"; `required` lists those that must be filled in.
    fields = models.JSONField(default=list, blank=True)
    required = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)  # tag names given on confirmation
    button_label = models.CharField(max_length=50, default="Subscribe")
    double_opt_in = models.BooleanField(default=True)
    # Sandboxed templates over plain data (signups.actions.confirmation_context).
    confirm_subject = models.CharField(max_length=200, default=DEFAULT_SUBJECT)
    confirm_text = models.TextField(max_length=10_000, default=DEFAULT_TEXT)
    # After a submission and after a confirmation: a message on our page, or a redirect.
    success_message = models.TextField(max_length=2000, blank=True)
    success_url = models.URLField(max_length=2000, blank=True)
    confirmed_message = models.TextField(max_length=2000, blank=True)
    confirmed_url = models.URLField(max_length=2000, blank=True)
    # The custom event recorded for each confirmed signup: automations start from it.
    event_name = models.CharField(max_length=100, default=DEFAULT_EVENT)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def heading(self) -> str:
        return self.title or self.name

    def success_text(self) -> str:
        if self.success_message:
            return self.success_message
        if self.double_opt_in:
            return "Almost done: we sent you an email. Open the link in it to confirm."
        return "Thank you: you are subscribed."

    def confirmed_text(self) -> str:
        return self.confirmed_message or "Thank you: your subscription is confirmed."


class Signup(models.Model):
    """One accepted submission of a form: pending until confirmed (double opt-in), or
    confirmed at once."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        CONFIRMED = "confirmed", "Confirmed"
        EXPIRED = "expired", "Not confirmed in time"

    # A confirmation link older than this is refused: sign up again.
    CONFIRM_WITHIN = td(days=7)

    form = models.ForeignKey(SignupForm, models.CASCADE, related_name="signups", db_index=False)
    # Signed into the confirmation link (signups.actions.confirm_url).
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.CharField(max_length=254)
    # What was submitted, checked: {"first_name": …, "last_name": …, "data": {key: value}}.
    submitted = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # The page the form was on, as the browser said (often only its origin).
    referrer = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The contact it made or updated once confirmed. Erasing the contact erases this record.
    contact = models.ForeignKey(
        "contacts.Contact", models.CASCADE, null=True, blank=True, related_name="signups"
    )
    # The confirmation email, to show whether it went out.
    message = models.ForeignKey(
        "delivery.Message", models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        indexes = [
            # The form's page: its signups, newest first (keyset pages).
            models.Index(fields=["form", "id"], name="signups_signup_page"),
            # signups.actions.too_many_for_address: recent confirmation emails to an address.
            models.Index(fields=["form", "email", "created_at"], name="signups_signup_address"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.state})"

    @property
    def state(self) -> str:
        if self.confirmed_at is not None:
            return self.State.CONFIRMED
        if self.is_expired():
            return self.State.EXPIRED
        return self.State.PENDING

    def get_state_display(self) -> str:
        return self.State(self.state).label

    def is_expired(self) -> bool:
        return self.created_at < timezone.now() - self.CONFIRM_WITHIN
