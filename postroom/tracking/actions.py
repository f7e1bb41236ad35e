"""What recipients do with a message: opens, clicks, unsubscribes, their preferences."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.http import HttpRequest
from django.utils import timezone

from postroom.accounts.forms import client_ip
from postroom.accounts.models import Project
from postroom.contacts.actions import (
    NEW_CONTACT_COLUMNS,
    ContactError,
    Upsert,
    api_data,
    contact_upsert,
    field_key,
    new_contact_row,
    suppress_address,
    upserted_contact,
    upserts_in_bulk,
)
from postroom.contacts.models import ConsentSource, Contact, Status, Suppression
from postroom.delivery.actions import queue_system_email
from postroom.delivery.models import Message
from postroom.lib.emails import hash_email
from postroom.lib.ids import uuid7
from postroom.lib.signing import sign, unsign
from postroom.tracking.hits import hit_targets, write_hit
from postroom.tracking.links import UNSUBSCRIBE
from postroom.tracking.models import Event
from postroom.webhooks.actions import emit, wanting
from postroom.webhooks.payloads import contact_data


def user_agent(request: HttpRequest | None) -> str:
    return request.headers.get("User-Agent", "")[:300] if request is not None else ""


def record(message: Message, kind: str, request: HttpRequest | None, **fields) -> Event:
    return Event.objects.create(
        project_id=message.project_id,
        kind=kind,
        contact_id=message.contact_id,
        message=message,
        email_id=message.email_id,
        user_agent=user_agent(request),
        **fields,
    )


def mark_first(message: Message, field: str) -> None:
    """Stamp the message's first delivery report, bounce or complaint (`field`) on the ledger,
    unless an earlier one did."""
    Message.objects.filter(pk=message.pk, **{field: None}).update(**{field: timezone.now()})


def record_click(code: uuid.UUID | None, url: str, request: HttpRequest) -> bool:
    """Every click is an event with its link; the message keeps the first a person made. A
    click means the message was opened, pixel or not (images off). False for no message of
    ours."""
    target = hit_targets({code}).get(code) if code is not None else None
    if target is None:  # erased since, or never ours
        return False
    write_hit(target, Event.Kind.CLICKED, user_agent(request), url[:2000])
    return True


def unsubscribe(message: Message, request: HttpRequest | None, how: str) -> None:
    """The recipient of `message` wants no more marketing mail: their contact is marked
    unsubscribed, or, with no contact (a send to an address), the address is suppressed as
    unsubscribed. Transactional mail still reaches them (delivery.sending.skip_reasons)."""
    with transaction.atomic():
        contact = message.contact
        if contact is not None:
            if contact.status == Status.SUBSCRIBED:
                contact.set_status(Status.UNSUBSCRIBED, f"Unsubscribed by {how}")
                contact.updated_at = timezone.now()
                contact.save(
                    update_fields=["status", "status_changed_at", "status_reason", "updated_at"]
                )
                emit(contact.project_id, "contact.unsubscribed", contact_data(contact))
        else:
            # A message whose address was erased since suppresses nothing (suppress_address).
            suppress_address(
                message.project_id, message.to_email, Suppression.Reason.UNSUBSCRIBED, how
            )
        record(message, Event.Kind.UNSUBSCRIBED, request, data={"how": how})


def resubscribe(contact: Contact, request: HttpRequest) -> None:
    """The contact asks for marketing mail again, on their own preference page: consent anew."""
    contact.set_status(Status.SUBSCRIBED, "Subscribed again on the preference page")
    contact.consent_at = timezone.now()
    contact.consent_source = ConsentSource.FORM
    contact.consent_ip = client_ip(request)
    contact.updated_at = timezone.now()
    contact.save()
    Suppression.objects.filter(
        project=contact.project,
        email_hash=hash_email(contact.email),
        reason=Suppression.Reason.UNSUBSCRIBED,
    ).delete()


# Confirmation links for export and delete: signed for the message and the deadline.
CONFIRM_HOURS = 24


def confirmation_url(message: Message, what: str, until: int) -> str:
    signature = sign(f"confirm-{what}", message.code, str(until).encode())
    token = sign(UNSUBSCRIBE, message.code)
    return f"{settings.SITE_URL}/u/{token}/confirm/{what}/{until}/{signature}"


def confirmation_holds(message: Message, what: str, until: str, signature: str) -> bool:
    if not until.isdigit() or int(until) < time.time():
        return False
    return unsign(f"confirm-{what}", signature, until.encode()) == message.code


def send_confirmation(message: Message, what: str) -> None:
    """Mail the contact a link that downloads (export) or deletes (delete) their data."""
    contact = message.contact
    until = int(time.time()) + CONFIRM_HOURS * 3600
    doing = "download your data" if what == "export" else "delete your data"
    queue_system_email(
        message.project,
        contact,
        subject=f"Confirm: {doing} ({message.project.name})",
        text=(
            f"Someone (we hope you) asked to {doing} from {message.project.name}.\n\n"
            f"To go ahead, open this link within {CONFIRM_HOURS} hours:\n"
            f"{confirmation_url(message, what, until)}\n\n"
            "If it was not you, ignore this email: nothing happens.\n"
        ),
    )


# --- track: custom events from the API (Plunk's body) ------------------------------------------

# Bounds on what one event may carry, so a caller cannot grow the events table without limit.
MAX_EVENT_DATA_KEYS = 100
MAX_EVENT_DATA_BYTES = 16_384


@dataclass
class TrackData:
    """Plunk's `data`: each value plain (kept on the contact) or {value, persistent}; a
    persistent null removes the field, an empty string is ignored. The event keeps every
    value as sent."""

    event: dict[str, Any]
    upsert: Upsert
    keys: dict[str, str]  # our field key -> the key as sent, for error messages


def split_track_data(data: dict[str, Any]) -> TrackData:
    if len(data) > MAX_EVENT_DATA_KEYS:
        raise ContactError("data", f"at most {MAX_EVENT_DATA_KEYS} keys.")
    event: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for name, raw in data.items():
        value, persistent = raw, True
        if isinstance(raw, dict) and "value" in raw and set(raw) <= {"value", "persistent"}:
            value, persistent = raw["value"], raw.get("persistent", True) is not False
        event[name] = value
        if not persistent or value == "":
            continue
        if isinstance(value, dict | list):
            raise ContactError(
                f"data.{name}",
                "a value kept on the contact is text, a number, a date or true/false; "
                'send {"value": ..., "persistent": false} to keep it on the event only.',
            )
        kept[name] = value
    if len(json.dumps(event, default=str)) > MAX_EVENT_DATA_BYTES:
        raise ContactError("data", f"at most {MAX_EVENT_DATA_BYTES // 1024} KB of JSON.")
    fields, names = api_data(kept)
    upsert = Upsert(data=fields, **names)
    return TrackData(event, upsert, {field_key(name): name for name in kept})


@dataclass
class Tracked:
    contact: uuid.UUID  # the contact's code
    event: uuid.UUID  # the event's code
    at: dt.datetime


@dataclass
class PreparedTrack:
    """A track call checked and made ready to write: the contact's upsert statement, the
    event's code, name, data and time."""

    project: Project
    name: str
    upsert: tuple[str, list]
    data: dict[str, Any]
    code: uuid.UUID
    at: dt.datetime


