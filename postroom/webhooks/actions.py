"""Outgoing webhooks: endpoints, what is queued for them, and the worker's deliveries.

What happens is queued in the transaction that made it happen (`emit`: an outbox, so a change
rolled back sends nothing), or, for email events, by the worker reading new events in id order
(tracking.stream), so the hot paths that record opens and sends pay nothing for webhooks. The
worker posts due deliveries a batch at a time, all at once, each signed (webhooks.signing).
A failure is retried with exponential backoff for up to a day; the endpoint backs off too, so
a dead endpoint gets one attempt per backoff step, not one per waiting delivery. An endpoint
that has failed for a day is disabled and its project's owners and admins are emailed.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta as td

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from postroom.accounts.actions import email_project_admins
from postroom.accounts.models import Project
from postroom.lib.emails import one_line
from postroom.lib.ids import uuid7
from postroom.tracking import stream
from postroom.tracking.models import Event
from postroom.webhooks.models import (
    EMAIL_TYPES,
    EVENT_TYPES,
    TEST_TYPE,
    Delivery,
    Endpoint,
    new_secret,
)
from postroom.webhooks.signing import signature_header
from postroom.webhooks.targets import TargetRefused, check_url, guarded_session

log = logging.getLogger("postroom.webhooks")

READER = "webhooks"  # its EventCursor (tracking.stream)
READ_BATCH_IDS = 5000
BATCH = 20  # deliveries claimed a step, all posted at once: a step lasts one timeout at most,
# however many endpoints hang (the worker's other steps, sending mail first, wait meanwhile)
PER_ENDPOINT = 4  # of one endpoint a step: a dead one costs a few attempts, then backs off
TIMEOUT = (3.0, 5.0)  # seconds to connect, and to wait for the answer
RESPONSE_KEPT = 500  # characters of the answer kept in the log
BACKOFF_FIRST = td(seconds=30)
BACKOFF_MOST = td(hours=1)
KEEP_DAYS = 30
USER_AGENT = "Postroom-Webhooks/1"


class EndpointError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


# --- endpoints --------------------------------------------------------------------------------


def clean_endpoint(url: str, event_types: list[str], description: str) -> tuple[str, list, str]:
    url = (url or "").strip()
    if not url or len(url) > 2000:
        raise EndpointError("url", "give the URL to post to (2,000 characters at most).")
    try:
        check_url(url)
    except TargetRefused as e:
        raise EndpointError("url", str(e)) from None
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise EndpointError("event_types", f"unknown: {', '.join(unknown)}.")
    if not event_types:
        raise EndpointError("event_types", "choose at least one event type.")
    chosen = [t for t in EVENT_TYPES if t in set(event_types)]  # in a stable order
    return url, chosen, one_line(description or "")[:200]


def create_endpoint(
    project: Project, url: str, event_types: list[str], description: str = ""
) -> Endpoint:
    url, event_types, description = clean_endpoint(url, event_types, description)
    endpoint = Endpoint.objects.create(
        project=project, url=url, event_types=event_types, description=description
    )
    forget_endpoints()
    return endpoint


def update_endpoint(
    endpoint: Endpoint, url: str, event_types: list[str], description: str = ""
) -> None:
    endpoint.url, endpoint.event_types, endpoint.description = clean_endpoint(
        url, event_types, description
    )
    endpoint.save(update_fields=["url", "event_types", "description"])
    forget_endpoints()


def rotate_secret(endpoint: Endpoint) -> None:
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret"])


def enable(endpoint: Endpoint) -> None:
    """Back on, with a clean slate: the next failures count from now."""
    Endpoint.objects.filter(pk=endpoint.pk).update(
        enabled=True,
        disabled_reason="",
        failing_since=None,
        next_attempt_at=None,
        consecutive_failures=0,
    )
    forget_endpoints()


@transaction.atomic
def disable(endpoint: Endpoint, reason: str) -> None:
    """Off; what was waiting for it is given up (a redelivery can send it again)."""
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason=reason[:300])
    Delivery.objects.filter(endpoint=endpoint, state=Delivery.State.PENDING).update(
        state=Delivery.State.FAILED, last_error="The endpoint was disabled.", claim=None
    )
    forget_endpoints()


def delete_endpoint(endpoint: Endpoint) -> None:
    endpoint.delete()
    forget_endpoints()


# --- queueing ---------------------------------------------------------------------------------

# Each process keeps which endpoints want what for a moment, so that emitting on a busy path
# (every contact update) costs no query when a project has no endpoints. An endpoint created
# in another process is seen at most this much later.
ENDPOINT_CACHE_SECONDS = 2.0
_endpoints: dict[int, tuple[float, list[tuple[int, frozenset]]]] = {}


def forget_endpoints() -> None:
    _endpoints.clear()


def wanting(project_id: int, event_type: str) -> list[int]:
    """The ids of the project's enabled endpoints that take `event_type`."""
    cached = _endpoints.get(project_id)
    if cached is None or cached[0] < time.monotonic():
        rows = Endpoint.objects.filter(project_id=project_id, enabled=True)
        found = [(e_id, frozenset(types)) for e_id, types in rows.values_list("id", "event_types")]
        cached = (time.monotonic() + ENDPOINT_CACHE_SECONDS, found)
        _endpoints[project_id] = cached
    return [e_id for e_id, types in cached[1] if event_type in types]


