"""What each kind of step needs in its config, checked when the step is saved (clean_config),
and what it does to a run (perform). A step returns where the run goes next: the following
step at once, a later time, another step, or the end.

    wait          {"amount": 3, "unit": "days"}  or  {"until": "09:00", "zone": "contact"}
    condition     {"test": "segment", "segment": <code>} | {"test": "tag", "tag": "vip"} |
                  {"test": "event", "event": "purchase", "within_days": 7}
                  and "else": "exit" or the number of a later step to go to when it fails
    send          {"subject": "...", "body": "markdown", "template": <code of a template>}
    add_tag       {"tag": "onboarded"}            remove_tag  {"tag": "trial"}
    update_field  {"field": "first_name" | a custom field's key, "value": "..."}
    webhook       {"endpoint": <code of a webhook endpoint>}: posts `automation.step`
    exit          {}

A wait "until" a time of day takes the contact's time zone from their `timezone` field (an IANA
name such as "Europe/Paris"), else the project's (its settings page), or the project's always
with "zone": "project".
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from postroom.automations.models import Automation, Run, Step
from postroom.contacts.models import Contact, ContactTag, Segment

UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
MAX_WAIT_DAYS = 365


class StepError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass
class Next:
    """Where a run goes after a step: `position` (None: the end), at `at` (None: now)."""

    position: int | None
    at: dt.datetime | None = None
    note: str = ""


# --- checking configs -------------------------------------------------------------------------


def clean_config(automation: Automation, kind: str, config: dict, position: int) -> dict:
    config = config if isinstance(config, dict) else {}
    cleaner = CLEANERS.get(kind)
    if cleaner is None:
        raise StepError("kind", f"must be one of {Step.Kind.values}.")
    return cleaner(automation, config, position)


def _text(config: dict, key: str, limit: int = 100) -> str:
    value = str(config.get(key) or "").strip()
    if not value:
        raise StepError(key, "required.")
    if len(value) > limit or any(c in value for c in "\r\n"):
        raise StepError(key, f"one line of at most {limit} characters.")
    return value


def clean_wait(automation: Automation, config: dict, position: int) -> dict:
    if config.get("until"):
        until = str(config["until"]).strip()
        if not TIME_OF_DAY.fullmatch(until):
            raise StepError("until", "a time of day as HH:MM, 00:00 to 23:59.")
        zone = config.get("zone") or "contact"
        if zone not in ("contact", "project"):
            raise StepError("zone", "contact or project.")
        return {"until": until, "zone": zone}
    try:
        amount = int(config.get("amount"))
    except (TypeError, ValueError):
        raise StepError("amount", "a whole number.") from None
    unit = config.get("unit") or "days"
    if not isinstance(unit, str) or unit not in UNITS:
        raise StepError("unit", f"one of {list(UNITS)}.")
    if not 1 <= amount * UNITS[unit] <= MAX_WAIT_DAYS * 86400:
        raise StepError("amount", f"from 1 {unit[:-1]} to {MAX_WAIT_DAYS} days.")
    return {"amount": amount, "unit": unit}


def clean_condition(automation: Automation, config: dict, position: int) -> dict:
    test = config.get("test")
    cleaned: dict = {"test": test}
    if test == "segment":
        segment = Segment.objects.filter(
            project=automation.project, code=_uuid(config.get("segment"), "segment")
        ).first()
        if segment is None:
            raise StepError("segment", "no such segment in this project.")
        cleaned["segment"] = str(segment.code)
    elif test == "tag":
        cleaned["tag"] = _text(config, "tag")
    elif test == "event":
        cleaned["event"] = _text(config, "event")
        if config.get("within_days") not in (None, ""):
            try:
                cleaned["within_days"] = int(config["within_days"])
            except (TypeError, ValueError):
                raise StepError("within_days", "a whole number of days.") from None
            if not 1 <= cleaned["within_days"] <= MAX_WAIT_DAYS:
                raise StepError("within_days", f"from 1 to {MAX_WAIT_DAYS}.")
    else:
        raise StepError("test", "segment, tag or event.")
    otherwise = config.get("else") or "exit"
    if otherwise != "exit":
        try:
            target = int(otherwise)  # the step's number as shown: 1 is the first
        except (TypeError, ValueError):
            raise StepError("else", "exit, or the number of a later step.") from None
        if target <= position + 1:
            raise StepError("else", "must be a later step than this one.")
        otherwise = target
    cleaned["else"] = otherwise
    return cleaned


def clean_send(automation: Automation, config: dict, position: int) -> dict:
    from postroom.content.models import Template

    cleaned = {"subject": _text(config, "subject", 998)}
    if config.get("template"):
        template = Template.objects.filter(
            project=automation.project, code=_uuid(config["template"], "template")
        ).first()
        if template is None:
            raise StepError("template", "no such template in this project.")
        cleaned["template"] = str(template.code)
    body = str(config.get("body") or "")
    if not body.strip() and "template" not in cleaned:
        raise StepError("body", "write the email, or choose a template.")
    cleaned["body"] = body
    return cleaned


def clean_tag(automation: Automation, config: dict, position: int) -> dict:
    return {"tag": _text(config, "tag")}


def clean_update_field(automation: Automation, config: dict, position: int) -> dict:
    from postroom.contacts.models import FieldDefinition

    field = _text(config, "field")
    known = {"first_name", "last_name"} | set(
        FieldDefinition.objects.filter(project=automation.project).values_list("key", flat=True)
    )
    if field not in known:
        raise StepError("field", "first_name, last_name or one of the project's custom fields.")
    return {"field": field, "value": str(config.get("value") or "")[:1000]}


def clean_webhook(automation: Automation, config: dict, position: int) -> dict:
    from postroom.webhooks.models import Endpoint

    endpoint = Endpoint.objects.filter(
        project=automation.project, code=_uuid(config.get("endpoint"), "endpoint")
    ).first()
    if endpoint is None:
        raise StepError("endpoint", "no such webhook endpoint in this project.")
    return {"endpoint": str(endpoint.code)}


def clean_exit(automation: Automation, config: dict, position: int) -> dict:
    return {}


def _uuid(value, field: str):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise StepError(field, "choose one.") from None


CLEANERS = {
    Step.Kind.WAIT: clean_wait,
    Step.Kind.CONDITION: clean_condition,
    Step.Kind.SEND: clean_send,
    Step.Kind.ADD_TAG: clean_tag,
    Step.Kind.REMOVE_TAG: clean_tag,
    Step.Kind.UPDATE_FIELD: clean_update_field,
    Step.Kind.WEBHOOK: clean_webhook,
    Step.Kind.EXIT: clean_exit,
}


def describe(step: Step) -> str:
    """One line saying what the step does, for the editor and the runs page."""
    c = step.config
    if step.kind == Step.Kind.WAIT:
        if c.get("until"):
            whose = "their" if c["zone"] == "contact" else "the project's"
            return f"Wait until {c['until']} ({whose} time)"
        unit = c["unit"] if c["amount"] != 1 else c["unit"][:-1]
        return f"Wait {c['amount']} {unit}"
    if step.kind == Step.Kind.CONDITION:
        test = {
            "segment": "is in the segment",
            "tag": f"has the tag “{c.get('tag')}”",
            "event": f"did “{c.get('event')}”"
            + (f" in the last {c['within_days']} days" if c.get("within_days") else ""),
        }[c["test"]]
        otherwise = "exit" if c["else"] == "exit" else f"go to step {c['else']}"
        return f"If the contact {test}, go on; else {otherwise}"
    if step.kind == Step.Kind.SEND:
        return f"Send “{c['subject']}”"
    if step.kind in (Step.Kind.ADD_TAG, Step.Kind.REMOVE_TAG):
        return f"{'Add' if step.kind == Step.Kind.ADD_TAG else 'Remove'} the tag “{c['tag']}”"
    if step.kind == Step.Kind.UPDATE_FIELD:
        return f"Set {c['field']} to “{c['value']}”"
    if step.kind == Step.Kind.WEBHOOK:
        return "Call the webhook endpoint"
    return "Exit"


# --- running ----------------------------------------------------------------------------------


def perform(run: Run, step: Step, contact: Contact) -> Next:
    return PERFORMERS[step.kind](run, step, contact)


def wait(run: Run, step: Step, contact: Contact) -> Next:
    c, now = step.config, timezone.now()
    if not c.get("until"):
        return Next(step.position + 1, now + dt.timedelta(seconds=c["amount"] * UNITS[c["unit"]]))
    zone = contact_zone(contact) if c["zone"] == "contact" else project_zone(contact)
    hour, minute = (int(part) for part in c["until"].split(":"))
    local = now.astimezone(zone)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= local:
        at = (local + dt.timedelta(days=1)).replace(hour=hour, minute=minute, second=0)
    return Next(step.position + 1, at.astimezone(dt.UTC))


def contact_zone(contact: Contact) -> zoneinfo.ZoneInfo:
    """The contact's `timezone` field (an IANA name), else their project's time zone."""
    name = str((contact.data or {}).get("timezone") or "")
    try:
        return zoneinfo.ZoneInfo(name) if name else project_zone(contact)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return project_zone(contact)


def project_zone(contact: Contact) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(contact.project.time_zone or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def condition(run: Run, step: Step, contact: Contact) -> Next:
    if holds(step.config, contact):
        return Next(step.position + 1)
    otherwise = step.config["else"]
    if otherwise == "exit":
        return Next(None, note="The condition did not hold: exited.")
    return Next(otherwise - 1)


def holds(config: dict, contact: Contact) -> bool:
    from postroom.contacts.rules import segment_contacts
    from postroom.tracking.models import Event

    if config["test"] == "segment":
        segment = Segment.objects.filter(project_id=contact.project_id, code=config["segment"])
        segment = segment.first()
        if segment is None:  # deleted since: no one is in it
            return False
        return segment_contacts(contact.project, segment.rules).filter(pk=contact.pk).exists()
    if config["test"] == "tag":
        return ContactTag.objects.filter(contact=contact, tag__name=config["tag"]).exists()
    events = Event.objects.filter(contact=contact).filter(**event_match(config["event"]))
    if config.get("within_days"):
        events = events.filter(
            created_at__gte=timezone.now() - dt.timedelta(days=config["within_days"])
        )
    return events.exists()


def event_match(name: str) -> dict:
    """The Event filter for a trigger or condition's event: "email.opened" is an email event
    of that kind, anything else a custom event's name."""
    if name.startswith("email."):
        return {"kind": name.removeprefix("email.")}
    return {"kind": "custom", "name": name}


