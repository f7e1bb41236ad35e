"""The webhooks pages: endpoints, their secret, a test event, and the delivery log with
redelivery. Managing endpoints is for owners and admins; every member can read the log."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import find_in_project
from postroom.webhooks import actions
from postroom.webhooks.actions import EndpointError
from postroom.webhooks.models import EMAIL_TYPES, EVENT_TYPES, Delivery, Endpoint


def _get_endpoint(request: HttpRequest, code) -> Endpoint:
    endpoint = find_in_project(Endpoint, request.project, code)
    if endpoint is None:
        raise Http404("No such endpoint.")
    return endpoint


def _back(request: HttpRequest, endpoint: Endpoint) -> HttpResponse:
    return redirect("webhook", project_code=request.project.code, code=endpoint.code)


def type_groups(chosen: list[str]) -> list[dict]:
    """The event types as the form shows them: email events, then the others."""
    others = [t for t in EVENT_TYPES if t not in EMAIL_TYPES]
    return [
        {"name": "Email events", "types": [(t, t in chosen) for t in EMAIL_TYPES]},
        {"name": "Contacts, campaigns and imports", "types": [(t, t in chosen) for t in others]},
    ]


@project_view
def webhooks(request: HttpRequest) -> HttpResponse:
    endpoints = Endpoint.objects.filter(project=request.project).order_by("id")
    return render(request, "webhooks/list.html", {"endpoints": endpoints})


@project_view(manage=True)
def webhook_edit(request: HttpRequest, code=None) -> HttpResponse:
    endpoint = _get_endpoint(request, code) if code else None
    values = {
        "url": endpoint.url if endpoint else "",
        "description": endpoint.description if endpoint else "",
        "event_types": endpoint.event_types if endpoint else list(EMAIL_TYPES),
    }
    problem = None
    if request.method == "POST":
        values = {
            "url": request.POST.get("url", ""),
            "description": request.POST.get("description", ""),
            "event_types": request.POST.getlist("event_types"),
        }
        try:
            if endpoint is None:
                endpoint = actions.create_endpoint(request.project, **values)
            else:
                actions.update_endpoint(endpoint, **values)
        except EndpointError as e:
            problem = e
        else:
            messages.success(request, "Endpoint saved. Send it a test event to try it.")
            return _back(request, endpoint)
    context = {
        "endpoint": endpoint,
        "values": values,
        "groups": type_groups(values["event_types"]),
        "problem": problem,
    }
    return render(request, "webhooks/edit.html", context, status=422 if problem else 200)


@project_view
def webhook_detail(request: HttpRequest, code) -> HttpResponse:
    endpoint = _get_endpoint(request, code)
    log = Delivery.objects.filter(endpoint=endpoint)
    state = request.GET.get("state", "")
    if state in Delivery.State.values:
        log = log.filter(state=state)
    page = keyset_page(
        log, after=request.GET.get("after"), before=request.GET.get("before"), size=50
    )
    context = {
        "endpoint": endpoint,
        "page": page,
        "state": state,
        "states": Delivery.State.choices,
        "filter_query": f"state={state}" if state else "",
        "show_secret": request.GET.get("secret") == "1" and request.membership.can_manage(),
    }
    return render(request, "webhooks/endpoint.html", context)


@require_POST
@project_view(manage=True)
def webhook_action(request: HttpRequest, code, action: str) -> HttpResponse:
    endpoint = _get_endpoint(request, code)
    if action == "test":
        actions.send_test(endpoint)
        messages.success(request, "A test event is queued; the log below shows its answer.")
    elif action == "rotate":
        actions.rotate_secret(endpoint)
        messages.success(request, "New secret made: the old one no longer signs anything.")
    elif action == "enable":
        actions.enable(endpoint)
        messages.success(request, "Endpoint enabled.")
    elif action == "disable":
        actions.disable(endpoint, "Disabled by hand.")
        messages.success(request, "Endpoint disabled; what was waiting for it was given up.")
    elif action == "delete":
        actions.delete_endpoint(endpoint)
        messages.success(request, "Endpoint deleted.")
        return redirect("webhooks", project_code=request.project.code)
    else:
        raise Http404("No such action.")
    return _back(request, endpoint)


@project_view
def webhook_delivery(request: HttpRequest, code, delivery_code) -> HttpResponse:
    endpoint = _get_endpoint(request, code)
    delivery = Delivery.objects.filter(endpoint=endpoint, code=delivery_code).first()
    if delivery is None:
        raise Http404("No such delivery.")
    if request.method == "POST":
        if not request.membership.can_manage():
            raise Http404("No such delivery.")
        try:
            again = actions.redeliver(delivery)
        except EndpointError as e:
            messages.error(request, e.message and f"The endpoint {e.message}")
        else:
            messages.success(request, "Queued again as a new delivery.")
            return redirect(
                "webhook_delivery",
                project_code=request.project.code,
                code=endpoint.code,
                delivery_code=again.code,
            )
    return render(request, "webhooks/delivery.html", {"endpoint": endpoint, "delivery": delivery})