def envelope(event_type: str, data: dict, at=None) -> dict:
    """The body every delivery posts: the event's id (the same on a redelivery, for receivers
    to drop a repeat), its type, when it happened, and its data."""
    return {
        "id": str(uuid7()),
        "type": event_type,
        "created_at": (at or timezone.now()).isoformat(),
        "data": data,
    }


def emit(project_id: int, event_type: str, data: dict) -> int:
    """Queue `event_type` for the project's endpoints that want it, in the caller's transaction;
    how many deliveries."""
    endpoint_ids = wanting(project_id, event_type)
    if not endpoint_ids:
        return 0
    payload = as_json_data(envelope(event_type, data))
    Delivery.objects.bulk_create(
        Delivery(project_id=project_id, endpoint_id=e_id, event_type=event_type, payload=payload)
        for e_id in endpoint_ids
    )
    return len(endpoint_ids)


def as_json_data(payload: dict) -> dict:
    """Times and ids as the strings the body will carry."""
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def send_test(endpoint: Endpoint) -> Delivery:
    data = {"message": "A test event from Postroom.", "endpoint": str(endpoint.code)}
    return Delivery.objects.create(
        project_id=endpoint.project_id,
        endpoint=endpoint,
        event_type=TEST_TYPE,
        payload=as_json_data(envelope(TEST_TYPE, data)),
    )


def redeliver(delivery: Delivery) -> Delivery:
    """The same body again, as a new delivery (the log keeps both)."""
    if not delivery.endpoint.enabled:
        raise EndpointError("endpoint", "is disabled: enable it first.")
    return Delivery.objects.create(
        project_id=delivery.project_id,
        endpoint_id=delivery.endpoint_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
    )


# --- email events, read from the events --------------------------------------------------------


def read_email_events(settle: float = stream.SETTLE_SECONDS) -> bool:
    """Worker step: queue the next batch of new email events for the endpoints that want them."""
    return stream.read_events(READER, queue_email_events, READ_BATCH_IDS, settle, from_now=True)


def queue_email_events(after_id: int, upto_id: int) -> None:
    by_project: dict[int, list[Endpoint]] = {}
    for endpoint in Endpoint.objects.filter(enabled=True).only(
        "id", "project_id", "event_types", "created_at"
    ):
        if set(endpoint.event_types) & set(EMAIL_TYPES):
            by_project.setdefault(endpoint.project_id, []).append(endpoint)
    if not by_project:
        return
    events = list(
        Event.objects.filter(id__gt=after_id, id__lte=upto_id, project_id__in=by_project)
        .exclude(kind=Event.Kind.CUSTOM)
        .select_related("contact", "message")
        .order_by("id")
    )
    campaigns = campaigns_of({e.email_id for e in events if e.email_id})
    deliveries = []
    for event in events:
        event_type = f"email.{event.kind}"
        payload = None
        for endpoint in by_project[event.project_id]:
            # An endpoint hears what happened after it was made, not the backlog before.
            if event_type not in endpoint.event_types or event.created_at < endpoint.created_at:
                continue
            if payload is None:
                data = email_event_data(event, campaigns.get(event.email_id))
                payload = as_json_data(envelope(event_type, data, event.created_at))
            deliveries.append(
                Delivery(
                    project_id=event.project_id,
                    endpoint_id=endpoint.id,
                    event_type=event_type,
                    payload=payload,
                )
            )
    Delivery.objects.bulk_create(deliveries, batch_size=1000)


def campaigns_of(email_ids: set[int]) -> dict[int, dict]:
    from postroom.campaigns.models import Campaign

    rows = Campaign.objects.filter(email_id__in=email_ids).values_list("email_id", "code", "name")
    return {email_id: {"id": str(code), "name": name} for email_id, code, name in rows}


def email_event_data(event: Event, campaign: dict | None) -> dict:
    message, contact = event.message, event.contact
    return {
        "event": str(event.code),
        "email": message.to_email if message else (contact.email if contact else None),
        "message": str(message.code) if message else None,
        "contact": {"id": str(contact.code), "email": contact.email} if contact else None,
        "campaign": campaign,
        "url": event.url or None,
        "machine": event.machine,
        "details": event.data or {},
    }


# --- delivering -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None = None  # None: no HTTP answer (refused target, timeout, no route)
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def handle_one_webhook_batch() -> bool:
    """Worker step: post a batch of due deliveries. True when there was one."""
    token, batch = claim_deliveries(BATCH)
    if not batch:
        return False
    with ThreadPoolExecutor(len(batch)) as pool:
        answers = list(pool.map(post, batch))
    settle(token, batch, answers)
    return True


