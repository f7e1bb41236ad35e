from __future__ import annotations

import datetime as dt
import hmac
from datetime import timedelta as td

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from postroom.accounts.decorators import project_view
from postroom.contacts.models import Contact, Segment, Status
from postroom.lib.querytime import QueryTooSlow, time_limit
from postroom.ops import health
from postroom.ops import metrics as ops_metrics
from postroom.ops.models import WorkerHeartbeat
from postroom.tracking.counts import local_day, project_hours
from postroom.tracking.models import Event


@project_view
def overview(request: HttpRequest) -> HttpResponse:
    contacts = Contact.objects.filter(project=request.project)
    now = timezone.now()
    figures = contacts.aggregate(
        total=Count("id"),
        **{s: Count("id", filter=Q(status=s)) for s in Status.values},
        last_7_days=Count("id", filter=Q(created_at__gte=now - td(days=7))),
        last_30_days=Count("id", filter=Q(created_at__gte=now - td(days=30))),
    )
    context = {
        "figures": figures,
        "statuses": [(label, figures[value], value) for value, label in Status.choices],
        "segment_count": Segment.objects.filter(project=request.project).count(),
        "growth": _daily_growth(contacts, days=30),
        **_daily_mail(request.project, days=30),
    }
    return render(request, "ops/overview.html", context)


MAIL_KINDS = (Event.Kind.SENT, Event.Kind.DELIVERED, Event.Kind.OPENED)


def _daily_mail(project, days: int) -> dict:
    """Sent, delivered and opened (by people) per day over the last `days` days, for the
    overview's chart, from the hourly counts (tracking.counts); an error to show instead when
    the query fails or takes too long."""
    today = timezone.localtime(timezone.now())
    start = (today - td(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        with time_limit(5):
            hours = project_hours(project.id, MAIL_KINDS, start)
    except (QueryTooSlow, DatabaseError) as e:
        return {"mail_failure": str(e)}
    by_day: dict = {}
    for row in hours:
        if not row["machine"]:
            day = by_day.setdefault(local_day(row["hour"]), dict.fromkeys(MAIL_KINDS, 0))
            day[row["kind"]] += row["events"]
    series = {"t": [], **{k: [] for k in MAIL_KINDS}}
    for i in range(days):
        day = start + td(days=i)  # wall-clock arithmetic: midnight each day, DST or not
        series["t"].append(int(day.timestamp()))
        for k in MAIL_KINDS:
            series[k].append(by_day.get(day, {}).get(k, 0))
    labels = {kind: Event.Kind(kind).label for kind in MAIL_KINDS}
    return {
        "mail_chart": {"bucket": "day", "series": series, "labels": labels},
        "mail_total": sum(sum(series[k]) for k in MAIL_KINDS),
    }


def _daily_growth(contacts, days: int) -> list[dict]:
    """New contacts per day over the last `days` days, for the overview's bar chart."""
    from django.db.models.functions import TruncDate

    since = (timezone.now() - td(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        contacts.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
    )
    by_day = {r["day"]: r["n"] for r in rows}
    start = since.date()
    series = [
        {"day": start + dt.timedelta(days=i), "n": by_day.get(start + dt.timedelta(days=i), 0)}
        for i in range(days)
    ]
    peak = max((d["n"] for d in series), default=0) or 1
    for d in series:
        d["height"] = round(d["n"] * 100 / peak)
    return series


def _health_context() -> dict:
    results = health.run_all()
    try:
        workers = list(WorkerHeartbeat.objects.order_by("-last_beat_at")[:20])
        depth = health.queue_depth()
    except Exception:
        workers, depth = [], {}
    return {
        "results": results,
        "healthy": all(r.status != health.ERROR for r in results),
        "workers": workers,
        "depth": depth,
        "now": timezone.now(),
    }


@login_required
def health_page(request: HttpRequest) -> HttpResponse:
    # Hosts, paths and error texts are for operators (staff), not every project member.
    if not request.user.is_staff:
        raise PermissionDenied("System health is shown to Postroom administrators.")
    context = _health_context()
    template = "ops/_health_body.html" if request.htmx else "ops/health.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


LOOPBACK = {"127.0.0.1", "::1"}


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format. With POSTROOM_METRICS_TOKEN set, a scraper sends it as a
    bearer token; without one, loopback (a scraper on the same machine) and staff only."""
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return HttpResponse(
                "A bearer token is needed.\n", status=401, content_type="text/plain"
            )
    elif request.META.get("REMOTE_ADDR") not in LOOPBACK and not (
        request.user.is_authenticated and request.user.is_staff
    ):
        return HttpResponse(
            "Set POSTROOM_METRICS_TOKEN to scrape from elsewhere.\n",
            status=403,
            content_type="text/plain",
        )
    response = HttpResponse(
        ops_metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8"
    )
    response["Cache-Control"] = "no-store"
    return response


def health_json(request: HttpRequest) -> JsonResponse:
    """For load balancers and monitors: 200 when healthy, 503 when any check is an error.

    Anyone may ask; only staff get the messages (they name hosts, paths and errors)."""
    results = health.run_all()
    healthy = all(r.status != health.ERROR for r in results)
    detailed = request.user.is_authenticated and request.user.is_staff
    checks = [r.__dict__ if detailed else {"name": r.name, "status": r.status} for r in results]
    body = {"healthy": healthy, "checks": checks}
    response = JsonResponse(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response
