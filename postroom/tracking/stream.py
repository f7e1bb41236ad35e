"""Reading new events in id order, for the worker's readers (tracking.counts and others): each
has a cursor (EventCursor) and takes the next range of ids a step, in one transaction with the
cursor's move, so no event is handled twice or skipped, whatever crashes.

Which ids are safe to read: SQLite gives ids out under its one write lock, so every id up to the
largest committed one is final. PostgreSQL gives them out before commit (a transaction holding
id 100 can commit after another committed 101). So an id M read as the largest is safe only
once (1) at least `settle` seconds later a reader took a transaction id X and (2) no other
session of the database is in a transaction older than X. A transaction that inserted an event
id up to M took its transaction id in that same INSERT, long before (1), so by (2) it has
committed or rolled back. A transaction left open for hours in the database holds the readers
back (the health page shows how far behind they are).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from postroom.tracking.models import Event, EventCursor, EventStream

SETTLE_SECONDS = 1.0


def read_events(
    name: str,
    handle: Callable[[int, int], None],
    batch_ids: int,
    settle: float = SETTLE_SECONDS,
    from_now: bool = False,
) -> bool:
    """One step of the reader `name`: `handle(after_id, upto_id)` the next range of at most
    `batch_ids` ids that are safe to read, and move its cursor past it. True if it handled a
    range (more may wait); False when there is nothing new or another worker holds the reader.
    A reader whose cursor is missing starts from the first event, or `from_now` from the
    newest (webhooks and automations act on what happens, not on history)."""
    with transaction.atomic():
        cursor = EventCursor.objects.select_for_update(skip_locked=True).filter(name=name).first()
        if cursor is None:
            if EventCursor.objects.filter(name=name).exists():  # another worker is at it
                return False
            # Migrations make the cursors; a database emptied since (a test's flush) may not.
            start = largest_event_id() if from_now else 0
            cursor, _ = EventCursor.objects.get_or_create(name=name, defaults={"through_id": start})
        safe = safe_id(settle)
        if safe <= cursor.through_id:
            return False
        # From the next id there is: ids have gaps (rolled back inserts; on PostgreSQL, the
        # ids other connections cached).
        first = Event.objects.filter(id__gt=cursor.through_id).aggregate(m=Min("id"))["m"]
        upto = min(safe, (first or safe) - 1 + batch_ids)
        handle(cursor.through_id, upto)
        cursor.through_id = upto
        cursor.updated_at = timezone.now()
        cursor.save()
    return True


def through(name: str) -> int:
    """How far the reader `name` has got."""
    return EventCursor.objects.filter(name=name).values_list("through_id", flat=True).first() or 0


def safe_id(settle: float) -> int:
    """The largest id safe to read, moved on if it can be. Call inside a transaction."""
    EventStream.objects.get_or_create(pk=1)
    stream = EventStream.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    if stream is None:  # another reader is moving it on: take what it has
        return EventStream.objects.values_list("safe_id", flat=True).get(pk=1)
    before = (stream.safe_id, stream.next_id, stream.next_xid)
    advance(stream, settle)
    if (stream.safe_id, stream.next_id, stream.next_xid) != before:
        stream.save()
    return stream.safe_id


def advance(stream: EventStream, settle: float) -> None:
    if connection.vendor != "postgresql":
        stream.safe_id = max(stream.safe_id, largest_event_id())
        return
    now = timezone.now()
    if stream.next_id <= stream.safe_id:
        largest = largest_event_id()
        if largest <= stream.safe_id:
            return
        stream.next_id, stream.next_seen_at, stream.next_xid = largest, now, None
    with connection.cursor() as cursor:
        if stream.next_xid is None:
            if now - stream.next_seen_at < dt.timedelta(seconds=settle):
                return
            # This transaction's own id: every transaction that took one before it is older.
            cursor.execute("SELECT pg_current_xact_id()::text")
            stream.next_xid = int(cursor.fetchone()[0])
        if older_transactions_have_ended(cursor, stream.next_xid):
            stream.safe_id, stream.next_xid = stream.next_id, None


def older_transactions_have_ended(cursor, xid: int) -> bool:
    """Whether no other session of this database is in a transaction older than `xid` (one
    that took its id before). Sessions of other databases cannot write our events, so a long
    transaction there does not hold the readers back. pg_stat_activity shows other sessions'
    transaction ids to the same role (the app's), and is read afresh, not from the copy a
    transaction keeps of it."""
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL "
        "AND age(backend_xid) > age(%s::text::xid))",
        [str(xid % 2**32)],
    )
    return cursor.fetchone()[0]


def largest_event_id() -> int:
    return Event.objects.aggregate(m=Max("id"))["m"] or 0
