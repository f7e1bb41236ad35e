"""The worker's steps. Each takes one unit of work from the database and returns True when it
found some (the loop calls it again at once) or False (the loop moves on, then sleeps).

Add a step here when an app gains a queue-like table: the rows are the queue (DESIGN.md).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from postroom.accounts.actions import prune_api_records, prune_login_failures
from postroom.automations.actions import (
    check_segment_triggers,
    handle_one_automation_batch,
)
from postroom.automations.actions import read_events as read_automation_events
from postroom.campaigns.actions import (
    cancel_unsent_recipients,
    finish_done_campaigns,
    start_due_campaigns,
)
from postroom.campaigns.stalls import check_stalled_campaigns
from postroom.contacts.actions import handle_one_bulk_action
from postroom.delivery.sending import handle_one_send_batch, requeue_due
from postroom.delivery.transports import open_transports
from postroom.imports.actions import handle_one_import, prune_imports, release_imports
from postroom.ops.alerts import check_and_alert
from postroom.ops.models import WorkerHeartbeat
from postroom.signups.actions import prune_signups
from postroom.tracking.counts import roll_up_events
from postroom.tracking.mailbox import poll_bounce_mailbox
from postroom.webhooks.actions import (
    handle_one_webhook_batch,
    prune_deliveries,
    read_email_events,
)

log = logging.getLogger("postroom.worker")

STEPS: list[Callable[[], bool]] = [
    start_due_campaigns,
    requeue_due,
    handle_one_send_batch,
    handle_one_bulk_action,
    handle_one_import,
    cancel_unsent_recipients,
    finish_done_campaigns,
    roll_up_events,
    read_email_events,
    read_automation_events,
    handle_one_automation_batch,
    handle_one_webhook_batch,
]

# Housekeeping that runs once a minute, not on every pass.
PERIODIC: list[Callable[[], object]] = [
    prune_login_failures,
    prune_api_records,
    check_stalled_campaigns,
    prune_imports,
    poll_bounce_mailbox,
    prune_deliveries,
    check_segment_triggers,
    prune_signups,
    check_and_alert,
]

# A step returning True is called again at once, up to 100 times or for this long: an import
# or a bulk action (a fifth of a second a call) must not hold back sending for long.
STEP_BUDGET_SECONDS = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, name: str | None = None, idle_sleep: float = 1.0):
        self.name = name or worker_name()
        self.idle_sleep = idle_sleep
        self.stopping = False
        self.last_beat = 0.0
        self.last_periodic = 0.0

    def beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_beat >= settings.WORKER_HEARTBEAT_INTERVAL:
            WorkerHeartbeat.objects.update_or_create(
                name=self.name, defaults={"last_beat_at": timezone.now(), "stopped_at": None}
            )
            self.last_beat = now

    def run_once(self) -> bool:
        """One pass over every step; True if any of them found work."""
        found = False
        for step in STEPS:
            # Bounded so that one busy queue cannot starve the others or the heartbeat.
            deadline = time.monotonic() + STEP_BUDGET_SECONDS
            for _ in range(100):
                if self.stopping or not step():
                    break
                found = True
                if time.monotonic() > deadline:
                    break
        open_transports.close_idle()
        if time.monotonic() - self.last_periodic >= 60:
            for job in PERIODIC:
                job()
            self.last_periodic = time.monotonic()
        return found

    def run(self) -> None:
        WorkerHeartbeat.objects.update_or_create(
            name=self.name,
            defaults={
                "started_at": timezone.now(),
                "last_beat_at": timezone.now(),
                "stopped_at": None,
            },
        )
        log.info("worker %s started", self.name)
        while not self.stopping:
            close_old_connections()
            try:
                self.beat()
                found = self.run_once()
            except Exception:
                # A database hiccup must not kill the worker: log, wait, go on.
                log.exception("worker pass failed")
                found = False
            if not found:
                self.sleep(self.idle_sleep)
        open_transports.close_all()
        release_imports()
        WorkerHeartbeat.objects.filter(name=self.name).update(stopped_at=timezone.now())
        log.info("worker %s stopped", self.name)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))
