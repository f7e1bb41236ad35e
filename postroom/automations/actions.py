"""Automations: editing them, starting runs from triggers, and the worker's step over due runs.

Triggers: an event (custom or email) is read by the worker from the events in id order
(tracking.stream), so `track` pays nothing for automations; a tag added is started where tags
are added (tags_added); entering a segment is found by comparing the segment with who was in it
a minute ago (check_segment_triggers). A run is a row: the worker claims the due ones (a
conditional UPDATE on SQLite, SKIP LOCKED on PostgreSQL, with a lease), runs steps until one
waits or the automation ends, each run in a transaction of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta as td

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from postroom.automations import steps
from postroom.automations.models import Automation, Run, SegmentMember, Step
from postroom.automations.steps import StepError
from postroom.contacts.models import Contact, Segment, Status
from postroom.delivery.models import Email, Message
from postroom.lib.emails import one_line
from postroom.tracking import stream
from postroom.tracking.models import Event

log = logging.getLogger("postroom.automations")

READER = "automations"  # its EventCursor (tracking.stream)
READ_BATCH_IDS = 5000
RUN_BATCH = 50
MAX_STEPS_A_PASS = 100  # a loop of steps that never waits still ends


class AutomationError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


# --- editing ----------------------------------------------------------------------------------


def save_automation(automation: Automation, fields: dict) -> Automation:
    """Set the name, trigger and options from `fields` (as the editor or API sends them),
    checked; a field left out keeps its value. Raises AutomationError naming the field."""
    current = {
        "trigger_event": automation.trigger_event,
        "trigger_tag": automation.trigger_tag,
        "trigger_segment": automation.trigger_segment.code if automation.trigger_segment else None,
    }
    fields = {**current, **fields}
    name = one_line(str(fields.get("name", automation.name) or "")).strip()
    if not name or len(name) > 100:
        raise AutomationError("name", "required, at most 100 characters.")
    trigger = fields.get("trigger", automation.trigger)
    segment_before = (automation.trigger, automation.trigger_segment_id)
    if trigger not in Automation.Trigger.values:
        raise AutomationError("trigger", f"one of {Automation.Trigger.values}.")
    automation.name, automation.trigger = name, trigger
    automation.trigger_event = automation.trigger_tag = ""
    automation.trigger_segment = None
    if trigger == Automation.Trigger.EVENT:
        automation.trigger_event = _one_line(fields, "trigger_event", "the event's name")
    elif trigger == Automation.Trigger.TAG:
        automation.trigger_tag = _one_line(fields, "trigger_tag", "the tag")
    else:
        code = fields.get("trigger_segment")
        segment = None
        if code:
            try:
                segment = Segment.objects.filter(project=automation.project, code=code).first()
            except Exception:  # a malformed id
                segment = None
        if segment is None:
            raise AutomationError("trigger_segment", "choose a segment of this project.")
        automation.trigger_segment = segment
    repeat = fields.get("repeat", automation.repeat) or Automation.Repeat.ONCE
    if repeat not in Automation.Repeat.values:
        raise AutomationError("repeat", f"one of {Automation.Repeat.values}.")
    automation.repeat = repeat
    cancel = one_line(str(fields.get("cancel_event", automation.cancel_event) or "")).strip()
    if len(cancel) > 100:
        raise AutomationError("cancel_event", "at most 100 characters.")
    automation.cancel_event = cancel
    automation.updated_at = timezone.now()
    with transaction.atomic():
        automation.save()
        segment_now = (automation.trigger, automation.trigger_segment_id)
        if automation.trigger == Automation.Trigger.SEGMENT and segment_now != segment_before:
            # Who is in the segment now has not entered it: only those who come later have.
            # (Saved again with the same segment, who entered since the last look still has.)
            SegmentMember.objects.filter(automation=automation).delete()
            note_segment_members(automation)
    return automation


def _one_line(fields: dict, key: str, what: str) -> str:
    value = one_line(str(fields.get(key) or "")).strip()
    if not value or len(value) > 100:
        raise AutomationError(key, f"name {what} (at most 100 characters).")
    return value


def set_enabled(automation: Automation, enabled: bool) -> None:
    if enabled and not automation.steps.exists():
        raise AutomationError("steps", "add a step first.")
    Automation.objects.filter(pk=automation.pk).update(enabled=enabled, updated_at=timezone.now())
    automation.enabled = enabled


@transaction.atomic
def add_step(automation: Automation, kind: str, config: dict, at: int | None = None) -> Step:
    """A step at position `at` (0-based; None: at the end); the ones after move down."""
    count = automation.steps.count()
    at = count if at is None else max(0, min(at, count))
    try:
        cleaned = steps.clean_config(automation, kind, config, at)
    except StepError as e:
        raise AutomationError(e.field, e.message) from None
    _shift(automation, at, +1)
    return Step.objects.create(automation=automation, position=at, kind=kind, config=cleaned)


@transaction.atomic
def update_step(step: Step, config: dict) -> Step:
    try:
        step.config = steps.clean_config(step.automation, step.kind, config, step.position)
    except StepError as e:
        raise AutomationError(e.field, e.message) from None
    step.email = None  # a send step's email is prepared again from what it says now
    step.save(update_fields=["config", "email"])
    return step


@transaction.atomic
def delete_step(step: Step) -> None:
    automation, position = step.automation, step.position
    step.delete()
    _shift(automation, position + 1, -1)


@transaction.atomic
def move_step(step: Step, by: int) -> None:
    """Swap the step with the one above (-1) or below (+1)."""
    other = Step.objects.filter(automation=step.automation, position=step.position + by).first()
    if other is None:
        return
    here, there = step.position, other.position
    # Through a free position: (automation, position) is unique at every statement.
    Step.objects.filter(pk=step.pk).update(position=32000)
    Step.objects.filter(pk=other.pk).update(position=here)
    Step.objects.filter(pk=step.pk).update(position=there)


def _shift(automation: Automation, start: int, by: int) -> None:
    """Move the steps from `start` on by one, without two at one position at any moment."""
    order = "-position" if by > 0 else "position"
    for step in Step.objects.filter(automation=automation, position__gte=start).order_by(order):
        Step.objects.filter(pk=step.pk).update(position=step.position + by)


# --- step edits that keep numbers meaning the same step -----------------------------------------
# A condition's "else" names a step by its number, and a waiting run's `position` is the number
# of steps behind it: inserting or deleting a step before them would point both at another
# step. insert_step and remove_step move them along with the steps (add_step and delete_step
# alone do not); swap_step refuses a move that would make a condition jump backwards, which
# clean_config refuses for a condition saved that way. The editor and the API use these.


@transaction.atomic
def insert_step(automation: Automation, kind: str, config: dict, after: int | None) -> Step:
    """A step after step number `after` (0: first; None: at the end)."""
    _lock(automation)
    count = automation.steps.count()
    at = count if after is None else after
    if not 0 <= at <= count:
        raise AutomationError("after", f"a step number from 0 to {count}.")
    step = add_step(automation, kind, config, at)
    # Old steps at `at` and after moved down one: so do jumps to them and runs before them. A
    # jump past the last step names one still to be added (a branch written first): it stays.
    _renumber_jumps(automation, lambda n: n + 1 if at + 1 <= n <= count else n, skip=step)
    automation.runs.filter(state=Run.State.WAITING, position__gt=at).update(
        position=F("position") + 1
    )
    return step


@transaction.atomic
def remove_step(step: Step) -> None:
    automation, position = step.automation, step.position
    _lock(automation)
    count = automation.steps.count()
    delete_step(step)
    # A jump to the deleted step now goes to the one that followed it (the same number).
    _renumber_jumps(automation, lambda n: n - 1 if position + 1 < n <= count else n)
    automation.runs.filter(state=Run.State.WAITING, position__gt=position).update(
        position=F("position") - 1
    )


@transaction.atomic
def swap_step(step: Step, by: int) -> None:
    """Move the step up (-1) or down (+1). Waiting runs keep their place: what they run next is
    the step at that place now."""
    automation = step.automation
    _lock(automation)
    here, there = step.position + 1, step.position + 1 + by
    count = automation.steps.count()
    if not 1 <= there <= count:
        raise AutomationError("direction", f"step {here} is already the {_end(by)} one.")

    def swapped(n: int) -> int:
        return there if n == here else here if n == there else n

    jumps = [
        (s.position + 1, int(s.config["else"]))
        for s in automation.steps.filter(kind=Step.Kind.CONDITION)
        if s.config.get("else") not in (None, "exit")
    ]
    for number, target in jumps:
        # Swapping neighbours turns a forward jump back only when it is the jump between them.
        if number < target and {number, target} == {here, there}:
            raise AutomationError(
                "direction",
                f"then step {swapped(number)}'s condition would jump back to step "
                f"{swapped(target)}: make it go to a later step or exit first.",
            )
    move_step(step, by)
    _renumber_jumps(automation, swapped)


def _end(by: int) -> str:
    return "first" if by < 0 else "last"


def _lock(automation: Automation) -> None:
    """Two edits of one automation's steps at once would number them from the same count:
    the second waits for the first (PostgreSQL; SQLite writes one at a time anyway)."""
    Automation.objects.select_for_update().filter(pk=automation.pk).first()


def _renumber_jumps(
    automation: Automation, renumber: Callable[[int], int], skip: Step | None = None
) -> None:
    conditions = automation.steps.filter(kind=Step.Kind.CONDITION)
    if skip is not None:
        conditions = conditions.exclude(pk=skip.pk)
    for condition in conditions:
        otherwise = condition.config.get("else")
        if otherwise in (None, "exit") or renumber(int(otherwise)) == int(otherwise):
            continue
        config = {**condition.config, "else": renumber(int(otherwise))}
        Step.objects.filter(pk=condition.pk).update(config=config)


def run_counts(automation: Automation) -> dict[str, int]:
    return dict(automation.runs.values_list("state").annotate(n=Count("id")))


# --- starting runs ----------------------------------------------------------------------------


def start_runs(automation: Automation, contact_ids: Iterable[int], trigger: dict) -> int:
    """A run for each contact, now; with "once per contact", not for those who had one.
    How many started."""
    plan = RunPlan()
    for contact_id in sorted(set(contact_ids)):
        plan.start(automation, contact_id, trigger)
    return plan.write()


def read_events(settle: float = stream.SETTLE_SECONDS) -> bool:
    """Worker step: start runs for, and cancel runs on, the next batch of new events."""
    return stream.read_events(READER, handle_events, READ_BATCH_IDS, settle, from_now=True)


def handle_events(after_id: int, upto_id: int) -> None:
    """Start and cancel runs for the events in (after_id, upto_id], as if each event were
    handled alone in id order, in a few statements a batch: a query or two an event kept the
    reader near 1,100 events/s on PostgreSQL, fewer than the track API takes in
    (bench/RESULTS.md)."""
    enabled = Automation.objects.filter(enabled=True)
    triggered = list(enabled.filter(trigger=Automation.Trigger.EVENT))
    cancelling = list(enabled.exclude(cancel_event=""))
    if not triggered and not cancelling:
        return
    events = Event.objects.filter(id__gt=after_id, id__lte=upto_id).exclude(contact=None)
    names = {a.trigger_event for a in triggered} | {a.cancel_event for a in cancelling}
    wanted = Q()
    for name in names:
        wanted |= Q(**steps.event_match(name))
    rows = (
        events.filter(wanted)
        .order_by("id")
        .values_list("project_id", "kind", "name", "contact_id", "data", "code", "created_at")
    )
    plan = RunPlan()
    for project_id, kind, name, contact_id, data, code, at in rows.iterator(chunk_size=1000):
        label = name if kind == Event.Kind.CUSTOM else f"email.{kind}"
        for automation in cancelling:
            if automation.project_id == project_id and automation.cancel_event == label:
                plan.cancel(automation, contact_id, f"Cancelled by the event “{label}”.")
        for automation in triggered:
            if automation.project_id == project_id and automation.trigger_event == label:
                trigger = {"event": label, "data": data, "id": str(code), "at": at.isoformat()}
                plan.start(automation, contact_id, trigger)
    plan.write()


class RunPlan:
    """What a batch of events does to runs, worked out in the events' order and written at
    the end: the runs to start (cancelled already if a later event of the batch cancels
    them), and which of the runs waiting from before the batch to cancel."""

    def __init__(self) -> None:
        self.planned: list[tuple[str, Automation, int, dict | str]] = []

    def start(self, automation: Automation, contact_id: int, trigger: dict) -> None:
        self.planned.append(("start", automation, contact_id, trigger))

    def cancel(self, automation: Automation, contact_id: int, why: str) -> None:
        self.planned.append(("cancel", automation, contact_id, why))

    def write(self) -> int:
        """Write the plan; how many runs it started."""
        had = self.contacts_with_runs()  # once per contact: who had a run before the batch
        runs: list[Run] = []
        started: dict[tuple[int, int], list[Run]] = {}  # (automation, contact) -> new runs
        cancels: dict[int, tuple[Automation, str, set[int]]] = {}  # of runs from before
        for what, automation, contact_id, detail in self.planned:
            key = (automation.id, contact_id)
            if what == "cancel":
                cancel_new_runs(started.get(key, []), detail)
                cancels.setdefault(automation.id, (automation, detail, set()))[2].add(contact_id)
            elif automation.repeat != Automation.Repeat.ONCE or key not in had:
                had.add(key)
                run = Run(project_id=automation.project_id, automation=automation,
                          contact_id=contact_id, trigger=detail)  # fmt: skip
                runs.append(run)
                started.setdefault(key, []).append(run)
        # The runs from before the batch first: the new ones are not theirs to cancel.
        for automation, why, contact_ids in cancels.values():
            cancel_waiting(automation, contact_ids, why)
        Run.objects.bulk_create(runs, batch_size=1000)
        return len(runs)

    def contacts_with_runs(self) -> set[tuple[int, int]]:
        """(automation, contact) of the batch's once-per-contact starts that had a run."""
        wanted: dict[int, set[int]] = {}
        for what, automation, contact_id, _ in self.planned:
            if what == "start" and automation.repeat == Automation.Repeat.ONCE:
                wanted.setdefault(automation.id, set()).add(contact_id)
        had = set()
        for automation_id, contact_ids in wanted.items():
            runs = Run.objects.filter(automation_id=automation_id, contact_id__in=contact_ids)
            had |= {(automation_id, c) for c in runs.values_list("contact_id", flat=True)}
        return had


