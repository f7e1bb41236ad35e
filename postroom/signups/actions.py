"""Signups: what a form asks, checking a submission, the confirmation email, confirming.

Nothing a visitor sees may depend on whether their address is already a contact: a
submission is answered alike whether it made a contact, waits for confirmation, was one too
many for the address or came from a bot (signups.public). Only the address's owner, through
the link mailed to it, learns more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta as td
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from postroom.accounts.actions import RateCount, count_api_request
from postroom.accounts.models import Project
from postroom.contacts.actions import (
    ContactChanges,
    ContactError,
    DuplicateContact,
    add_tags,
    clean_data,
    clean_email,
    create_contact,
    field_definitions,
    update_contact,
)
from postroom.contacts.actions import subscribe as subscribe_contact
from postroom.contacts.models import (
    ConsentSource,
    Contact,
    FieldDefinition,
    FieldType,
    Status,
)
from postroom.content.sandbox import RENDER_ERRORS, TemplateProblem, compile_template, render
from postroom.delivery.actions import queue_system_email
from postroom.lib.emails import one_line
from postroom.lib.signing import sign, unsign
from postroom.signups.models import DEFAULT_SUBJECT, DEFAULT_TEXT, Signup, SignupForm
from postroom.tracking.models import Event

log = logging.getLogger(__name__)

# The lib.signing purpose of confirmation links: a token made for another purpose (a click,
# an unsubscribe) never confirms a signup.
CONFIRM = "signup-confirm"
# The hidden field bots fill in and people never see (a plausible name draws more bots).
HONEYPOT = "website"
# Submissions one client address may make to one form in each window of API_RATE_WINDOW
# seconds, counted by accounts' shared rate counter (the one the public API key uses).
SUBMISSIONS_PER_WINDOW = 10
# Signups (and so confirmation emails) of one address on one form in an hour: a stranger who
# types someone's address again and again cannot fill their inbox.
MAX_PER_ADDRESS = 3
PER_ADDRESS_WINDOW = td(hours=1)
NAMES = {"first_name": "First name", "last_name": "Last name"}
NAME_LENGTH = 100


class SignupInvalid(ValueError):
    """A submission that cannot be taken: {field name in the form: what is wrong}."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


# --- what a form asks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    name: str  # the input's name: email, first_name, last_name or data.<key>
    label: str
    kind: str  # email, text, number, date or checkbox
    required: bool


INPUT_KINDS = {
    FieldType.TEXT: "text",
    FieldType.NUMBER: "number",
    FieldType.DATE: "date",
    FieldType.BOOLEAN: "checkbox",
}


def field_choices(project: Project) -> list[tuple[str, str]]:
    """What a form of `project` may ask besides the email, for the dashboard's checkboxes."""
    custom = [
        (f"data.{d.key}", f"{d.label} ({d.get_type_display().lower()})")
        for d in FieldDefinition.objects.filter(project=project).order_by("key")[:200]
    ]
    return [*NAMES.items(), *custom]


def questions(form: SignupForm) -> list[Question]:
    """The form's inputs in order, the email first. A custom field deleted since the form
    was saved is left out."""
    definitions = field_definitions(form.project)
    asked = [Question("email", "Email", "email", True)]
    for name in form.fields:
        required = name in form.required
        if name in NAMES:
            asked.append(Question(name, NAMES[name], "text", required))
            continue
        definition = definitions.get(name.removeprefix("data."))
        if name.startswith("data.") and definition is not None:
            kind = INPUT_KINDS.get(definition.type, "text")
            asked.append(Question(name, definition.label or definition.key, kind, required))
    return asked


@dataclass(frozen=True)
class Item:
    """A question as a page shows it: with what was typed and what is wrong with it."""

    question: Question
    value: str = ""
    error: str = ""


def form_items(
    form: SignupForm, values: Mapping[str, str] | None = None, errors: dict | None = None
) -> list[Item]:
    values, errors = values or {}, errors or {}
    return [
        Item(q, str(values.get(q.name, ""))[:2000], errors.get(q.name, "")) for q in questions(form)
    ]


# --- a submission ------------------------------------------------------------------------------


@dataclass
class Submission:
    email: str
    first_name: str = ""
    last_name: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # custom field key -> stored value

    def as_json(self) -> dict[str, Any]:
        return {"first_name": self.first_name, "last_name": self.last_name, "data": self.data}


def clean_submission(form: SignupForm, post: Mapping[str, str]) -> Submission:
    """The posted values checked as contacts.actions checks a contact's (the address, the
    names, each custom field by its type). Raises SignupInvalid naming every bad field."""
    errors: dict[str, str] = {}
    submission = Submission(email="")
    for question in questions(form):
        raw = post.get(question.name, "")
        try:
            value = clean_answer(form.project, question, raw)
        except ContactError as e:
            errors[question.name] = e.message
            continue
        if question.required and (value is None or value == ""):
            errors[question.name] = "This field is required."
        elif question.name == "email":
            submission.email = value
        elif question.name in NAMES:
            setattr(submission, question.name, value)
        elif value is not None:
            submission.data[question.name.removeprefix("data.")] = value
    if errors:
        raise SignupInvalid(errors)
    return submission


