"""Automations API (secret key): a project's automations, their steps and their runs.

GET    /api/v1/automations                           every automation, with steps and run counts
POST   /api/v1/automations                           {name, trigger, trigger_event | trigger_tag
                                                     | trigger_segment, repeat?, cancel_event?,
                                                     sender?, steps?: [{kind, config}], enabled?}
                                                     (201)
GET    /api/v1/automations/{id}
PATCH  /api/v1/automations/{id}                      any of the settings above, and enabled
DELETE /api/v1/automations/{id}                      with its steps and runs
POST   /api/v1/automations/{id}/steps                {kind, config, after?} (201): after step
                                                     number `after` (0: first), else at the end
PATCH  /api/v1/automations/{id}/steps/{n}            {config}
DELETE /api/v1/automations/{id}/steps/{n}            the automation, renumbered
POST   /api/v1/automations/{id}/steps/{n}/move       {direction: up | down}
GET    /api/v1/automations/{id}/runs                 keyset pages: ?limit=&cursor=&state=

Steps are addressed by their number (1 is the first); what each kind's config holds is in
automations.steps. A condition's `else` (a step number) and the runs waiting follow their step
when steps are added or deleted before them (a jump past the last step stays: it names a step
still to be added; automations.editing). A step's `waiting` counts the runs at it: in a wait
step, those waiting out its time.

Bad input is a 422 naming the field (`steps.0.amount` for a step given at creation); another
project's automation a 404; enabling one with no steps, or a move that would make a condition
jump back, a 409.
"""

from __future__ import annotations

from django.db import transaction
from django.http import Http404, HttpRequest
from ninja import Query, Router
from ninja import Status as Reply

from postroom.accounts.auth import secret_key_auth
from postroom.automations import actions, editing
from postroom.automations.actions import AutomationError
from postroom.automations.models import Automation, Run, Step
from postroom.automations.schemas import (
    AutomationDeleted,
    AutomationIn,
    AutomationOut,
    AutomationPatch,
    RunPage,
    RunQuery,
    StepIn,
    StepMove,
    StepOut,
    StepPatch,
)
from postroom.automations.steps import describe
from postroom.lib.apierrors import ApiError
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404

automations_router = Router(tags=["automations"], auth=secret_key_auth)

SETTINGS = (
    "name",
    "trigger",
    "trigger_event",
    "trigger_tag",
    "trigger_segment",
    "repeat",
    "cancel_event",
    "sender",
)
MAX_STEP_NUMBER = 32767  # Step.position is a small integer


def _get_automation(request: HttpRequest, automation_id: str) -> Automation:
    return get_in_project_or_404(Automation, request.auth, automation_id, "automation")


def _get_step(automation: Automation, number: int) -> Step:
    step = None
    if 1 <= number <= MAX_STEP_NUMBER:
        step = automation.steps.filter(position=number - 1).first()
    if step is None:
        raise Http404(f"No step {number} in this automation.")
    return step


def _problem(e: AutomationError, prefix: str = "") -> ApiError:
    return ApiError(422, e.message, prefix + e.field)


def step_out(step: Step, waiting: dict[int, int]) -> dict:
    return {
        "number": step.position + 1,
        "kind": step.kind,
        "config": step.config,
        "description": describe(step),
        "waiting": waiting.get(step.position, 0),
    }


def automation_out(automation: Automation, totals: dict[str, int] | None = None) -> dict:
    steps = list(automation.steps.order_by("position"))
    waiting = editing.waiting_by_step(automation, steps)
    segment, sender = automation.trigger_segment, automation.sender
    return {
        "id": str(automation.code),
        **{
            name: getattr(automation, name)
            for name in (
                "name",
                "trigger",
                "trigger_event",
                "trigger_tag",
                "repeat",
                "cancel_event",
                "enabled",
                "created_at",
                "updated_at",
            )
        },
        "trigger_segment": str(segment.code) if segment else None,
        "trigger_description": editing.trigger_text(automation),
        "sender": str(sender.code) if sender else None,
        "steps": [step_out(step, waiting) for step in steps],
        "runs": totals if totals is not None else editing.run_totals(automation),
    }


def run_out(run: Run, steps: list[Step]) -> dict:
    step = editing.run_step(run, steps)
    return {
        "id": str(run.code),
        "contact": str(run.contact.code),
        "email": run.contact.email,
        "state": run.state,
        "step": step.position + 1 if step else None,
        "step_description": describe(step) if step else "",
        "next_run_at": run.next_run_at if run.state == Run.State.WAITING else None,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_error": run.last_error,
        "trigger": run.trigger if isinstance(run.trigger, dict) else {},
    }


def _enable(automation: Automation, enabled: bool) -> None:
    try:
        actions.set_enabled(automation, enabled)
    except AutomationError as e:
        raise ApiError(409, "the automation has no steps: add one first.", e.field) from None