def cancel_new_runs(runs: list[Run], why: str) -> None:
    """Runs a batch is about to start, cancelled by a later event of the same batch."""
    for run in runs:
        if run.state == Run.State.WAITING:
            run.state, run.last_error, run.finished_at = Run.State.CANCELLED, why, timezone.now()


def cancel_waiting(automation: Automation, contact_ids: Iterable[int], why: str) -> int:
    return Run.objects.filter(
        automation=automation, contact_id__in=contact_ids, state=Run.State.WAITING
    ).update(state=Run.State.CANCELLED, last_error=why, finished_at=timezone.now())


def tags_added(project_id: int, contact_ids: Iterable[int], tag_names: Iterable[str]) -> int:
    """Start the tag-triggered automations of these tags for these contacts (called where
    tags are added, in that transaction)."""
    names = set(tag_names)
    if not names:
        return 0
    started = 0
    contact_ids = list(contact_ids)
    for automation in Automation.objects.filter(
        project_id=project_id, enabled=True, trigger=Automation.Trigger.TAG, trigger_tag__in=names
    ):
        started += start_runs(automation, contact_ids, {"tag": automation.trigger_tag})
    return started


def check_segment_triggers() -> int:
    """Periodic: start runs for contacts who entered the segments of segment-triggered
    automations since the last look, and forget those who left (they may enter again)."""
    from postroom.contacts.rules import segment_contacts

    started = 0
    for automation in Automation.objects.filter(
        enabled=True, trigger=Automation.Trigger.SEGMENT
    ).select_related("trigger_segment", "project"):
        segment = automation.trigger_segment
        members = segment_contacts(automation.project, segment.rules).values("id")
        seen = SegmentMember.objects.filter(automation=automation)
        with transaction.atomic():
            entered = list(
                members.exclude(id__in=seen.values("contact_id")).values_list("id", flat=True)
            )
            seen.exclude(contact_id__in=members).delete()
            SegmentMember.objects.bulk_create(
                [SegmentMember(automation=automation, contact_id=c) for c in entered],
                ignore_conflicts=True,
            )
            started += start_runs(automation, entered, {"segment": str(segment.code)})
    return started