def send(run: Run, step: Step, contact: Contact) -> Next:
    from postroom.automations.actions import queue_step_email

    message = queue_step_email(run, step, contact)
    note = "" if message else "Not sent: the contact is not subscribed."
    return Next(step.position + 1, note=note)


def tag(run: Run, step: Step, contact: Contact) -> Next:
    from postroom.contacts.actions import add_tags

    if step.kind == Step.Kind.ADD_TAG:
        add_tags(contact, [step.config["tag"]])
    else:
        ContactTag.objects.filter(contact=contact, tag__name=step.config["tag"]).delete()
    return Next(step.position + 1)


def update_field(run: Run, step: Step, contact: Contact) -> Next:
    from postroom.contacts.actions import ContactChanges, update_contact

    field, value = step.config["field"], step.config["value"]
    if field in ("first_name", "last_name"):
        changes = ContactChanges(**{field: value})
    else:
        changes = ContactChanges(data={field: value})
    update_contact(contact, changes)
    return Next(step.position + 1)


def webhook(run: Run, step: Step, contact: Contact) -> Next:
    from postroom.automations.actions import call_webhook

    call_webhook(run, step, contact)
    return Next(step.position + 1)


def exit_(run: Run, step: Step, contact: Contact) -> Next:
    return Next(None)


PERFORMERS = {
    Step.Kind.WAIT: wait,
    Step.Kind.CONDITION: condition,
    Step.Kind.SEND: send,
    Step.Kind.ADD_TAG: tag,
    Step.Kind.REMOVE_TAG: tag,
    Step.Kind.UPDATE_FIELD: update_field,
    Step.Kind.WEBHOOK: webhook,
    Step.Kind.EXIT: exit_,
}
