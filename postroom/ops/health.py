"""The checks behind `postroom doctor` and the health page."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import timedelta as td
from pathlib import Path

from django.conf import settings
from django.core import checks as django_checks
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Min, Q
from django.utils import timezone

from postroom.campaigns.models import Campaign
from postroom.contacts.models import BulkAction
from postroom.delivery.models import Message, Sender
from postroom.ops.models import WorkerHeartbeat
from postroom.tracking.models import EventCursor
from postroom.tracking.stream import largest_event_id

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass
class Result:
    name: str
    status: str
    message: str

    @property
    def ok(self) -> bool:
        return self.status == OK


def check_database() -> Result:
    try:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        ms = (time.monotonic() - started) * 1000
    except Exception as e:
        return Result("database", ERROR, f"cannot reach the database: {e}")
    return Result("database", OK, f"{connection.vendor} reachable ({ms:.1f} ms)")


def check_migrations() -> Result:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as e:
        return Result("migrations", ERROR, f"cannot read migrations: {e}")
    if plan:
        return Result("migrations", ERROR, f"{len(plan)} not applied: run `postroom migrate`")
    return Result("migrations", OK, "all applied")


def check_worker() -> Result:
    try:
        fresh = list(WorkerHeartbeat.fresh())
        last = WorkerHeartbeat.objects.order_by("-last_beat_at").first()
    except Exception as e:
        return Result("worker", ERROR, f"cannot read heartbeats: {e}")
    if fresh:
        names = ", ".join(w.name for w in fresh)
        return Result("worker", OK, f"{len(fresh)} running ({names})")
    if last is None:
        return Result("worker", ERROR, "no worker has ever run: start `postroom worker`")
    ago = int((timezone.now() - last.last_beat_at).total_seconds())
    return Result(
        "worker", ERROR, f"no heartbeat for {ago} s (last: {last.name}): start `postroom worker`"
    )


def _depth(qs, field: str) -> dict:
    oldest = qs.aggregate(oldest=Min(field))["oldest"]
    age = int((timezone.now() - oldest).total_seconds()) if oldest else 0
    return {"count": qs.count(), "oldest_seconds": age}


def queue_depth() -> dict:
    """Queued work per queue: how many and how old the oldest is, in seconds."""
    return {
        "messages": _depth(Message.objects.filter(state=Message.State.QUEUED), "created_at"),
        "messages_deferred": _depth(
            Message.objects.filter(state=Message.State.DEFERRED), "created_at"
        ),
        "bulk_actions": _depth(
            BulkAction.objects.filter(
                state__in=[BulkAction.State.PENDING, BulkAction.State.RUNNING]
            ),
            "created_at",
        ),
    }


def sender_queues() -> list[dict]:
    """Each sender with queued mail: how much, and how long the oldest has waited (seconds).
    Served by the send loop's claim index (sender, state, …)."""
    rows = (
        Message.objects.filter(state=Message.State.QUEUED)
        .values("sender_id", "sender__name", "sender__project__name")
        .annotate(count=Count("id"), oldest=Min("created_at"))
    )
    now = timezone.now()
    return [
        {
            "sender": f"{row['sender__project__name']} / {row['sender__name']}",
            "count": row["count"],
            "oldest_seconds": int((now - row["oldest"]).total_seconds()),
        }
        for row in rows
    ]


def check_queues() -> Result:
    try:
        depth = queue_depth()
        senders = sender_queues()
    except Exception as e:
        return Result("queues", ERROR, f"cannot read queues: {e}")
    stuck = {name: q for name, q in depth.items() if q["count"] and q["oldest_seconds"] > 3600}
    summary = ", ".join(f"{name}: {q['count']} queued" for name, q in depth.items())
    oldest = "; ".join(
        f"{s['sender']}: {s['count']} queued, oldest {s['oldest_seconds']} s" for s in senders
    )
    if oldest:
        summary += f" ({oldest})"
    if stuck:
        return Result("queues", WARNING, f"{summary}; oldest waiting over an hour")
    return Result("queues", OK, summary)


def check_webhooks() -> Result:
    """Webhook endpoints that fail, or were disabled for failing."""
    from postroom.webhooks.models import Endpoint

    try:
        failing = list(
            Endpoint.objects.filter(
                Q(enabled=True, failing_since__isnull=False)
                | Q(enabled=False, disabled_reason__startswith="Every delivery failed")
            ).select_related("project")[:5]
        )
    except Exception as e:
        return Result("webhooks", ERROR, f"cannot read webhook endpoints: {e}")
    if not failing:
        return Result("webhooks", OK, "no endpoint failing")
    detail = "; ".join(
        f"{e.project.name} / {e.url[:60]}: "
        + (f"failing since {e.failing_since:%Y-%m-%d %H:%M}" if e.enabled else "disabled")
        for e in failing
    )
    status = WARNING if all(e.enabled for e in failing) else ERROR
    return Result("webhooks", status, detail)


