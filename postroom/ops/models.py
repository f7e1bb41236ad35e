"""Worker heartbeats: how doctor and the health page know a worker is alive."""

from __future__ import annotations

from datetime import timedelta as td

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    # host:pid, unique per running worker process.
    name = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_beat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    def is_fresh(self) -> bool:
        limit = td(seconds=settings.WORKER_STALE_AFTER)
        return self.stopped_at is None and timezone.now() - self.last_beat_at < limit

    @classmethod
    def fresh(cls) -> models.QuerySet:
        since = timezone.now() - td(seconds=settings.WORKER_STALE_AFTER)
        return cls.objects.filter(stopped_at=None, last_beat_at__gte=since)


class Alert(models.Model):
    """A health check that is not ok (ops.alerts): raised once, told to the admins once, and
    told again when it clears."""

    check_name = models.CharField(max_length=100)  # a health.Result's name
    status = models.CharField(max_length=10)  # warning or error
    message = models.TextField()
    raised_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The open alerts, read on every pass of the alert job.
            models.Index(
                fields=["check_name"], condition=models.Q(cleared_at=None), name="ops_alert_open"
            )
        ]

    def __str__(self) -> str:
        return f"{self.check_name}: {self.status}"