def clean_answer(project: Project, question: Question, raw: str) -> Any:
    """One answer as it would be stored, or ContactError. An empty answer is None or ""."""
    if question.name == "email":
        return clean_email(raw) if raw.strip() else ""
    if question.name in NAMES:
        value = one_line(raw)  # names may end up in headers: never a line break
        if len(value) > NAME_LENGTH:
            raise ContactError(question.name, f"At most {NAME_LENGTH} characters.")
        return value
    key = question.name.removeprefix("data.")
    try:
        return clean_data(project, {key: raw}, create_fields=False)[key]
    except ContactError as e:
        raise ContactError(question.name, e.message[:1].upper() + e.message[1:]) from None


@dataclass
class Visitor:
    """Who submitted, for the consent record."""

    ip: str | None = None
    user_agent: str = ""
    referrer: str = ""


def count_submission(form: SignupForm, ip: str | None) -> RateCount:
    """This submission counted against the form's limit for the client address."""
    return count_api_request(f"signup:{form.code.hex}:{ip or '-'}", SUBMISSIONS_PER_WINDOW)


def too_many_for_address(form: SignupForm, email: str) -> bool:
    since = timezone.now() - PER_ADDRESS_WINDOW
    recent = Signup.objects.filter(form=form, email=email, created_at__gte=since)
    return recent.count() >= MAX_PER_ADDRESS


def submit(form: SignupForm, submission: Submission, visitor: Visitor) -> Signup | None:
    """Take a checked submission: a pending signup and its confirmation email (double
    opt-in, or an address that opted out before: only its owner may undo that), else the
    contact at once. None when dropped (too many for the address)."""
    signup = Signup(
        form=form,
        email=submission.email,
        submitted=submission.as_json(),
        ip=visitor.ip,
        user_agent=visitor.user_agent[:300],
        referrer=visitor.referrer[:500],
    )
    contact = Contact.objects.filter(project=form.project, email=submission.email).first()
    mail = None
    if form.double_opt_in or (contact is not None and contact.status != Status.SUBSCRIBED):
        # Rendered first: on SQLite the write lock is then held for the writes alone.
        mail = render_confirmation(form, confirmation_context(signup))
    with transaction.atomic():
        if too_many_for_address(form, submission.email):
            return None
        if mail is not None:
            signup.message = queue_system_email(form.project, contact, *mail, to_email=signup.email)
        else:
            signup.confirmed_at = timezone.now()
        signup.save()
        if mail is None:
            subscribe(signup, by_owner=False)
    return signup


# --- the confirmation email ------------------------------------------------------------------


def confirm_url(signup: Signup) -> str:
    return f"{settings.SITE_URL}/f/confirm/{sign(CONFIRM, signup.code)}"


def signup_for_token(token: str) -> Signup | None:
    code = unsign(CONFIRM, token)
    if code is None:
        return None
    return Signup.objects.select_related("form__project").filter(code=code).first()


def confirmation_context(signup: Signup) -> dict[str, Any]:
    """What the confirmation templates may read: plain data only (content.sandbox)."""
    form, submitted = signup.form, signup.submitted
    return {
        "project": {"name": form.project.name},
        "form": {"name": form.name, "title": form.heading},
        "contact": {
            "email": signup.email,
            "first_name": submitted.get("first_name", ""),
            "last_name": submitted.get("last_name", ""),
            "data": dict(submitted.get("data", {})),
        },
        "confirm_url": confirm_url(signup),
    }


def render_confirmation(form: SignupForm, context: dict[str, Any]) -> tuple[str, str]:
    """The subject (one line: it is a header) and the text, always with the link."""
    try:
        subject = render(compile_template(form.confirm_subject, html=False), context)
        text = render(compile_template(form.confirm_text, html=False), context)
    except (TemplateProblem, *RENDER_ERRORS) as e:
        # Checked when saved; a render can still fail on a visitor's values: the defaults.
        log.warning("signup form %s: confirmation email fell back to the default: %s", form, e)
        subject = render(compile_template(DEFAULT_SUBJECT, html=False), context)
        text = render(compile_template(DEFAULT_TEXT, html=False), context)
    if context["confirm_url"] not in text:
        text = f"{text.rstrip()}\n\n{context['confirm_url']}\n"
    subject = one_line(subject)[:200] or f"Please confirm your subscription to {form.project}"
    return subject, text


# --- confirming ----------------------------------------------------------------------------------


