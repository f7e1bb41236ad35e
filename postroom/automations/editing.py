"""What the automation editor and the API share on top of automations.actions: the trigger in
words, where runs are, suggestions for event names, step configs from form fields. (Edits that
keep step numbers meaning the same step are actions.insert_step, remove_step and swap_step.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q
from django.utils import timezone

from postroom.automations import actions
from postroom.automations.actions import AutomationError
from postroom.automations.models import Automation, Run, Step
from postroom.automations.steps import describe
from postroom.delivery.models import Sender
from postroom.lib.scoping import find_in_project
from postroom.tracking.models import Event

EMAIL_EVENTS = [f"email.{kind}" for kind in Event.Kind.values if kind != Event.Kind.CUSTOM]
# How many of a project's newest events are read for custom event names to suggest: enough for
# the names in use, bounded so that a project of millions of email events pays the same.
RECENT_EVENTS = 5000
STATES = [state for state, _ in Run.State.choices]


# --- reading ------------------------------------------------------------------------------------


def trigger_text(automation: Automation) -> str:
    """The trigger in words, for the list and the editor."""
    if automation.trigger == Automation.Trigger.TAG:
        return f"When the tag “{automation.trigger_tag}” is added"
    if automation.trigger == Automation.Trigger.SEGMENT:
        segment = automation.trigger_segment
        return f"When a contact enters the segment “{segment.name if segment else '?'}”"
    name = automation.trigger_event
    if name.startswith("email.") and name in EMAIL_EVENTS:
        return f"When an email to the contact is {name.removeprefix('email.')} ({name})"
    return f"When a contact does “{name}”"


def run_totals(automation: Automation) -> dict[str, int]:
    """Runs per state, every state present (0 when none)."""
    return dict.fromkeys(STATES, 0) | actions.run_counts(automation)


def totals_by_automation(automations: list[Automation]) -> dict[int, dict[str, int]]:
    """run_totals for many automations in one query (the list page, the API's list)."""
    totals = {a.id: dict.fromkeys(STATES, 0) for a in automations}
    rows = (
        Run.objects.filter(automation__in=automations)
        .values_list("automation_id", "state")
        .annotate(n=Count("id"))
    )
    for automation_id, state, n in rows:
        totals[automation_id][state] = n
    return totals


def waiting_by_step(automation: Automation, steps: list[Step]) -> dict[int, int]:
    """How many waiting runs are at each step, by position. A run waiting out a wait step has
    already moved past it (its position is the next step), so it is counted on the wait, where
    the editor shows it; a run due now is counted on the step it runs next."""
    now = timezone.now()
    rows = (
        automation.runs.filter(state=Run.State.WAITING)
        .values_list("position")
        .annotate(n=Count("id"), later=Count("id", filter=Q(next_run_at__gt=now)))
    )
    counts: dict[int, int] = {}
    for position, n, later in rows:
        in_wait = later if _follows_wait(steps, position) else 0
        if in_wait:
            counts[position - 1] = counts.get(position - 1, 0) + in_wait
        if n - in_wait:
            counts[position] = counts.get(position, 0) + n - in_wait
    return counts


def _follows_wait(steps: list[Step], position: int) -> bool:
    return 0 < position <= len(steps) and steps[position - 1].kind == Step.Kind.WAIT


def run_step(run: Run, steps: list[Step]) -> Step | None:
    """The step a run is at (see waiting_by_step); None when it has finished them all."""
    if run.state == Run.State.DONE:
        return None
    if _follows_wait(steps, run.position) and run.next_run_at > (run.finished_at or timezone.now()):
        return steps[run.position - 1]
    return steps[run.position] if run.position < len(steps) else None


@dataclass
class StepRow:
    """One step as the editor lists it."""

    step: Step
    number: int
    description: str
    waiting: int
    # A condition's branch when it fails: None for "exit", else the step number it goes to.
    else_to: int | None = None
    else_problem: str = ""
    # The conditions that jump here when they fail (step numbers).
    jumped_from: list[int] = field(default_factory=list)

    @property
    def is_condition(self) -> bool:
        return self.step.kind == Step.Kind.CONDITION


def step_rows(automation: Automation, steps: list[Step]) -> list[StepRow]:
    waiting = waiting_by_step(automation, steps)
    rows = [
        StepRow(step, step.position + 1, describe(step), waiting.get(step.position, 0))
        for step in steps
    ]
    for row in rows:
        if not row.is_condition or row.step.config.get("else") == "exit":
            continue
        row.else_to = int(row.step.config["else"])
        if row.else_to <= row.number:
            row.else_problem = "It jumps back: edit it to go to a later step or exit."
        elif row.else_to > len(rows):
            row.else_problem = f"There is no step {row.else_to}: the run ends there."
        else:
            rows[row.else_to - 1].jumped_from.append(row.number)
    return rows


def event_suggestions(project, limit: int = 30) -> list[str]:
    """Event names for a trigger, a cancel event or a condition: the project's recent custom
    events, the signup forms' and other automations' events, then the email events."""
    from postroom.signups.models import DEFAULT_EVENT, SignupForm

    recent = (
        Event.objects.filter(project=project)
        .order_by("-id")
        .values_list("kind", "name")[:RECENT_EVENTS]
    )
    names = [name for kind, name in recent if kind == Event.Kind.CUSTOM and name]
    names += SignupForm.objects.filter(project=project).values_list("event_name", flat=True)
    for trigger, cancel in Automation.objects.filter(project=project).values_list(
        "trigger_event", "cancel_event"
    ):
        names += [trigger, cancel]
    names.append(DEFAULT_EVENT)
    custom = [n for n in dict.fromkeys(names) if n and not n.startswith("email.")][:limit]
    return custom + EMAIL_EVENTS


# --- settings -----------------------------------------------------------------------------------


def current_settings(automation: Automation) -> dict:
    """The automation's settings as save_automation reads them, to fill a form or to merge a
    partial change into (save_automation wants the trigger's field whatever changed)."""
    segment = automation.trigger_segment
    return {
        "name": automation.name,
        "trigger": automation.trigger,
        "trigger_event": automation.trigger_event,
        "trigger_tag": automation.trigger_tag,
        "trigger_segment": str(segment.code) if segment else "",
        "repeat": automation.repeat,
        "cancel_event": automation.cancel_event,
        "sender": str(automation.sender.code) if automation.sender else "",
    }


def find_sender(project, code: str | None) -> Sender | None:
    """The sender chosen by its code; None (the project's default) for none."""
    if not code:
        return None
    sender = find_in_project(Sender, project, code)
    if sender is None:
        raise AutomationError("sender", "no such sender in this project.")
    return sender


def save_settings(automation: Automation, fields: dict) -> Automation:
    """save_automation, plus the sender (a sender code, or empty for the default)."""
    if "sender" in fields:
        automation.sender = find_sender(automation.project, fields["sender"])
    return actions.save_automation(automation, fields)


def delete_automation(automation: Automation) -> None:
    """The automation, its steps and its runs (waiting runs go with it)."""
    automation.delete()


# --- steps from forms ---------------------------------------------------------------------------


def config_from_form(kind: str, data) -> dict:
    """A step's config from the editor's form fields (a QueryDict or a dict of strings);
    clean_config checks it. A wait is "for" an amount or "until" a time; a condition's else is
    "exit" or "goto" a step number."""
    get = data.get
    if kind == Step.Kind.WAIT:
        if get("mode") == "until":
            return {"until": get("until", ""), "zone": get("zone", "")}
        return {"amount": get("amount", ""), "unit": get("unit", "")}
    if kind == Step.Kind.CONDITION:
        test = get("test", "")
        config = {"test": test}
        if test in ("segment", "tag", "event"):
            config[test] = get(test, "")
        if test == "event":
            config["within_days"] = get("within_days", "")
        config["else"] = get("else_step", "") if get("else_action") == "goto" else "exit"
        return config
    names = {
        Step.Kind.SEND: ("subject", "template", "body"),
        Step.Kind.ADD_TAG: ("tag",),
        Step.Kind.REMOVE_TAG: ("tag",),
        Step.Kind.UPDATE_FIELD: ("field", "value"),
        Step.Kind.WEBHOOK: ("endpoint",),
    }.get(kind, ())
    return {name: get(name, "") for name in names}


def form_values(step: Step | None, kind: str) -> dict:
    """The form fields that show a step's config (empty ones for a new step)."""
    config = dict(step.config) if step else {}
    values = {name: str(value) for name, value in config.items() if name != "else"}
    if kind == Step.Kind.WAIT:
        values["mode"] = "until" if config.get("until") else "for"
        values.setdefault("unit", "days")
        values.setdefault("zone", "contact")
    if kind == Step.Kind.CONDITION:
        values.setdefault("test", "tag")
        otherwise = config.get("else", "exit")
        values["else_action"] = "exit" if otherwise == "exit" else "goto"
        values["else_step"] = "" if otherwise == "exit" else str(otherwise)
    return values
