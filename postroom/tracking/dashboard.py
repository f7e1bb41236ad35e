"""The events page: every event of the project, newest first, with filters and keyset pages,
updating itself every few seconds. It renders a real state every time: events; an empty
project's next steps (a test email through the Mailbox, a `track` call to copy); no match for
the filters; or, when the query fails or outlasts EVENTS_QUERY_SECONDS, an error saying so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from django.contrib import messages
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.campaigns.models import Campaign
from postroom.contacts.models import Contact
from postroom.delivery.actions import DeliveryError, default_sender, send_test_email
from postroom.lib.emails import lookup_email
from postroom.lib.keyset import filters_without_cursors, keyset_page
from postroom.lib.querytime import QueryTooSlow, time_limit
from postroom.lib.scoping import find_in_project
from postroom.tracking.models import Event
from postroom.tracking.queries import EventFilter, filtered_events, page_order

log = logging.getLogger(__name__)

# A page's queries stop after this long and the page says so (issue 7).
EVENTS_QUERY_SECONDS = 5.0
PAGE_SIZE = 50
# How often the first page asks for what is new (htmx polling).
LIVE_SECONDS = 5


def parse_time(value: str) -> dt.datetime | None:
    """A datetime-local field's value, read in UTC; None when empty or malformed."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.UTC)


def event_filter(request: HttpRequest) -> tuple[EventFilter, dict[str, str], list[str]]:
    """The filters in the query string: the filter, the form's values, and what could not be
    used (an unknown contact, say), each said in a sentence."""
    params = {
        k: request.GET.get(k, "").strip()[:200]
        for k in ("kind", "name", "contact", "campaign", "since", "until", "people")
    }
    problems = []
    chosen = EventFilter(name=params["name"], people_only=params["people"] == "1")
    if params["kind"] in Event.Kind.values:
        chosen.kind = params["kind"]
    if params["contact"]:
        email = lookup_email(params["contact"])
        chosen.contact = (
            email and Contact.objects.filter(project=request.project, email=email).first()
        )
        if chosen.contact is None:
            problems.append(f"There is no contact {params['contact']!r} in this project.")
    if params["campaign"]:
        chosen.campaign = find_in_project(Campaign, request.project, params["campaign"])
        if chosen.campaign is None:
            problems.append("That campaign is not in this project.")
    for key in ("since", "until"):
        if params[key]:
            setattr(chosen, key, parse_time(params[key]))
            if getattr(chosen, key) is None:
                problems.append(f"{key}: not a date and time.")
    return chosen, params, problems


@project_view
def events(request: HttpRequest) -> HttpResponse:
    chosen, params, problems = event_filter(request)
    context = {
        "params": params,
        "problems": problems,
        "kinds": Event.Kind.choices,
        "live_seconds": LIVE_SECONDS,  # the error state polls too, to recover by itself
    }
    try:
        with time_limit(EVENTS_QUERY_SECONDS):
            context.update(events_page(request, chosen, problems))
    except QueryTooSlow as e:
        context["failure"] = f"The events could not be loaded in time: {e}. Narrow the filters."
    except DatabaseError as e:
        log.exception("events page query failed")
        context["failure"] = f"The events could not be loaded: {e}"
    template = "tracking/_events.html" if request.htmx else "tracking/events.html"
    if not request.htmx:
        context["campaigns"] = Campaign.objects.filter(project=request.project).order_by("-id")[
            :100
        ]
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"  # live data: never a stale copy
    return response


def events_page(request: HttpRequest, chosen: EventFilter, problems: list[str]) -> dict:
    qs = Event.objects.none() if problems else filtered_events(request.project, chosen)
    page = keyset_page(
        qs,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=PAGE_SIZE,
        by=page_order(chosen),
    )
    campaigns = dict(
        Campaign.objects.filter(
            email_id__in={e.email_id for e in page.items if e.email_id}
        ).values_list("email_id", "name")
    )
    first_page = not (request.GET.get("after") or request.GET.get("before"))
    return {
        "page": page,
        "rows": [
            {"event": e, "campaign": campaigns.get(e.email_id), "data": short_json(e.data)}
            for e in page.items
        ],
        "filter_query": filters_without_cursors(request.GET),
        "live": first_page,
        "live_seconds": LIVE_SECONDS,
        "filtered": not chosen.is_empty() or bool(problems),
        # Asked only when nothing matched: an empty project gets its next steps.
        "project_is_empty": not page.items
        and not Event.objects.filter(project=request.project).exists(),
        "checked_at": timezone.now(),
    }


def short_json(data: dict, limit: int = 100) -> str:
    """A custom event's data on one line, cut short for the table."""
    if not data:
        return ""
    text = json.dumps(data, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@require_POST
@project_view
def events_test_email(request: HttpRequest) -> HttpResponse:
    """The empty events page's button: a test email to the user through the default sender
    (the Mailbox out of the box); its "sent" event appears when the worker has sent it."""
    sender = default_sender(request.project)
    try:
        send_test_email(request.project, sender, request.user.email, request.user)
    except DeliveryError as e:
        messages.error(request, f"{e.field}: {e.message}")
    else:
        messages.success(
            request,
            f"A test email to {request.user.email} is on its way through “{sender.name}”; "
            "its events appear below as they happen.",
        )
    return redirect("events", project_code=request.project.code)
