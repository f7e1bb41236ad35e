"""The automations pages: the list, an automation's settings, the editor (its steps in order,
with a condition's branch, the runs at each step, adding, editing, moving and deleting steps,
enable and disable) and its runs. Every member of the project edits automations, as they do
campaigns; another project's automation is a 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.automations import actions, editing
from postroom.automations.actions import AutomationError
from postroom.automations.models import Automation, Run, Step
from postroom.automations.steps import describe
from postroom.contacts.models import FieldDefinition, Segment, Tag
from postroom.content.models import Template
from postroom.delivery.actions import default_sender
from postroom.delivery.models import Sender
from postroom.lib.keyset import filters_without_cursors, keyset_page
from postroom.lib.querytime import QueryTooSlow, time_limit
from postroom.lib.scoping import find_in_project
from postroom.webhooks.models import Endpoint

T = TypeVar("T")
SETTINGS_FIELDS = (
    "name",
    "trigger",
    "trigger_event",
    "trigger_tag",
    "trigger_segment",
    "repeat",
    "cancel_event",
    "sender",
)
# The editor's add-step forms, in the order shown.
KINDS = Step.Kind.choices
MAX_STEP_NUMBER = 32767
# Counting an automation's runs reads all of them; past this the page says so instead.
COUNT_SECONDS = 5


def _get_automation(request: HttpRequest, code) -> Automation:
    automation = find_in_project(Automation, request.project, code)
    if automation is None:
        raise Http404("No such automation.")
    return automation


def _get_step(automation: Automation, number: int) -> Step:
    step = None
    if 1 <= number <= MAX_STEP_NUMBER:  # Step.position is a small integer
        step = automation.steps.filter(position=number - 1).first()
    if step is None:
        raise Http404("No such step.")
    return step


def _back(request: HttpRequest, automation: Automation, anchor: str = "") -> HttpResponse:
    response = redirect("automation", project_code=request.project.code, code=automation.code)
    if anchor:
        response["Location"] += f"#{anchor}"
    return response


@project_view
def automations(request: HttpRequest) -> HttpResponse:
    found = list(
        Automation.objects.filter(project=request.project)
        .select_related("trigger_segment")
        .order_by("name", "id")
    )
    totals, problem = _counted(lambda: editing.totals_by_automation(found))
    rows = [
        {
            "automation": a,
            "trigger": editing.trigger_text(a),
            "totals": totals.get(a.id) if totals else None,
        }
        for a in found
    ]
    return render(request, "automations/list.html", {"rows": rows, "count_problem": problem})


def _counted(count: Callable[[], T]) -> tuple[T | None, str]:
    """count(), or None and why when it took too long (never a page that spins)."""
    try:
        with time_limit(COUNT_SECONDS):
            return count(), ""
    except QueryTooSlow as e:
        return None, f"Run counts could not be shown: {e}."


@project_view
def automation_edit(request: HttpRequest, code=None) -> HttpResponse:
    automation = _get_automation(request, code) if code else Automation(project=request.project)
    values = editing.current_settings(automation)
    problem = None
    if request.method == "POST":
        values = {name: request.POST.get(name, "") for name in SETTINGS_FIELDS}
        try:
            editing.save_settings(automation, values)
        except AutomationError as e:
            problem = e
            if code:  # the page's title and links show what is saved, not what was sent
                automation.refresh_from_db()
        else:
            if code:
                messages.success(request, "Settings saved.")
            else:
                messages.success(request, "Automation created: add its steps, then enable it.")
            return _back(request, automation)
    context = {
        "automation": automation if code else None,
        "values": values,
        "problem": problem,
        "triggers": Automation.Trigger.choices,
        "repeats": Automation.Repeat.choices,
        "segments": Segment.objects.filter(project=request.project),
        "senders": Sender.objects.filter(project=request.project),
        "default_sender": default_sender(request.project),
        **_suggestions(request.project),
    }
    return render(request, "automations/edit.html", context, status=422 if problem else 200)


def _suggestions(project) -> dict:
    return {
        "event_names": editing.event_suggestions(project),
        "tag_names": Tag.objects.filter(project=project)
        .order_by("name")
        .values_list("name", flat=True)[:200],
    }


@project_view
def automation_detail(request: HttpRequest, code) -> HttpResponse:
    automation = _get_automation(request, code)
    return _editor(request, automation)


def _editor(
    request: HttpRequest,
    automation: Automation,
    add: dict | None = None,
    problem: AutomationError | None = None,
) -> HttpResponse:
    """The editor page; `add` and `problem`: an add-step form to show again with its error."""
    steps = list(automation.steps.order_by("position"))
    totals, count_problem = _counted(lambda: editing.run_totals(automation))
    rows, rows_problem = _counted(lambda: editing.step_rows(automation, steps))
    add = add or {}
    forms = [
        {
            "kind": kind,
            "label": label,
            "open": add.get("kind") == kind,
            "values": add["values"] if add.get("kind") == kind else editing.form_values(None, kind),
            "after": add.get("after", "") if add.get("kind") == kind else "",
            "problem": problem if add.get("kind") == kind else None,
        }
        for kind, label in KINDS
    ]
    context = {
        "automation": automation,
        "trigger": editing.trigger_text(automation),
        "sender": automation.sender or default_sender(automation.project),
        "steps": steps,
        "rows": rows if rows is not None else [_bare_row(s) for s in steps],
        "totals": totals,
        "count_problem": count_problem or rows_problem,
        "forms": forms,
        **_step_choices(request.project),
    }
    return render(request, "automations/detail.html", context, status=422 if problem else 200)


def _bare_row(step: Step) -> editing.StepRow:
    return editing.StepRow(step, step.position + 1, describe(step), 0)


def _step_choices(project) -> dict:
    """What the step forms offer to choose from."""
    return {
        "segments": Segment.objects.filter(project=project),
        "templates": Template.objects.filter(project=project).order_by("name"),
        "endpoints": Endpoint.objects.filter(project=project).order_by("id"),
        "custom_fields": FieldDefinition.objects.filter(project=project),
        "units": ["minutes", "hours", "days"],
        **_suggestions(project),
    }


def _after(request: HttpRequest) -> int | None:
    """Where to add a step: after step number N (0: first), or at the end."""
    value = request.POST.get("after", "")
    try:
        return int(value) if value else None
    except ValueError:
        raise AutomationError("after", "a step number.") from None


@require_POST
@project_view
def automation_step_add(request: HttpRequest, code) -> HttpResponse:
    automation = _get_automation(request, code)
    kind = request.POST.get("kind", "")
    if kind not in Step.Kind.values:
        raise Http404("No such kind of step.")
    config = editing.config_from_form(kind, request.POST)
    try:
        step = actions.insert_step(automation, kind, config, _after(request))
    except AutomationError as e:
        values = {name: request.POST.get(name, "") for name in request.POST}
        add = {"kind": kind, "values": values, "after": request.POST.get("after", "")}
        return _editor(request, automation, add=add, problem=e)
    messages.success(request, f"Step {step.position + 1} added.")
    return _back(request, automation, f"step-{step.position + 1}")


@project_view
def automation_step_edit(request: HttpRequest, code, number: int) -> HttpResponse:
    automation = _get_automation(request, code)
    step = _get_step(automation, number)
    values, problem = editing.form_values(step, step.kind), None
    if request.method == "POST":
        values = {name: request.POST.get(name, "") for name in request.POST}
        try:
            actions.update_step(step, editing.config_from_form(step.kind, request.POST))
        except AutomationError as e:
            problem = e
        else:
            messages.success(request, f"Step {number} saved.")
            return _back(request, automation, f"step-{number}")
    context = {
        "automation": automation,
        "step": step,
        "number": number,
        "form": {"kind": step.kind, "label": step.get_kind_display(), "values": values},
        "problem": problem,
        **_step_choices(request.project),
    }
    return render(request, "automations/step.html", context, status=422 if problem else 200)


@require_POST
@project_view
def automation_step_action(request: HttpRequest, code, number: int, action: str) -> HttpResponse:
    automation = _get_automation(request, code)
    step = _get_step(automation, number)
    try:
        if action in ("up", "down"):
            actions.swap_step(step, -1 if action == "up" else 1)
            messages.success(request, f"Step {number} moved {action}.")
            return _back(request, automation, f"step-{number + (-1 if action == 'up' else 1)}")
        if action == "delete":
            actions.remove_step(step)
            messages.success(request, f"Step {number} deleted.")
            return _back(request, automation, "steps")
    except AutomationError as e:
        messages.error(request, f"Step {number} was not moved: {e.message}")
        return _back(request, automation, f"step-{number}")
    raise Http404("No such action.")


@require_POST
@project_view
def automation_action(request: HttpRequest, code, action: str) -> HttpResponse:
    automation = _get_automation(request, code)
    if action in ("enable", "disable"):
        try:
            actions.set_enabled(automation, action == "enable")
        except AutomationError:
            messages.error(request, "Add a step first: an automation with no steps does nothing.")
        else:
            messages.success(request, _enabled_text(automation))
        return _back(request, automation)
    if action == "delete":
        name = automation.name
        editing.delete_automation(automation)
        messages.success(request, f"Automation “{name}” deleted, with its runs.")
        return redirect("automations", project_code=request.project.code)
    raise Http404("No such action.")


def _enabled_text(automation: Automation) -> str:
    if automation.enabled:
        return "Enabled: contacts who meet the trigger from now on start it."
    return "Disabled: no run starts, and waiting runs pause until it is enabled again."


@project_view
def automation_runs(request: HttpRequest, code) -> HttpResponse:
    automation = _get_automation(request, code)
    runs = Run.objects.filter(automation=automation).select_related("contact")
    state = request.GET.get("state", "")
    if state in Run.State.values:
        runs = runs.filter(state=state)
    else:
        state = ""
    page = keyset_page(
        runs, after=request.GET.get("after"), before=request.GET.get("before"), size=50
    )
    steps = list(automation.steps.order_by("position"))
    items = []
    for run in page.items:
        step = editing.run_step(run, steps)
        items.append({"run": run, "step": step, "step_description": describe(step) if step else ""})
    context = {
        "automation": automation,
        "trigger": editing.trigger_text(automation),
        "page": page,
        "items": items,
        "state": state,
        "states": Run.State.choices,
        "filter_query": filters_without_cursors(request.GET),
    }
    return render(request, "automations/runs.html", context)