def track(
    project: Project,
    name: str,
    email: str,
    subscribed: bool | None,
    data: dict[str, Any],
    ip: str | None = None,
    public: bool = False,
) -> Tracked:
    """Record the custom event `name` for the contact with `email`, created if need be
    (subscribed unless `subscribed` is false), its persistent data saved on the contact.
    Raises ContactError naming the field.

    The API's busiest call: everything is checked first (prepare_track), then the contact's
    upsert and the event's insert are written in one short transaction (write_tracks), so on
    SQLite the write lock is held for the writes alone. `public`: called with the public key."""
    prepared = prepare_track(project, name, email, subscribed, data, ip, public)
    with transaction.atomic():
        return write_track(prepared)


def prepare_track(
    project: Project,
    name: str,
    email: str,
    subscribed: bool | None,
    data: dict[str, Any],
    ip: str | None = None,
    public: bool = False,
) -> PreparedTrack:
    """Everything track checks, before any write (ContactError naming the field)."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ContactError("event", "a name of 1 to 100 printable characters.")
    parsed = split_track_data(data)
    # The public key is in web pages, so anyone may call track with it: it cannot undo an
    # opt-out (subscribed: true on an unsubscribed contact); a new contact is subscribed.
    parsed.upsert.subscribed = None if public and subscribed else subscribed
    parsed.upsert.how = f"the track API ({name[:60]})"
    parsed.upsert.consent_ip = ip
    try:
        statement = contact_upsert(project, email, parsed.upsert)
    except ContactError as e:
        key = e.field.removeprefix("data.")
        if e.field.startswith("data.") and key in parsed.keys:
            raise ContactError(f"data.{parsed.keys[key]}", e.message) from None
        raise
    return PreparedTrack(project, name, statement, parsed.event, uuid7(), timezone.now())


def write_track(prepared: PreparedTrack) -> Tracked:
    """track's writes, in the caller's transaction."""
    return write_tracks([prepared])[0]


def write_tracks(batch: list[PreparedTrack]) -> list[Tracked]:
    """Track calls' writes, in order, in the caller's transaction (a request's own, or a
    batch's: tracking.fasttrack). PostgreSQL: the plain calls for distinct contacts in one
    statement, any other call in one of its own (the contact's upsert and the event's
    insert together), prepared once on the connection and all sent before any answer is
    read (pipeline mode): a round trip for the batch, and no planning. SQLite: the upsert,
    then the event."""
    if connection.vendor == "postgresql":
        contacts = write_tracks_postgres(batch)
    else:
        contacts = write_tracks_sqlite(batch)
    for prepared, (contact_id, _, created) in zip(batch, contacts, strict=True):
        project = prepared.project
        if created and wanting(project.id, "contact.created"):  # no query without endpoints
            contact = Contact.objects.get(pk=contact_id)
            emit(project.id, "contact.created", contact_data(contact))
    return tracked_of(batch, contacts)


def tracked_of(
    batch: list[PreparedTrack], contacts: list[tuple[int, uuid.UUID, bool]]
) -> list[Tracked]:
    """What each call answers: its contact's code, its event's code and time."""
    return [
        Tracked(contact_code, prepared.code, prepared.at)
        for prepared, (_, contact_code, _) in zip(batch, contacts, strict=True)
    ]


def write_tracks_sqlite(batch: list[PreparedTrack]) -> list[tuple[int, uuid.UUID, bool]]:
    """On the driver's own cursor, each statement's parameter markers converted once (Django's
    cursor converts them on every execute with a regular expression: a tenth of a track
    call's CPU)."""
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    contacts = []
    try:
        for prepared in batch:
            upsert, params = prepared.upsert
            cursor.execute(qmark_style(upsert), params)
            contact_id, contact_code, created = cursor.fetchone()
            cursor.execute(qmark_style(EVENT_SQL), event_params(prepared, contact_id))
            contacts.append((contact_id, uuid.UUID(contact_code), bool(created)))
    finally:
        cursor.close()
    return contacts


@functools.cache
def qmark_style(sql: str) -> str:
    """A statement's %s parameter markers as the sqlite3 module's ?: Django's own conversion
    (SQLiteCursorWrapper.convert_query), kept for each statement."""
    return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")


def commit_tracks(batch: list[PreparedTrack]) -> list[Tracked] | None:
    """The batch written and committed in one round trip to PostgreSQL (BEGIN, a statement a
    call, COMMIT, sent together): a third less time a batch than a transaction of Django's
    (bench/RESULTS.md). Only outside a transaction, and when no call's project has an
    endpoint for contact.created (whose outbox rows must commit with the contact); None when
    it does not apply: then write_tracks in a transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    if any(wanting(prepared.project.id, "contact.created") for prepared in batch):
        return None
    return tracked_of(batch, write_tracks_postgres(batch, own_transaction=True))


def write_tracks_postgres(
    batch: list[PreparedTrack], own_transaction: bool = False
) -> list[tuple[int, uuid.UUID, bool]]:
    """The batch's writes in as few statements as keep each call's effect: each run of plain
    calls (contacts.actions.upserts_in_bulk) for distinct contacts is one statement whose
    parameter is a JSON array of their rows, any other call one statement of its own. All
    are prepared and sent before any answer is read. A batch that is one statement is sent
    alone: outside a transaction it commits itself, so `own_transaction` needs no BEGIN and
    COMMIT."""
    connection.ensure_connection()
    driver = connection.connection
    if driver.prepare_threshold is None and not server_side_binding():
        # Django turns preparing off, as its cursors bind on the client and cannot prepare;
        # the server-binding cursors below may, and planning was two thirds of the database's
        # work for a track call (0.305 -> 0.098 CPU ms, bench/RESULTS.md).
        driver.prepare_threshold = 5
    parts = statement_parts(batch)
    if len(parts) == 1 and parts[0].in_bulk:
        with psycopg.Cursor(driver) as cursor:
            cursor.execute(tracks_in_bulk_sql(), tracks_in_bulk_params(parts[0].calls))
            return cursor.fetchall()
    # Server-side binding (Django's cursors bind on the client): it can prepare. The calls
    # of a part not in bulk go as one executemany (they differ only in a change of status
    # asked): less of the writer's CPU than an execute a call.
    cursors = [psycopg.Cursor(driver) for _ in parts]
    transaction_cursor = psycopg.Cursor(driver)
    try:
        with driver.pipeline():
            if own_transaction:
                transaction_cursor.execute("BEGIN")
            for cursor, part in zip(cursors, parts, strict=True):
                if part.in_bulk:
                    cursor.execute(tracks_in_bulk_sql(), tracks_in_bulk_params(part.calls))
                else:
                    cursor.executemany(
                        track_sql_postgres(part.calls[0].upsert[0]),
                        [[*p.upsert[1], *event_params(p)] for p in part.calls],
                        returning=True,
                    )
            if own_transaction:
                transaction_cursor.execute("COMMIT")
        return [
            row
            for cursor, part in zip(cursors, parts, strict=True)
            for row in (cursor.fetchall() if part.in_bulk else each_result(cursor))
        ]
    except Exception:
        if own_transaction:  # a failed statement left the transaction open, and aborted
            with contextlib.suppress(Exception):
                transaction_cursor.execute("ROLLBACK")
        raise
    finally:
        for cursor in [*cursors, transaction_cursor]:
            cursor.close()


@dataclass
class StatementPart:
    """Consecutive calls of a batch written by one statement: in bulk (one row each), or
    one call at a time with the same upsert statement."""

    in_bulk: bool
    calls: list[PreparedTrack]
    contacts: set[tuple[int, str]]  # in bulk: (project, email) of each call


def statement_parts(batch: list[PreparedTrack]) -> list[StatementPart]:
    """The batch cut into parts, in order. A part in bulk never names a contact twice: one
    INSERT … ON CONFLICT may not change a row twice, and the second call must see what the
    first wrote."""
    parts: list[StatementPart] = []
    for prepared in batch:
        statement = prepared.upsert[0]
        in_bulk = upserts_in_bulk(prepared.upsert)
        contact = upserted_contact(prepared.upsert)
        last = parts[-1] if parts else None
        if in_bulk and last and last.in_bulk and contact not in last.contacts:
            last.calls.append(prepared)
            last.contacts.add(contact)
        elif not in_bulk and last and not last.in_bulk and last.calls[0].upsert[0] == statement:
            last.calls.append(prepared)
        else:
            parts.append(StatementPart(in_bulk, [prepared], {contact} if in_bulk else set()))
    return parts


def tracks_in_bulk_params(calls: list[PreparedTrack]) -> list[str]:
    """tracks_in_bulk_sql's one parameter: a JSON array with a row a call, the new contact's
    columns then the event's (UUIDs and times as their text, which PostgreSQL reads back
    exactly). One JSON document, dumped by the json module's C encoder, cost the writer a
    third of the CPU of psycopg's arrays (a list a column, dumped element by element in
    Python): 0.36-0.44 -> 0.12 ms a batch of 8 (bench/RESULTS.md)."""
    rows = [
        [*new_contact_row(p.upsert), p.code, p.name, json.dumps(p.data, default=str), p.at]
        for p in calls
    ]
    return [json.dumps(rows, default=str)]


def each_result(cursor) -> Iterator[tuple]:
    """The one row of each statement an executemany(returning=True) ran."""
    while True:
        yield cursor.fetchone()
        if not cursor.nextset():
            return


def server_side_binding() -> bool:
    """Whether Django's own cursors bind on the server (then preparing is the settings' to
    decide: a connection pooler may not keep prepared statements)."""
    return bool(connection.settings_dict.get("OPTIONS", {}).get("server_side_binding"))


@functools.cache
def track_sql_postgres(upsert: str) -> str:
    """The contact's upsert (contacts.actions.upsert_sql) and the event's insert, one
    statement: the contact's id, code and whether it was created."""
    table = Event._meta.db_table
    return (
        f"WITH c AS ({upsert.strip()} AS created), e AS ("  # noqa: S608  (our SQL, no input)
        f"INSERT INTO {table} ({EVENT_COLUMNS}) "
        f"SELECT %s, %s, '{Event.Kind.CUSTOM}', %s, c.id, '', '', %s::jsonb, %s FROM c) "
        "SELECT id, code, created FROM c"
    )


