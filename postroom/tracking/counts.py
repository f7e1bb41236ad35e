"""Event counts per hour, rolled up by the worker, and the reads the pages make of them.

A campaign's report and the overview's chart count events; at millions of events, counting them
on every page view took seconds (bench/events.py). The worker adds new events, in id order and a
batch a step, to ProjectCount and EmailCount, and its cursor says how far it got. A page
reads the counts up to there plus the events above it, so it is exact however far behind the
worker is; only its speed depends on the worker keeping up.

Which ids are safe to read, whatever order PostgreSQL commits them in: tracking.stream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from postroom.delivery.models import Email
from postroom.tracking import stream
from postroom.tracking.models import EmailCount, Event, ProjectCount

READER = "counts"  # its EventCursor
BATCH_IDS = 20_000  # a step counts this many ids at most: about a fifth of a second
# Emails with a report of their own; a transactional send is one Email per request, and the
# overview's ProjectCount covers those.
REPORTED_EMAILS = (Email.Kind.CAMPAIGN, Email.Kind.AUTOMATION)

EMAIL_COUNTS = ("events", "unique_people", "unique_all")

T = TypeVar("T")


# --- the worker's step ------------------------------------------------------------------------


def roll_up_events(settle: float = stream.SETTLE_SECONDS) -> bool:
    """Count the next batch of events that are safe to count. True if it counted some (more
    may be waiting); False when there is nothing to count yet or another worker is at it."""
    return stream.read_events(READER, add_counts, BATCH_IDS, settle)


def add_counts(after_id: int, upto_id: int) -> None:
    events = Event.objects.filter(id__gt=after_id, id__lte=upto_id)
    project_rows = per_hour(events).values("project_id", "hour", "kind", "machine")
    project_rows = project_rows.annotate(events=Count("id")).order_by()
    upsert(ProjectCount, ("project_id", "hour", "kind", "machine"), ("events",), project_rows)
    reported = events.filter(email__kind__in=REPORTED_EMAILS).exclude(kind=Event.Kind.CUSTOM)
    email_key = ("email_id", "hour", "kind", "machine")
    upsert(EmailCount, email_key, EMAIL_COUNTS, email_counts(reported))


def per_hour(events: QuerySet) -> QuerySet:
    return events.annotate(hour=TruncHour("created_at", tzinfo=dt.UTC))


def email_counts(events: QuerySet) -> QuerySet:
    """Events per Email, hour, kind and machine flag, with how many were their message's first
    of that kind: made by a person, and made by anyone."""
    earlier = Event.objects.filter(
        message_id=OuterRef("message_id"), kind=OuterRef("kind"), id__lt=OuterRef("id")
    )
    return (
        per_hour(events)
        .values("email_id", "hour", "kind", "machine")
        .annotate(
            events=Count("id"),
            unique_people=Count(
                "id", filter=Q(machine=False) & ~Exists(earlier.filter(machine=False))
            ),
            unique_all=Count("id", filter=~Exists(earlier)),
        )
        .order_by()
    )


def upsert(model, key: tuple[str, ...], added: tuple[str, ...], rows: Iterable[dict]) -> None:
    """Add each row's counts to its counter row, making it if there is none (one statement for
    all rows; SQLite and PostgreSQL both know ON CONFLICT … DO UPDATE)."""
    rows = list(rows)
    if not rows:
        return
    table = model._meta.db_table
    columns = (*key, *added)
    adapt = connection.ops.adapt_datetimefield_value
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    values = ", ".join([one] * len(rows))
    params = [adapt(row[c]) if c == "hour" else row[c] for row in rows for c in columns]
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in added)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "  # noqa: S608
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}",
            params,
        )


# --- the pages' reads -------------------------------------------------------------------------


def counted_through() -> int:
    return stream.through(READER)


def as_of_one_moment(read: Callable[[int], T]) -> T:
    """`read(through_id)` reads counts up to `through_id` and events above it; if the worker
    moved on between those statements, an event could be in both, so read again (it moves a
    batch at most every fraction of a second; the reads take milliseconds)."""
    for _ in range(10):
        through = counted_through()
        result = read(through)
        if counted_through() == through:
            return result
    return result


def email_hours(email_id: int, kinds: Iterable[str]) -> list[dict]:
    """An Email's events per hour, kind and machine flag (EMAIL_COUNTS): counted rows and the
    events the worker has not counted yet, added up."""
    kinds = list(kinds)

    def read(through: int) -> list[dict]:
        counted = EmailCount.objects.filter(email_id=email_id, kind__in=kinds)
        rows = list(counted.values("hour", "kind", "machine", *EMAIL_COUNTS))
        recent = Event.objects.filter(email_id=email_id, kind__in=kinds, id__gt=through)
        return rows + list(email_counts(recent))

    return merge(as_of_one_moment(read), ("hour", "kind", "machine"), EMAIL_COUNTS)


def project_hours(project_id: int, kinds: Iterable[str], since: dt.datetime) -> list[dict]:
    """A project's events per hour, kind and machine flag since `since` (an hour's start)."""
    kinds = list(kinds)

    def read(through: int) -> list[dict]:
        counted = ProjectCount.objects.filter(
            project_id=project_id, kind__in=kinds, hour__gte=since
        )
        rows = list(counted.values("hour", "kind", "machine", "events"))
        recent = Event.objects.filter(
            project_id=project_id, kind__in=kinds, id__gt=through, created_at__gte=since
        )
        recent = per_hour(recent).values("hour", "kind", "machine").annotate(events=Count("id"))
        return rows + list(recent.order_by())

    return merge(as_of_one_moment(read), ("hour", "kind", "machine"), ("events",))


def merge(rows: list[dict], key: tuple[str, ...], added: tuple[str, ...]) -> list[dict]:
    merged: dict[tuple, dict] = {}
    for row in rows:
        row["hour"] = as_utc(row["hour"])
        k = tuple(row[c] for c in key)
        if k in merged:
            for c in added:
                merged[k][c] += row[c]
        else:
            merged[k] = {c: row[c] for c in (*key, *added)}
    return sorted(merged.values(), key=lambda r: (r["hour"], r["kind"], r["machine"]))


def as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if timezone.is_naive(value) else value.astimezone(dt.UTC)


def local_day(hour: dt.datetime) -> dt.datetime:
    """The start of the day `hour` falls in, in the site's time zone (as TruncDay counts)."""
    return timezone.localtime(hour).replace(hour=0, minute=0, second=0, microsecond=0)