def claim_deliveries(limit: int) -> tuple[uuid.UUID, list[Delivery]]:
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        due = (
            Delivery.objects.filter(state=Delivery.State.PENDING, next_attempt_at__lte=now)
            .filter(Q(lease_until=None) | Q(lease_until__lt=now))
            .filter(endpoint__enabled=True)
            .filter(Q(endpoint__next_attempt_at=None) | Q(endpoint__next_attempt_at__lte=now))
            .order_by("next_attempt_at", "id")
        )
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True, of=("self",))
        ids, per_endpoint = [], Counter()
        for delivery_id, endpoint_id in due.values_list("id", "endpoint_id")[: limit * 4]:
            if per_endpoint[endpoint_id] < PER_ENDPOINT:
                ids.append(delivery_id)
                per_endpoint[endpoint_id] += 1
            if len(ids) == limit:
                break
        if not ids:
            return token, []
        Delivery.objects.filter(id__in=ids, state=Delivery.State.PENDING).update(
            claim=token, lease_until=now + Delivery.LEASE, attempts=F("attempts") + 1
        )
    batch = Delivery.objects.filter(claim=token, state=Delivery.State.PENDING)
    return token, list(batch.select_related("endpoint").order_by("id"))


def post(delivery: Delivery) -> Answer:
    """POST one delivery (in a thread of its own: no database here)."""
    endpoint = delivery.endpoint
    try:
        check_url(endpoint.url)
    except TargetRefused as e:
        return Answer(error=f"Refused: {e}"[:300])
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Postroom-Event": delivery.event_type,
        "Postroom-Delivery": str(delivery.code),
        "Postroom-Signature": signature_header(endpoint.secret, body),
    }
    try:
        with (
            guarded_session() as session,
            session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=TIMEOUT,
                allow_redirects=False,  # a redirect could lead to where check_url refuses to go
                stream=True,
            ) as response,
        ):
            start = response.raw.read(RESPONSE_KEPT * 4, decode_content=True)
            text = start.decode(response.encoding or "utf-8", errors="replace")
            return Answer(status=response.status_code, body=text[:RESPONSE_KEPT])
    except TargetRefused as e:  # the name led elsewhere by the time it was connected to
        return Answer(error=f"Refused: {e}"[:300])
    except requests.RequestException as e:
        if isinstance(e.__context__, TargetRefused) or "private, loopback" in str(e):
            return Answer(error=f"Refused: {e.__context__ or e}"[:300])
        return Answer(error=f"{type(e).__name__}: {e}"[:300])


def backoff(failures: int) -> td:
    """30 s, 1 min, 2 min, … at most an hour."""
    return min(BACKOFF_FIRST * 2 ** max(0, failures - 1), BACKOFF_MOST)


def settle(token: uuid.UUID, batch: list[Delivery], answers: list[Answer]) -> None:
    now = timezone.now()
    by_endpoint: dict[int, list[bool]] = {}
    for delivery, answer in zip(batch, answers, strict=True):
        by_endpoint.setdefault(delivery.endpoint_id, []).append(answer.ok)
        changes = {
            "claim": None,
            "lease_until": None,
            "last_status": answer.status,
            "last_response": answer.body,
            "last_error": answer.error,
        }
        if answer.ok:
            changes |= {"state": Delivery.State.SUCCEEDED, "delivered_at": now}
        elif now - delivery.created_at >= Delivery.GIVE_UP_AFTER:
            changes["state"] = Delivery.State.FAILED
        else:
            changes["next_attempt_at"] = now + backoff(delivery.attempts)
        # Only while this worker still holds it: after a stall past the lease, another may.
        Delivery.objects.filter(pk=delivery.pk, claim=token).update(**changes)
    for endpoint in {d.endpoint_id: d.endpoint for d in batch}.values():
        settle_endpoint(endpoint, by_endpoint[endpoint.id], now)


def settle_endpoint(endpoint: Endpoint, outcomes: list[bool], now) -> None:
    if any(outcomes):
        Endpoint.objects.filter(pk=endpoint.pk).update(
            failing_since=None, next_attempt_at=None, consecutive_failures=0, last_success_at=now
        )
        return
    failures = endpoint.consecutive_failures + len(outcomes)
    failing_since = endpoint.failing_since or now
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=failing_since,
        next_attempt_at=now + backoff(failures),
        consecutive_failures=failures,
    )
    if now - failing_since >= td(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS):
        hours = settings.WEBHOOK_DISABLE_AFTER_HOURS
        reason = f"Every delivery failed for {hours} hours ({failures} attempts)."
        disable(endpoint, reason)
        alert_admins(endpoint, reason)


def alert_admins(endpoint: Endpoint, reason: str) -> None:
    project = Project.objects.get(pk=endpoint.project_id)
    context = {
        "endpoint": endpoint,
        "project": project,
        "reason": reason,
        "url": f"{settings.SITE_URL}/p/{project.code}/webhooks/{endpoint.code}/",
    }
    # The endpoint page and the health page still say so if the relay fails.
    email_project_admins(project, "webhooks/emails/disabled", context)


def prune_deliveries() -> int:
    """Periodic: forget finished deliveries after KEEP_DAYS."""
    before = timezone.now() - td(days=KEEP_DAYS)
    old = Delivery.objects.filter(created_at__lt=before).exclude(state=Delivery.State.PENDING)
    deleted, _ = old.delete()
    return deleted