@functools.cache
def tracks_in_bulk_sql() -> str:
    """Plain track calls for distinct contacts in one statement: their rows read from one
    JSON array (one parameter whatever the number of calls: prepared once), each
    contact upserted as UPSERT_SQL does with no change of status, each event inserted with
    its contact's id; a row a call, in the calls' order: the contact's id, code, and whether
    this statement created it."""
    contacts, events = Contact._meta.db_table, Event._meta.db_table
    columns = [Contact._meta.get_field(name) for name in NEW_CONTACT_COLUMNS]
    columns += [Event._meta.get_field(name) for name in ("code", "name", "data", "created_at")]
    names = [*NEW_CONTACT_COLUMNS, "event_code", "event_name", "event_data", "event_at"]
    values = ", ".join(
        f"(r->>{k})::{cast_type(column)} AS {name}"
        for k, (column, name) in enumerate(zip(columns, names, strict=True))
    )
    new = ", ".join(NEW_CONTACT_COLUMNS)
    return f"""
WITH i AS (
    SELECT {values}, n FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(r, n)
), c AS (
    INSERT INTO {contacts} AS t ({new}, updated_at)
    SELECT {new}, created_at FROM i ORDER BY n
    ON CONFLICT (project_id, email) DO UPDATE SET
        first_name = COALESCE(NULLIF(excluded.first_name, ''), t.first_name),
        last_name = COALESCE(NULLIF(excluded.last_name, ''), t.last_name),
        data = jsonb_strip_nulls(t.data || excluded.data),
        updated_at = CASE WHEN excluded.data <> '{{}}'::jsonb OR excluded.first_name <> ''
            OR excluded.last_name <> '' THEN excluded.updated_at ELSE t.updated_at END
    RETURNING t.id, t.code, t.project_id, t.email, t.created_at
), e AS (
    INSERT INTO {events} ({EVENT_COLUMNS})
    SELECT i.project_id, i.event_code, '{Event.Kind.CUSTOM}', i.event_name, c.id, '', '',
        i.event_data, i.event_at
    FROM i JOIN c USING (project_id, email) ORDER BY i.n
)
SELECT c.id, c.code, c.created_at = i.created_at FROM i JOIN c USING (project_id, email)
ORDER BY i.n
"""  # noqa: S608  (our SQL, no input)