def note_segment_members(automation: Automation) -> None:
    from postroom.contacts.rules import segment_contacts

    members = segment_contacts(automation.project, automation.trigger_segment.rules)
    SegmentMember.objects.bulk_create(
        [
            SegmentMember(automation=automation, contact_id=c)
            for c in members.values_list("id", flat=True)
        ],
        ignore_conflicts=True,
    )


# --- running ----------------------------------------------------------------------------------


def handle_one_automation_batch() -> bool:
    """Worker step: run the due runs of a batch. True when there were some."""
    runs = claim_runs(RUN_BATCH)
    for run in runs:
        advance(run)
    return bool(runs)


def claim_runs(limit: int) -> list[Run]:
    now = timezone.now()
    with transaction.atomic():
        due = (
            Run.objects.filter(state=Run.State.WAITING, next_run_at__lte=now)
            .filter(Q(lease_until=None) | Q(lease_until__lt=now))
            .filter(automation__enabled=True)
            .order_by("next_run_at", "id")
        )
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True, of=("self",))
        ids = list(due.values_list("id", flat=True)[:limit])
        lease = now + Run.LEASE
        Run.objects.filter(id__in=ids, state=Run.State.WAITING).update(lease_until=lease)
    return list(
        Run.objects.filter(id__in=ids, lease_until=lease)
        .select_related("automation", "contact", "contact__project")
        .order_by("next_run_at", "id")
    )


