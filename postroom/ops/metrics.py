"""/metrics in Prometheus' text format: what monitors graph and alert on. Every figure comes
from an indexed or pre-counted read, so a scrape every few seconds costs the database little:
queues through the send loop's claim index, the send rate through (sender, sent_at), events
from the hourly counts (tracking.counts)."""

from __future__ import annotations

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


def render() -> str:
    from postroom.automations.models import Run
    from postroom.tracking.models import EventCursor, ProjectCount
    from postroom.tracking.stream import largest_event_id
    from postroom.webhooks.models import Delivery

    now = timezone.now()
    lines: list[str] = []
    waiting = [Message.State.QUEUED, Message.State.DEFERRED, Message.State.SENDING]
    by_state = Message.objects.filter(state__in=waiting).values("state").annotate(n=Count("id"))
    counts = {row["state"]: row["n"] for row in by_state}
    metric(
        lines,
        "postroom_messages",
        "gauge",
        "Messages waiting in the ledger, by state.",
        [({"state": s}, counts.get(s, 0)) for s in waiting],
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