def cast_type(column) -> str:
    """The type a column's value is read as from JSON text: text for a varchar (a cast to
    varchar(n) would cut a longer value short without a word; the insert checks the length)."""
    kind = column.db_type(connection)
    return "text" if kind.startswith("varchar") else kind


EVENT_COLUMNS = "project_id, code, kind, name, contact_id, url, user_agent, data, created_at"
EVENT_SQL = (
    f"INSERT INTO {Event._meta.db_table} ({EVENT_COLUMNS}) "  # noqa: S608
    f"VALUES (%s, %s, '{Event.Kind.CUSTOM}', %s, %s, '', '', %s, %s)"
)


def event_params(prepared: PreparedTrack, contact_id: int | None = None) -> list[Any]:
    """The custom event's values: EVENT_SQL's (SQLite), or track_sql_postgres's (which
    takes the contact's id from its upsert)."""
    if connection.vendor == "postgresql":
        return [
            prepared.project.id,
            prepared.code,
            prepared.name,
            json.dumps(prepared.data, default=str),
            prepared.at,
        ]
    return [
        prepared.project.id,
        prepared.code.hex,
        prepared.name,
        contact_id,
        json.dumps(prepared.data, default=str),
        connection.ops.adapt_datetimefield_value(prepared.at),
    ]