def advance(run: Run) -> None:
    """Run steps from the run's position until one waits or the automation ends."""
    automation_steps = list(run.automation.steps.order_by("position"))
    held = Run.objects.filter(pk=run.pk, lease_until=run.lease_until)
    try:
        with transaction.atomic():
            changes = run_steps(run, automation_steps)
            if held.update(lease_until=None, **changes) != 1:
                raise LeaseLost()
    except LeaseLost:
        log.warning("automation run %s: lease lost, its steps rolled back", run.code)
    except Exception as e:
        log.exception("automation run %s failed", run.code)
        failed_at = getattr(run, "performing", run.position)  # the step that raised
        held.update(
            state=Run.State.FAILED,
            last_error=f"Step {failed_at + 1}: {e}"[:500],
            lease_until=None,
            finished_at=timezone.now(),
        )


class LeaseLost(Exception):
    pass


def run_steps(run: Run, automation_steps: list[Step]) -> dict:
    position, note = run.position, ""
    for _ in range(MAX_STEPS_A_PASS):
        if position is None or position >= len(automation_steps):
            return {
                "state": Run.State.DONE,
                "position": len(automation_steps),
                "finished_at": timezone.now(),
                "last_error": note,
            }
        step = automation_steps[position]
        run.performing = position  # for the error, should this step raise
        outcome = steps.perform(run, step, run.contact)
        note = outcome.note or note
        if outcome.at is not None:
            return {"position": outcome.position, "next_run_at": outcome.at, "last_error": note}
        position = outcome.position
    # A loop of conditions that never waits: take it up again in a minute.
    return {"position": position, "next_run_at": timezone.now() + td(minutes=1)}