def confirm(signup: Signup) -> Contact | None:
    """The address's owner opened the link and confirmed: subscribe them. A second
    confirmation changes nothing. Returns the contact."""
    with transaction.atomic():
        now = timezone.now()
        claimed = Signup.objects.filter(pk=signup.pk, confirmed_at=None).update(confirmed_at=now)
        if claimed != 1:  # confirmed already, maybe by another click a moment ago
            signup.refresh_from_db()
            return signup.contact
        signup.confirmed_at = now
        return subscribe(signup, by_owner=True)


def subscribe(signup: Signup, by_owner: bool) -> Contact:
    """Create or update the contact from a confirmed signup, apply the form's tags and record
    the custom event automations start from. `by_owner`: confirmed through the emailed link,
    so the submitted values win and consent is recorded anew; otherwise (no double opt-in) an
    existing contact keeps what it has and only gains what it lacked."""
    project = signup.form.project
    data = still_defined(project, signup.submitted.get("data", {}))
    contact = Contact.objects.filter(project=project, email=signup.email).first()
    if contact is None:
        contact = create_from_signup(signup, data, by_owner)
    else:
        update_from_signup(contact, signup, data, by_owner)
        add_tags(contact, signup.form.tags)
    signup.contact = contact
    signup.save(update_fields=["contact"])
    record_event(signup, contact, by_owner)
    return contact


def create_from_signup(signup: Signup, data: dict[str, Any], by_owner: bool) -> Contact:
    form, submitted = signup.form, signup.submitted
    try:
        with transaction.atomic():
            contact = create_contact(
                form.project,
                signup.email,
                first_name=submitted.get("first_name", ""),
                last_name=submitted.get("last_name", ""),
                data=data,
                tags=form.tags,
                consent_source=ConsentSource.FORM,
                consent_ip=signup.ip,
            )
    except DuplicateContact:  # created by a request running beside this one: update it
        contact = Contact.objects.get(project=form.project, email=signup.email)
        update_from_signup(contact, signup, data, by_owner)
        add_tags(contact, form.tags)
        return contact
    # Consent was given when the signup was confirmed, to the microsecond.
    contact.consent_at = signup.confirmed_at
    Contact.objects.filter(pk=contact.pk).update(consent_at=contact.consent_at)
    return contact


def still_defined(project: Project, data: dict[str, Any]) -> dict[str, Any]:
    """Submitted custom values whose field still exists with a type they fit: a field
    deleted or retyped between submission and confirmation loses its value, not the signup."""
    definitions = field_definitions(project)
    kept = {}
    for key, value in data.items():
        definition = definitions.get(key)
        if definition is None:
            continue
        try:
            kept[key] = definition.coerce(value)
        except ValueError:
            continue
    return {k: v for k, v in kept.items() if v is not None}


def update_from_signup(
    contact: Contact, signup: Signup, data: dict[str, Any], by_owner: bool
) -> None:
    submitted, form = signup.submitted, signup.form
    if by_owner and contact.status not in (Status.BOUNCED, Status.COMPLAINED):
        # Their own request, confirmed: it undoes an opt-out (and the suppression kept for
        # it). A bounce or a complaint stays: mail to such an address hurts every send.
        subscribe_contact(contact, f"Subscribed through the form {form.name}", signup.ip)
        contact.consent_at = signup.confirmed_at
        contact.consent_source, contact.consent_ip = ConsentSource.FORM, signup.ip
    names = {
        name: value
        for name in NAMES
        if (value := submitted.get(name, "")) and (by_owner or not getattr(contact, name))
    }
    changes = ContactChanges(
        **names, data={k: v for k, v in data.items() if by_owner or k not in contact.data}
    )
    update_contact(contact, changes)  # saves the consent too


def record_event(signup: Signup, contact: Contact, by_owner: bool) -> Event:
    """The custom event (the form's event name, "signup confirmed" by default) that an
    automation such as a welcome series starts from."""
    form = signup.form
    return Event.objects.create(
        project=form.project,
        kind=Event.Kind.CUSTOM,
        name=form.event_name,
        contact=contact,
        data={
            "form": form.name,
            "form_code": str(form.code),
            "signup": str(signup.code),
            "confirmed_by_email": by_owner,
        },
        created_at=signup.confirmed_at or timezone.now(),
    )


# Unconfirmed signups are kept this long (their link works for Signup.CONFIRM_WITHIN), so the
# dashboard can show who never confirmed; then their address, IP and answers go.
KEEP_UNCONFIRMED = td(days=30)


def prune_signups() -> int:
    """Periodic (worker): forget signups never confirmed within KEEP_UNCONFIRMED."""
    old = Signup.objects.filter(confirmed_at=None, created_at__lt=timezone.now() - KEEP_UNCONFIRMED)
    deleted, _ = old.delete()
    return deleted
