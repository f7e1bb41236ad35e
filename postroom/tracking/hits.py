"""Opens and clicks ("hits"): from the pixel, tracked links and email services' webhooks.

Each hit is an event, flagged when a scanner probably made it (tracking.scanners), and the
message keeps the first open and click a person made. Written without the ORM: a campaign's
opens arrive in a burst, and building the ORM's queries cost most of a hit's CPU
(bench/events.py). Commits do not wait for the disk on PostgreSQL: a hit lost to a power cut is
an open not counted, never a wrong state.

The open pixel goes further: its requests hand their hits to this process's HitWriter, whose
thread writes whatever has gathered in one transaction (one lookup of the messages, one INSERT,
one UPDATE) while the next batch gathers; each request waits for its batch, so an answered
pixel is a recorded open. One transaction a hit topped out near 1,100 hits/s on two cores
(bench/events.py). POSTROOM_HIT_BATCHES=0 writes each hit in its own request.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from postroom.delivery.models import Message
from postroom.lib.groupcommit import GroupCommit
from postroom.lib.ids import uuid7
from postroom.tracking.models import Event
from postroom.tracking.scanners import is_machine

HIT_BATCH_MAX = 1000  # hits a statement at most (SQLite's limit on parameters)
WAIT_SECONDS = 5.0  # the longest a pixel request waits for its batch


@dataclass
class HitTarget:
    """What a hit needs of its message."""

    message_id: int
    project_id: int
    contact_id: int | None
    email_id: int
    sent_at: dt.datetime | None

    @classmethod
    def of(cls, message: Message) -> HitTarget:
        return cls(
            message.id, message.project_id, message.contact_id, message.email_id, message.sent_at
        )


@dataclass
class Hit:
    target: HitTarget
    kind: str  # Event.Kind.OPENED or CLICKED
    agent: str
    url: str = ""
    at: dt.datetime | None = None  # when it came; now if None


def hit_targets(codes: set[uuid.UUID]) -> dict[uuid.UUID, HitTarget]:
    """The messages of these public codes (those that still exist), in one query."""
    if not codes:
        return {}
    postgres = connection.vendor == "postgresql"
    table = Message._meta.db_table
    columns = "code, id, project_id, contact_id, email_id, sent_at"
    with connection.cursor() as cursor:
        if postgres:
            sql = f"SELECT {columns} FROM {table} WHERE code = ANY(%s::uuid[])"  # noqa: S608
            cursor.execute(sql, [list(codes)])
        else:
            marks = ", ".join(["%s"] * len(codes))
            sql = f"SELECT {columns} FROM {table} WHERE code IN ({marks})"  # noqa: S608
            cursor.execute(sql, [code.hex for code in codes])
        rows = cursor.fetchall()
    targets = {}
    for code, *fields in rows:
        target = HitTarget(*fields)
        if target.sent_at is not None and timezone.is_naive(target.sent_at):  # SQLite: UTC
            target.sent_at = target.sent_at.replace(tzinfo=dt.UTC)
        targets[code if isinstance(code, uuid.UUID) else uuid.UUID(code)] = target
    return targets


def write_hits(hits: list[Hit]) -> None:
    """The hits' events, and their messages' first open and click a person made (a click
    means the message was opened, pixel or not), in one transaction."""
    if not hits:
        return
    events, opened, clicked = [], {}, {}
    for hit in hits:
        at = hit.at or timezone.now()
        machine = is_machine(hit.target.sent_at, hit.agent)
        events.append((hit, machine, at))
        if not machine:
            message_id = hit.target.message_id
            opened[message_id] = min(at, opened.get(message_id, at))
            if hit.kind == Event.Kind.CLICKED:
                clicked[message_id] = min(at, clicked.get(message_id, at))
    with transaction.atomic(), connection.cursor() as cursor:  # on SQLite, on the writers' turn
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        insert_hit_events(cursor, events)
        set_first(cursor, "opened_at", opened)
        set_first(cursor, "clicked_at", clicked)


def insert_hit_events(cursor, events: list[tuple[Hit, bool, dt.datetime]]) -> None:
    insert_email_events(
        cursor,
        [
            (
                hit.target.project_id,
                hit.kind,
                hit.target.contact_id,
                hit.target.message_id,
                hit.target.email_id,
                hit.url[:2000],
                hit.agent[:300],
                machine,
                at,
            )
            for hit, machine, at in events
        ],
    )


def insert_email_events(cursor, rows: list[tuple]) -> None:
    """Email events in one statement, without the ORM (the send loop's "sent" and "failed",
    the hits): each row (project_id, kind, contact_id, message_id, email_id, url, user_agent,
    machine, created_at). PostgreSQL takes one array a column, not ten parameters a row."""
    postgres = connection.vendor == "postgresql"
    adapt = connection.ops.adapt_datetimefield_value
    values = []
    for project_id, kind, contact_id, message_id, email_id, url, agent, machine, at in rows:
        code = uuid7()
        values.append(
            (
                project_id,
                code if postgres else code.hex,
                kind,
                contact_id,
                message_id,
                email_id,
                url,
                agent,
                machine,
                adapt(at),
            )
        )
    table = Event._meta.db_table
    columns = (
        "project_id, code, kind, contact_id, message_id, email_id, url, user_agent, machine, "
        "created_at"
    )
    if postgres:
        cursor.execute(
            f"INSERT INTO {table} ({columns}, name, data) "  # noqa: S608
            "SELECT *, '', '{}' FROM unnest(%s::bigint[], %s::uuid[], %s::varchar[], "
            "%s::bigint[], %s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], "
            "%s::boolean[], %s::timestamptz[])",
            [list(column) for column in zip(*values, strict=True)],
        )
    else:
        one = "(" + ", ".join(["%s"] * 10) + ", '', '{}')"
        cursor.execute(
            f"INSERT INTO {table} ({columns}, name, data) VALUES "  # noqa: S608
            + ", ".join([one] * len(values)),
            [value for row in values for value in row],
        )


def set_first(cursor, column: str, first: dict[int, dt.datetime]) -> None:
    """Set `column` of each message that has none yet to its time in `first`."""
    if not first:
        return
    table = Message._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    where = f"WHERE {table}.id = v.id AND {table}.{column} IS NULL"
    if connection.vendor == "postgresql":
        cursor.execute(
            f"UPDATE {table} SET {column} = v.at "  # noqa: S608
            f"FROM unnest(%s::bigint[], %s::timestamptz[]) AS v (id, at) {where}",
            [list(first), [adapt(at) for at in first.values()]],
        )
    else:  # UPDATE … FROM needs SQLite 3.33 (postroom.E003)
        values = ", ".join(["(%s, %s)"] * len(first))
        cursor.execute(
            f"WITH v (id, at) AS (VALUES {values}) "  # noqa: S608
            f"UPDATE {table} SET {column} = v.at FROM v {where}",
            [value for item in first.items() for value in (item[0], adapt(item[1]))],
        )


def write_hit(target: HitTarget, kind: str, agent: str, url: str = "") -> None:
    write_hits([Hit(target, kind, agent, url)])


# --- the pixel's batches ----------------------------------------------------------------------


@dataclass
class PendingOpen:
    code: uuid.UUID
    agent: str
    at: dt.datetime
    written: threading.Event = field(default_factory=threading.Event)


class HitWriter(GroupCommit):
    """A process's open-pixel hits, written by one thread of its own in batches: whatever
    gathered while the previous batch was being written (a group commit). Each pixel request
    waits for its batch, so an answered pixel is a recorded open."""

    name = "postroom-hits"

    def add_open(self, code: uuid.UUID, agent: str) -> None:
        pending = PendingOpen(code, agent, timezone.now())
        if not settings.HIT_BATCHES:
            write_opens([pending])
            return
        self.hand_in(pending)
        # Bounded: a database that stalls must not hold every web thread; the hit stays
        # pending and is written when it can be.
        pending.written.wait(WAIT_SECONDS)

    def flush(self) -> int:
        """Write every hit gathered so far; how many. Hits that fail to be written are kept
        for the next try, up to a limit (a database away for long loses the oldest)."""
        batch = self.take()
        for start in range(0, len(batch), HIT_BATCH_MAX):
            chunk = batch[start : start + HIT_BATCH_MAX]
            try:
                write_opens(chunk)
            except Exception:
                with self.lock:
                    self.pending[:0] = batch[start : start + 100 * HIT_BATCH_MAX]
                raise
            finally:
                for pending in chunk:
                    pending.written.set()  # answered either way: a pixel is never an error
        return len(batch)


def write_opens(opens: list[PendingOpen]) -> None:
    targets = hit_targets({o.code for o in opens})
    write_hits(
        [
            Hit(targets[o.code], Event.Kind.OPENED, o.agent, at=o.at)
            for o in opens
            if o.code in targets  # a message erased since is no one's open
        ]
    )


hit_writer = HitWriter()