def queue_step_email(run: Run, step: Step, contact: Contact) -> Message | None:
    """The step's email to the contact, queued ahead of campaigns; None when they are not
    subscribed (the send loop also skips suppressed addresses)."""
    if contact.status != Status.SUBSCRIBED:
        return None
    email = step.email or prepare_step_email(step)
    return Message.objects.create(
        project_id=run.project_id,
        email=email,
        sender_id=email.sender_id,
        contact=contact,
        to_email=contact.email,
        data={"automation": run.automation.name, "trigger": run.trigger},
        priority=Message.Priority.AUTOMATION,
    )


def prepare_step_email(step: Step) -> Email:
    """The send step's content prepared once, as the Email every run of it shares."""
    from postroom.content.models import Template
    from postroom.content.render import HTML, MARKDOWN, Source, prepare
    from postroom.delivery.actions import default_sender

    automation, config = step.automation, step.config
    body, body_format, layout, layout_format, text = config.get("body", ""), MARKDOWN, "", HTML, ""
    if config.get("template"):
        template = Template.objects.get(project=automation.project, code=config["template"])
        if body.strip() and template.is_layout:
            layout, layout_format = template.source, template.format
        else:
            body, body_format, text = template.source, template.format, template.text
    source = Source(
        body=body,
        format=body_format,
        layout=layout,
        layout_format=layout_format,
        text=text,
        subject=config["subject"],
        track_links=True,
        track_opens=True,
        footer=True,
    )
    prepared = prepare(source)
    sender = automation.sender or default_sender(automation.project)
    email = Email.objects.create(
        project=automation.project,
        kind=Email.Kind.AUTOMATION,
        sender=sender,
        from_email=sender.from_email,
        from_name=one_line(sender.from_name),
        subject=one_line(config["subject"]),
        text=prepared.text,
        html=prepared.html,
        links=prepared.links,
        personalised=True,
        skip_unsubscribed=True,
    )
    Step.objects.filter(pk=step.pk).update(email=email)
    step.email = email
    return email


def call_webhook(run: Run, step: Step, contact: Contact) -> None:
    """Queue `automation.step` for the step's endpoint (signed and retried as every webhook)."""
    from postroom.webhooks.actions import as_json_data, envelope
    from postroom.webhooks.models import Delivery, Endpoint
    from postroom.webhooks.payloads import contact_data

    endpoint = Endpoint.objects.filter(
        project_id=run.project_id, code=step.config["endpoint"]
    ).first()
    if endpoint is None or not endpoint.enabled:
        raise RuntimeError("its webhook endpoint is gone or disabled.")
    data = {
        "automation": {"id": str(run.automation.code), "name": run.automation.name},
        "step": step.position + 1,
        "run": str(run.code),
        "contact": contact_data(contact),
        "trigger": run.trigger,
    }
    Delivery.objects.create(
        project_id=run.project_id,
        endpoint=endpoint,
        event_type="automation.step",
        payload=as_json_data(envelope("automation.step", data)),
    )
