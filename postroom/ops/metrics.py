"""/metrics in Prometheus' text format: what monitors graph and alert on. Every figure comes
from an indexed or pre-counted read, so a scrape every few seconds costs the database little:
queues through the send loop's claim index, the send rate through (sender, sent_at), events
from the hourly counts (tracking.counts); the settled messages are counted once a minute."""

from __future__ import annotations

import time
from datetime import timedelta as td

from django.db.models import Count, Min, Sum
from django.utils import timezone

from postroom.delivery.models import Message, Sender
from postroom.ops.models import WorkerHeartbeat


def metric(lines: list[str], name: str, kind: str, help_text: str, samples: list) -> None:
    """One metric: its HELP and TYPE, then (labels, value) samples."""
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        shown = ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items())
        lines.append(f"{name}{{{shown}}} {value}" if shown else f"{name} {value}")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# Counting every settled message (sent, failed, …) reads the whole ledger: done at most once a
# minute per process, the waiting states (the queue, served by its index) every scrape.
SETTLED_EVERY_SECONDS = 60.0
_settled: dict[str, object] = {"at": float("-inf"), "counts": {}}


def settled_counts() -> dict[str, int]:
    if time.monotonic() - _settled["at"] >= SETTLED_EVERY_SECONDS:
        rows = (
            Message.objects.exclude(
                state__in=[Message.State.QUEUED, Message.State.DEFERRED, Message.State.SENDING]
            )
            .values("state")
            .annotate(n=Count("id"))
        )
        _settled["counts"] = {row["state"]: row["n"] for row in rows}
        _settled["at"] = time.monotonic()
    return dict(_settled["counts"])


def render() -> str:
    from postroom.automations.models import Run
    from postroom.tracking.models import EventCursor, ProjectCount
    from postroom.tracking.stream import largest_event_id
    from postroom.webhooks.models import Delivery

    now = timezone.now()
    lines: list[str] = []
    waiting = [Message.State.QUEUED, Message.State.DEFERRED, Message.State.SENDING]
    by_state = Message.objects.filter(state__in=waiting).values("state").annotate(n=Count("id"))
    counts = dict.fromkeys(Message.State.values, 0) | settled_counts()
    counts |= {row["state"]: row["n"] for row in by_state}
    metric(
        lines,
        "postroom_messages",
        "gauge",
        "Messages in the ledger, by state (the settled ones counted once a minute).",
        [({"state": s}, counts[s]) for s in Message.State.values],
    )
    senders = list(Sender.objects.select_related("project"))
    minute_ago = now - td(minutes=1)
    sent = []
    oldest = []
    queued = Message.objects.filter(state=Message.State.QUEUED)
    first = dict(queued.values_list("sender_id").annotate(m=Min("created_at")))
    for sender in senders:
        labels = {"project": sender.project.name, "sender": sender.name}
        rate = Message.objects.filter(sender=sender, sent_at__gte=minute_ago).count()
        sent.append((labels, rate))
        since = first.get(sender.id)
        oldest.append((labels, int((now - since).total_seconds()) if since else 0))
    metric(lines, "postroom_sent_last_minute", "gauge", "Messages sent in the last minute.", sent)
    metric(
        lines,
        "postroom_queue_oldest_seconds",
        "gauge",
        "How long the oldest queued message of each sender has waited.",
        oldest,
    )
    events = ProjectCount.objects.values("kind").annotate(n=Sum("events")).order_by("kind")
    metric(
        lines,
        "postroom_events_total",
        "counter",
        "Events recorded, by kind (as counted by the worker).",
        [({"kind": row["kind"]}, row["n"]) for row in events],
    )
    largest = largest_event_id()
    metric(
        lines,
        "postroom_event_reader_lag",
        "gauge",
        "Event ids not yet read, by reader (counts, webhooks, automations).",
        [({"reader": c.name}, max(0, largest - c.through_id)) for c in EventCursor.objects.all()],
    )
    pending = Delivery.objects.filter(state=Delivery.State.PENDING).count()
    metric(
        lines, "postroom_webhook_deliveries_pending", "gauge", "Webhooks to post.", [({}, pending)]
    )
    runs = Run.objects.filter(state=Run.State.WAITING).count()
    metric(
        lines, "postroom_automation_runs_waiting", "gauge", "Automation runs waiting.", [({}, runs)]
    )
    workers = WorkerHeartbeat.fresh().count()
    metric(lines, "postroom_workers", "gauge", "Workers with a fresh heartbeat.", [({}, workers)])
    return "\n".join(lines) + "\n"
