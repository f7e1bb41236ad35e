"""Contact imports: the uploaded file, its settings, its progress and the rows it turned away.

An Import is the worker's queue row (DESIGN.md). The worker reads the file in chunks; each
chunk's contacts, its turned-away rows and the checkpoint (`records_done`) commit in one
transaction, so a killed worker resumes at the checkpoint with no row lost or done twice.
"""

from __future__ import annotations

import uuid
from datetime import timedelta as td
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project


class Import(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Waiting for settings"
        PENDING = "pending", "Waiting for the worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Mode(models.TextChoices):
        CREATE = "create", "Add new contacts only"
        UPSERT = "upsert", "Add new contacts and update existing ones"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe the listed addresses"
        SUPPRESS = "suppress", "Suppress the listed addresses (never mail them)"

    class Source(models.TextChoices):
        DASHBOARD = "dashboard", "Dashboard"
        API = "api", "API"
        CLI = "cli", "Command line"

    # Fields an update may overwrite in mode UPSERT (empty values never overwrite).
    OVERWRITABLE = {
        "names": "First and last name",
        "data": "Custom fields",
        "status": "Subscription status",
    }

    project = models.ForeignKey(Project, models.CASCADE, related_name="imports")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.DASHBOARD)
    created_by = models.ForeignKey("accounts.User", models.SET_NULL, null=True, blank=True)
    # As uploaded (shown, never used as a path); the data lives at `path`.
    file_name = models.CharField(max_length=255)
    file_size = models.BigIntegerField(default=0)

    # What the sniffer guessed, kept to show beside what the person chose.
    detected = models.JSONField(default=dict)
    encoding = models.CharField(max_length=20)
    delimiter = models.CharField(max_length=1)
    has_header = models.BooleanField(default=True)
    headers = models.JSONField(default=list)
    mapping = models.JSONField(default=list)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.CREATE)
    overwrite = models.JSONField(default=list)
    tags = models.JSONField(default=list)
    dry_run = models.BooleanField(default=False)

    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    error = models.CharField(max_length=500, blank=True)
    # Estimated from the file's line count when the import starts (imports.rows.estimate_rows),
    # exact when it ends.
    total_rows = models.IntegerField(null=True, blank=True)
    # The checkpoint: records of the file read and committed (after the header).
    records_done = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    # Renewed with every chunk (under a second each): a dead worker's import resumes soon.
    LEASE = td(seconds=30)

    class Meta:
        indexes = [
            # Claimed by the worker step imports.actions.handle_one_import.
            models.Index(fields=["state", "lease_until"], name="imports_queue"),
            # The imports page, newest first.
            models.Index(fields=["project", "id"], name="imports_page"),
        ]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.state})"

    @property
    def path(self) -> Path:
        return settings.IMPORTS_DIR / f"{self.code}.data"

    def delimiter_name(self) -> str:
        return "tab" if self.delimiter == "\t" else f"“{self.delimiter}”"

    def is_finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED, self.State.CANCELLED)

    def is_active(self) -> bool:
        return self.state in (self.State.PENDING, self.State.RUNNING)

    def progress_percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(99, int(self.records_done * 100 / self.total_rows))

    def elapsed_seconds(self) -> float:
        if not self.started_at:
            return 0.0
        end = self.finished_at or timezone.now()
        return max((end - self.started_at).total_seconds(), 0.001)

    def rows_per_second(self) -> int | None:
        if not self.started_at or not self.records_done:
            return None
        return int(self.records_done / self.elapsed_seconds())

    def eta_seconds(self) -> int | None:
        """Seconds left at the rate so far, or None before there is a rate to go by."""
        rate = self.rows_per_second()
        if self.is_finished() or not rate or self.total_rows is None:
            return None
        return int(max(self.total_rows - self.records_done, 0) / rate)

    def counts(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "rejected": self.rejected,
        }


class ImportIssue(models.Model):
    """A row the import turned away (rejected: bad data) or passed over (skipped: a duplicate,
    an existing contact in mode create), with its line and the reason: the report."""

    class Kind(models.TextChoices):
        REJECTED = "rejected", "Rejected"
        SKIPPED = "skipped", "Skipped"

    run = models.ForeignKey(Import, models.CASCADE, related_name="issues")
    line = models.IntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    reason = models.CharField(max_length=300)
    # The row as it was in the file (cells joined by the file's delimiter), cut short.
    raw = models.TextField()

    class Meta:
        indexes = [
            # The rejected-rows report, in file order.
            models.Index(fields=["run", "line"], name="imports_issue_report"),
        ]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"