@automations_router.get("", response=list[AutomationOut])
def list_automations(request: HttpRequest) -> list[dict]:
    automations = list(
        Automation.objects.filter(project=request.auth)
        .select_related("trigger_segment", "sender")
        .order_by("id")
    )
    totals = editing.totals_by_automation(automations)
    return [automation_out(a, totals[a.id]) for a in automations]


@automations_router.post("", response={201: AutomationOut})
def create_automation(request: HttpRequest, body: AutomationIn) -> Reply:
    with transaction.atomic():  # all or nothing: a bad step leaves no automation behind
        automation = Automation(project=request.auth)
        try:
            editing.save_settings(automation, body.dict(include=set(SETTINGS)))
        except AutomationError as e:
            raise _problem(e) from None
        for i, step in enumerate(body.steps):
            try:
                actions.add_step(automation, step.kind, step.config)
            except AutomationError as e:
                raise _problem(e, f"steps.{i}.") from None
        if body.enabled:
            _enable(automation, True)
    return Reply(201, automation_out(automation))


@automations_router.get("/{automation_id}", response=AutomationOut)
def get_automation(request: HttpRequest, automation_id: str) -> dict:
    return automation_out(_get_automation(request, automation_id))


@automations_router.patch("/{automation_id}", response=AutomationOut)
def update_automation(request: HttpRequest, automation_id: str, body: AutomationPatch) -> dict:
    automation = _get_automation(request, automation_id)
    changes = body.dict(exclude_unset=True)
    with transaction.atomic():  # settings and enabled together, or neither
        if changes.keys() & set(SETTINGS):
            # save_automation reads every setting: what is not changed is sent as it is.
            fields = editing.current_settings(automation) | {
                name: changes[name] for name in SETTINGS if name in changes
            }
            try:
                editing.save_settings(automation, fields)
            except AutomationError as e:
                raise _problem(e) from None
        if changes.get("enabled") is not None and changes["enabled"] != automation.enabled:
            _enable(automation, changes["enabled"])
    return automation_out(automation)


@automations_router.delete("/{automation_id}", response=AutomationDeleted)
def delete_automation(request: HttpRequest, automation_id: str) -> dict:
    automation = _get_automation(request, automation_id)
    code = str(automation.code)
    editing.delete_automation(automation)
    return {"success": True, "id": code}


@automations_router.post("/{automation_id}/steps", response={201: StepOut})
def add_automation_step(request: HttpRequest, automation_id: str, body: StepIn) -> Reply:
    automation = _get_automation(request, automation_id)
    try:
        step = actions.insert_step(automation, body.kind, body.config, body.after)
    except AutomationError as e:
        raise _problem(e) from None
    return Reply(201, step_out(step, {}))


@automations_router.patch("/{automation_id}/steps/{number}", response=StepOut)
def update_automation_step(
    request: HttpRequest, automation_id: str, number: int, body: StepPatch
) -> dict:
    automation = _get_automation(request, automation_id)
    step = _get_step(automation, number)
    try:
        actions.update_step(step, body.config)
    except AutomationError as e:
        raise _problem(e) from None
    steps = list(automation.steps.order_by("position"))
    return step_out(step, editing.waiting_by_step(automation, steps))


@automations_router.delete("/{automation_id}/steps/{number}", response=AutomationOut)
def delete_automation_step(request: HttpRequest, automation_id: str, number: int) -> dict:
    automation = _get_automation(request, automation_id)
    actions.remove_step(_get_step(automation, number))
    return automation_out(automation)


@automations_router.post("/{automation_id}/steps/{number}/move", response=AutomationOut)
def move_automation_step(
    request: HttpRequest, automation_id: str, number: int, body: StepMove
) -> dict:
    automation = _get_automation(request, automation_id)
    step = _get_step(automation, number)
    try:
        actions.swap_step(step, -1 if body.direction == "up" else 1)
    except AutomationError as e:
        raise ApiError(409, e.message, e.field) from None
    return automation_out(automation)


@automations_router.get("/{automation_id}/runs", response=RunPage)
def list_automation_runs(request: HttpRequest, automation_id: str, query: Query[RunQuery]) -> dict:
    automation = _get_automation(request, automation_id)
    runs = Run.objects.filter(automation=automation).select_related("contact")
    if query.state:
        if query.state not in Run.State.values:
            raise ApiError(422, f"must be one of {Run.State.values}.", "state")
        runs = runs.filter(state=query.state)
    page = keyset_page(runs, after=query.cursor, size=query.limit)
    steps = list(automation.steps.order_by("position"))
    return {"items": [run_out(r, steps) for r in page.items], "next_cursor": page.next_cursor}
