"""Alerts: the health checks (ops.health) watched once a minute by the worker. A check that
goes wrong raises an alert, told once by email to the site's administrators (staff users) and
posted as JSON to POSTROOM_ALERT_WEBHOOK_URL; when it is fine again the alert clears, and that
is told too. A check that worsens (a warning becoming an error) is told again.

A stopped worker cannot say so itself: `postroom doctor --alert`, run from cron, watches the
same checks from outside (and the health page and /health.json show them to monitors).
"""

from __future__ import annotations

import json
import logging

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.template.loader import render_to_string
from django.utils import timezone

from postroom.accounts.models import User
from postroom.lib.emails import one_line
from postroom.ops.health import ERROR, OK, Result, run_all
from postroom.ops.models import Alert
from postroom.webhooks.signing import signature_header

log = logging.getLogger("postroom.alerts")


def check_and_alert(results: list[Result] | None = None) -> tuple[list[Alert], list[Alert]]:
    """Raise alerts for checks gone wrong, clear those that are fine again, and tell the
    admins of both. Returns (raised, cleared)."""
    results = run_all() if results is None else results
    wrong = {r.name: r for r in results if r.status != OK}
    now = timezone.now()
    raised, cleared = [], []
    for alert in Alert.objects.filter(cleared_at=None):
        result = wrong.pop(alert.check_name, None)
        if result is None:
            alert.cleared_at = now
            alert.save(update_fields=["cleared_at"])
            cleared.append(alert)
        elif result.status == ERROR and alert.status != ERROR:
            alert.status, alert.message = result.status, result.message
            alert.save(update_fields=["status", "message"])
            raised.append(alert)
    for result in wrong.values():
        raised.append(
            Alert.objects.create(
                check_name=result.name, status=result.status, message=result.message
            )
        )
    if raised or cleared:
        tell(raised, cleared)
    return raised, cleared


def tell(raised: list[Alert], cleared: list[Alert]) -> None:
    context = {"raised": raised, "cleared": cleared, "site": settings.SITE_URL}
    admins = list(
        User.objects.filter(is_staff=True, is_active=True).values_list("email", flat=True)
    )
    if admins:
        try:
            send_mail(
                subject=one_line(render_to_string("ops/emails/alert-subject.txt", context)),
                message=render_to_string("ops/emails/alert-body-text.txt", context),
                from_email=None,
                recipient_list=admins,
            )
        except OSError:
            log.exception("could not email the alert")
    if settings.ALERT_WEBHOOK_URL:
        post_alert(raised, cleared)


def post_alert(raised: list[Alert], cleared: list[Alert]) -> None:
    body = json.dumps(
        {
            "site": settings.SITE_URL,
            "raised": [alert_data(a) for a in raised],
            "cleared": [alert_data(a) for a in cleared],
        },
        cls=DjangoJSONEncoder,
    ).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Postroom-Alerts/1"}
    if settings.ALERT_WEBHOOK_SECRET:
        headers["Postroom-Signature"] = signature_header(settings.ALERT_WEBHOOK_SECRET, body)
    try:
        requests.post(settings.ALERT_WEBHOOK_URL, data=body, headers=headers, timeout=(3, 10))
    except requests.RequestException:
        log.exception("could not post the alert to POSTROOM_ALERT_WEBHOOK_URL")


def alert_data(alert: Alert) -> dict:
    return {
        "check": alert.check_name,
        "status": alert.status,
        "message": alert.message,
        "raised_at": alert.raised_at,
        "cleared_at": alert.cleared_at,
    }