# Free space beside the SQLite database (and the data directory) below which doctor warns,
# and below which it is an error: SQLite cannot commit into a full disk.
DISK_WARNING_BYTES = 2 * 1024**3
DISK_ERROR_BYTES = 200 * 1024**2


def check_disk() -> Result:
    paths = {settings.DATA_DIR}
    if connection.vendor == "sqlite":
        paths.add(Path(settings.DATABASES["default"]["NAME"]).parent)
    try:
        free = {p: shutil.disk_usage(p).free for p in paths if p.exists()}
    except OSError as e:
        return Result("disk", ERROR, f"cannot read free space: {e}")
    if not free:
        return Result("disk", OK, "no data directory yet")
    path, least = min(free.items(), key=lambda item: item[1])
    message = f"{least / 1024**3:.1f} GB free beside {path}"
    if least < DISK_ERROR_BYTES:
        return Result("disk", ERROR, f"{message}: the database cannot grow much more")
    if least < DISK_WARNING_BYTES:
        return Result("disk", WARNING, message)
    return Result("disk", OK, message)


def check_settings() -> list[Result]:
    messages = django_checks.run_checks(include_deployment_checks=True)
    # Our own checks only; W001 (no SMTP) is reported by check_sender.
    messages = [
        m for m in messages if m.id and m.id.startswith("postroom.") and m.id != "postroom.W001"
    ]
    if not messages:
        return [Result("settings", OK, "no problems found")]
    return [
        Result(
            f"settings {m.id}",
            ERROR if m.level >= django_checks.ERROR else WARNING,
            f"{m.msg} {m.hint or ''}".strip(),
        )
        for m in messages
    ]


def check_senders() -> Result:
    """Senders that stopped sending because their relay refused the login or is down."""
    try:
        paused = list(Sender.objects.exclude(paused_reason="").select_related("project")[:5])
    except Exception as e:
        return Result("senders", ERROR, f"cannot read senders: {e}")
    if paused:
        detail = "; ".join(f"{s.project.name} / {s.name}: {s.paused_reason}" for s in paused)
        return Result("senders", ERROR, f"paused: {detail}")
    return Result("senders", OK, "every sender can send")


def check_stalled_campaigns() -> Result:
    try:
        stalled = list(Campaign.objects.exclude(stalled_at=None).select_related("project")[:5])
    except Exception as e:
        return Result("campaigns", ERROR, f"cannot read campaigns: {e}")
    if stalled:
        names = "; ".join(
            f"{c.project.name} / {c.name} since {c.stalled_at:%H:%M}" for c in stalled
        )
        return Result("campaigns", ERROR, f"stalled: {names}")
    return Result("campaigns", OK, "none stalled")


# A reader of new events that has not moved for this long while events wait: the reports read
# events themselves (slower), and what else reads them (webhooks, automations) waits.
READERS_STALE_AFTER = td(minutes=10)


def check_event_readers() -> Result:
    """The worker's readers of new events (tracking.stream): the counts behind the reports."""
    name = "event readers"
    try:
        largest = largest_event_id()
        cursors = list(EventCursor.objects.order_by("name"))
    except Exception as e:
        return Result(name, ERROR, f"cannot read the event cursors: {e}")
    behind = [c for c in cursors if c.through_id < largest]
    if not behind:
        return Result(name, OK, "every event read" if cursors else "no events yet")
    now = timezone.now()
    stale = [c for c in behind if now - c.updated_at >= READERS_STALE_AFTER]
    waiting = "; ".join(
        f"{c.name}: up to {largest - c.through_id:,} events waiting" for c in behind
    )
    if stale:
        minutes = int((now - min(c.updated_at for c in stale)).total_seconds() // 60)
        return Result(
            name, WARNING, f"{waiting}; none read for {minutes} min: is a worker running?"
        )
    return Result(name, OK, f"{waiting} (the worker is at it)")


def check_system_mail() -> Result:
    # System mail (resets, invitations) goes through Django's mail settings.
    name = "system mail"
    if settings.SMTP_URL:
        return Result(name, OK, f"via SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
    where = settings.EMAIL_FILE_PATH
    return Result(name, WARNING, f"no SMTP relay: resets and invitations are written to {where}")


def run_all() -> list[Result]:
    database = check_database()
    if database.status == ERROR:
        return [database]
    return [
        database,
        check_migrations(),
        check_worker(),
        check_queues(),
        check_senders(),
        check_stalled_campaigns(),
        check_event_readers(),
        check_webhooks(),
        check_disk(),
        check_system_mail(),
        *check_settings(),
    ]
