"""The send loop: claim due messages in batches, hand them to the sender, record the outcomes.

A claim is one conditional UPDATE (SQLite: inside an IMMEDIATE transaction, which holds the
write lock; PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED), stamping the rows with a fresh
claim token and a lease. Every write of results is conditional on that token, so a worker
that stalled past its lease cannot overwrite what its successor recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta as td
from email.errors import HeaderParseError

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from postroom.contacts.actions import ERASED_ADDRESS, restore_addresses
from postroom.contacts.models import Status, Suppression
from postroom.content.context import contacts_by_id, recipient_contexts
from postroom.content.sandbox import RENDER_ERRORS
from postroom.delivery.actions import signers_for
from postroom.delivery.dkim import Signer
from postroom.delivery.limits import capacity
from postroom.delivery.mime import id_domain, template_for
from postroom.delivery.models import BATCH_PER_CONNECTION, Email, Message, Sender
from postroom.delivery.transports import open_transports
from postroom.delivery.transports.base import (
    DEFERRED,
    FAILED,
    SENT,
    SKIPPED,
    Outcome,
    Parcel,
    SenderUnavailable,
    Transport,
)
from postroom.lib.emails import InvalidEmail, hash_email
from postroom.tracking.hits import insert_email_events
from postroom.tracking.links import bounce_address
from postroom.tracking.models import Event

log = logging.getLogger(__name__)

# Deferred retries wait 1, 2, 4 ... minutes, at most 6 hours; after MAX_ATTEMPTS, give up.
BACKOFF_BASE = td(minutes=1)
BACKOFF_CAP = td(hours=6)
MAX_ATTEMPTS = 10
# A paused sender (login refused, host down) is tried again after this long.
PAUSE_RETRY = td(minutes=5)

IN_FLIGHT_RESENT = "In flight when a worker stopped; sent again (may be a duplicate)."
IN_FLIGHT_HELD = "In flight when a worker stopped; held for review (it may have been delivered)."


def backoff(attempts: int) -> td:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))


def requeue_due() -> bool:
    """Worker step: deferred messages whose time has come, and claims whose worker died."""
    now = timezone.now()
    due = Message.objects.filter(state=Message.State.DEFERRED, next_attempt_at__lte=now)
    moved = due.update(state=Message.State.QUEUED, next_attempt_at=None, updated_at=now)
    stale = Message.objects.filter(state=Message.State.SENDING, lease_until__lt=now)
    moved += stale.filter(sender__on_unknown=Sender.Unknown.RESEND).update(
        state=Message.State.QUEUED,
        claim=None,
        lease_until=None,
        maybe_duplicate=True,
        last_response=IN_FLIGHT_RESENT,
        updated_at=now,
    )
    moved += stale.filter(sender__on_unknown=Sender.Unknown.HOLD).update(
        state=Message.State.FAILED,
        claim=None,
        lease_until=None,
        last_response=IN_FLIGHT_HELD,
        updated_at=now,
    )
    return moved > 0


def senders_with_work(now) -> QuerySet[Sender]:
    queued = Message.objects.filter(
        sender=OuterRef("pk"), state=Message.State.QUEUED, email__held=False
    )
    not_paused = Q(paused_reason="") | Q(paused_at__lt=now - PAUSE_RETRY)
    return Sender.objects.filter(not_paused).filter(Exists(queued)).order_by("id")


def claim_batch(sender: Sender, limit: int) -> tuple[uuid.UUID, list[Message]]:
    """Claim up to `limit` queued messages of `sender`, most urgent first, never more than
    its rate limits leave room for."""
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        if sender.limits():
            # The room is counted inside the claim's transaction, and claimers of a limited
            # sender take turns (SQLite: the IMMEDIATE transaction's write lock; PostgreSQL:
            # the sender's row lock), so two workers can never both spend the same room.
            if connection.vendor == "postgresql":
                Sender.objects.select_for_update().filter(pk=sender.pk).exists()
            limit = min(limit, capacity(sender, now))
            if limit <= 0:
                return token, []
        due = Message.objects.filter(sender=sender, state=Message.State.QUEUED)
        due = due.exclude(email__held=True).order_by("priority", "id")
        if connection.vendor == "postgresql":
            # Lock only the message rows: locking the joined Email (shared by a whole
            # campaign) would make every other worker skip the campaign.
            due = due.select_for_update(skip_locked=True, of=("self",))
        ids = list(due.values_list("id", flat=True)[:limit])
        if not ids:
            return token, []
        Message.objects.filter(id__in=ids, state=Message.State.QUEUED).update(
            state=Message.State.SENDING,
            claim=token,
            lease_until=now + Message.LEASE,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    # Only what sending reads: every other column would be converted for nothing.
    batch = list(
        Message.objects.filter(claim=token).only(*SENDING_FIELDS).order_by("priority", "id")
    )
    # Each Email once (its bodies are the bulk of a row), not once per recipient.
    emails = Email.objects.in_bulk({m.email_id for m in batch})
    for message in batch:
        message.email = emails[message.email_id]
    return token, batch


SENDING_FIELDS = (
    "id",
    "project_id",
    "email_id",
    "sender_id",
    "contact_id",
    "code",
    "to_email",
    "to_name",
    "data",
    "priority",
    "attempts",
)


def handle_one_send_batch() -> bool:
    """Worker step: send one batch for the first sender that has due work and room."""
    now = timezone.now()
    for sender in senders_with_work(now):
        # A cheap look first, so a sender with no room costs no locked transaction;
        # claim_batch counts again under its lock, and that count is the one that holds.
        if capacity(sender, now) == 0:
            continue
        # A claim per connection that works now (a relay may take fewer than the pool).
        transport = open_transports.get(sender)
        token, batch = claim_batch(
            sender, min(sender.batch_size(), BATCH_PER_CONNECTION * transport.connections())
        )
        if batch:
            send_batch(sender, token, batch, transport)
            return True
    return False


def skip_reasons(batch: list[Message], contacts: dict[int, dict]) -> dict[int, str]:
    """Messages that must not go out after all, checked at send time (the audience was
    snapshotted earlier: a contact may have unsubscribed or bounced since). `contacts` are
    the batch's contacts as content.context reads them, status included."""
    suppressed = suppressed_addresses(batch)
    status = {cid: c.get("status", Status.SUBSCRIBED) for cid, c in contacts.items()}
    reasons = {}
    for m in batch:
        if m.to_email == ERASED_ADDRESS:  # in flight when its contact was erased, then requeued
            reasons[m.id] = "Skipped: the address was erased."
            continue
        reason = suppressed.get(m.to_email)
        # Transactional mail (receipts, resets) ignores marketing unsubscribes only, unless
        # the send asked to leave unsubscribed contacts out (Email.skip_unsubscribed).
        is_marketing = m.priority != Message.Priority.TRANSACTIONAL or m.email.skip_unsubscribed
        contact_status = status.get(m.contact_id, Status.SUBSCRIBED)
        if reason and (is_marketing or reason != Suppression.Reason.UNSUBSCRIBED):
            reasons[m.id] = f"Skipped: the address is suppressed ({reason.replace('_', ' ')})."
        elif contact_status in (Status.BOUNCED, Status.COMPLAINED):
            # Whatever its kind: mail to an address that bounced or complained hurts the
            # sender's reputation, and the contact's status says it did.
            reasons[m.id] = f"Skipped: the contact is {contact_status}."
        elif is_marketing and contact_status != Status.SUBSCRIBED:
            reasons[m.id] = f"Skipped: the contact is {contact_status}."
    return reasons


def suppressed_addresses(batch: list[Message]) -> dict[str, str]:
    """The batch's suppressed addresses and why, in one query by hash: an entry whose address
    was erased (contacts.actions.erase_contact) matches too, and gets the address back."""
    hashes = {hash_email(m.to_email): m.to_email for m in batch}
    rows = Suppression.objects.filter(project_id=batch[0].project_id, email_hash__in=hashes)
    suppressed = {}
    erased = []
    for digest, reason, email in rows.values_list("email_hash", "reason", "email"):
        suppressed[hashes[digest]] = reason
        if not email:
            erased.append(hashes[digest])
    if erased:  # rare: an erased address that came back
        restore_addresses(batch[0].project_id, erased)
    return suppressed


def send_batch(
    sender: Sender, token: uuid.UUID, batch: list[Message], transport: Transport
) -> None:
    # The batch's contacts, read once: for the skip check and for personalisation.
    contacts = contacts_by_id({m.contact_id for m in batch if m.contact_id})
    outcomes: dict[int, Outcome] = {
        mid: Outcome(SKIPPED, reason) for mid, reason in skip_reasons(batch, contacts).items()
    }
    personalised = [m for m in batch if m.email.personalised and m.id not in outcomes]
    contexts = {}
    if personalised:
        contexts = recipient_contexts(batch[0].project_id, personalised, contacts)
    # Email services sign with their own keys; our relays and the Mailbox get ours.
    signers = {}
    if sender.kind in (Sender.Kind.SMTP, Sender.Kind.MAILBOX):
        signers = signers_for(batch[0].project_id, {id_domain(m.email) for m in batch})
    unavailable = None
    try:
        # Our relays get a Return-Path per message (VERP): their bounces come back to us.
        verp = sender.kind == Sender.Kind.SMTP
        transport.send_many(
            parcels(batch, outcomes, contexts, signers, verp),
            len(batch) - len(outcomes),
            outcomes,
            heartbeat=lambda: renew_lease(token),
        )
    except SenderUnavailable as e:
        unavailable = str(e)
        open_transports.discard(sender)
    except Exception:
        # A fault of ours: what was sent is recorded; the rest waits and is tried again
        # later (the attempt counts, so a message that keeps failing ends as failed).
        log.exception("sending a batch of sender %s failed", sender.code)
        open_transports.discard(sender)
        for message in batch:
            outcomes.setdefault(message.id, Outcome(DEFERRED, "Not sent: internal error."))
    record_outcomes(token, batch, outcomes)
    if unavailable:
        pause_sender(sender, unavailable)
        release_unsent(token, [m for m in batch if m.id not in outcomes], unavailable)
    elif sender.paused_reason:
        Sender.objects.filter(pk=sender.pk).update(paused_reason="", paused_at=None)


def parcels(
    batch: list[Message],
    outcomes: dict[int, Outcome],
    contexts: dict[int, dict],
    signers: dict[str, Signer] | None = None,
    verp: bool = False,
) -> Iterator[Parcel]:
    """The batch's messages as bytes, made as the transport takes them (in its threads: no
    database here). The stdlib builds each Email's message once; every recipient fills in
    its own headers, and for a personalised Email its subject and bodies. A message that
    cannot be built fails alone, with the reason."""
    for message in batch:
        if message.id in outcomes:
            continue
        try:
            template = template_for(message.email)
            raw = template.render(message, contexts.get(message.id))
            signer = (signers or {}).get(template.domain)
            if signer is not None:
                raw = signer.sign(raw)
        except (ValueError, UnicodeError, HeaderParseError, InvalidEmail) as e:
            outcomes[message.id] = Outcome(FAILED, f"Cannot build the message: {e}"[:500])
            continue
        except RENDER_ERRORS as e:
            reason = f"The template failed for this recipient: {e}"
            outcomes[message.id] = Outcome(FAILED, reason[:500])
            continue
        except Exception as e:  # a fault of ours: this message fails, the batch goes on
            log.exception("building message %s", message.id)
            outcomes[message.id] = Outcome(FAILED, f"Cannot build the message: {e!r}"[:500])
            continue
        envelope_from = (verp and bounce_address(message.code)) or message.email.from_email
        yield Parcel(message, envelope_from, raw, crlf=True)


def record_outcomes(token: uuid.UUID, batch: list[Message], outcomes: dict[int, Outcome]) -> None:
    """Write every result, only onto rows this claim still holds."""
    now = timezone.now()
    rows = []
    for message in batch:
        outcome = outcomes.get(message.id)
        if outcome is None:
            continue
        response, provider_id, next_attempt_at, sent_at = outcome.response, "", None, None
        if outcome.status == SKIPPED:
            state = Message.State.SKIPPED
        elif outcome.status == SENT:
            state, sent_at, provider_id = Message.State.SENT, now, outcome.provider_id[:255]
        elif outcome.status == DEFERRED and message.attempts < MAX_ATTEMPTS:
            state = Message.State.DEFERRED
            next_attempt_at = now + backoff(message.attempts)
        else:
            state = Message.State.FAILED
            if outcome.status == DEFERRED:
                response = f"Gave up after {message.attempts} attempts: {outcome.response}"
        rows.append(
            (
                message.id,
                state,
                response[:500],
                provider_id,
                next_attempt_at,
                sent_at,
                outcome.maybe_duplicate,
            )
        )
    written = write_results(token, rows, now)
    record_email_events(batch, written, now)


# Ledger states that are events on the events page (the rest are steps on the way).
EVENT_KINDS = {Message.State.SENT: Event.Kind.SENT, Message.State.FAILED: Event.Kind.FAILED}


def record_email_events(batch: list[Message], written: dict[int, str], now) -> None:
    """A "sent" or "failed" event for each message this batch settled, in one INSERT: the
    events page and reports read events, the ledger stays the queue."""
    by_id = {m.id: m for m in batch}
    rows = []
    for message_id, state in written.items():
        if state in EVENT_KINDS:
            m = by_id[message_id]
            rows.append(
                (
                    m.project_id,
                    EVENT_KINDS[state],
                    m.contact_id,
                    m.id,
                    m.email_id,
                    "",
                    "",
                    False,
                    now,
                )
            )
    if rows:
        with connection.cursor() as cursor:
            insert_email_events(cursor, rows)


RESULT_COLUMNS = (
    "id",
    "state",
    "last_response",
    "provider_id",
    "next_attempt_at",
    "sent_at",
    "maybe_duplicate",
)


def write_results(token: uuid.UUID, rows: list[tuple], now) -> dict[int, str]:
    """One UPDATE for a whole batch, releasing the claim, on rows that still carry `token`.
    Django's bulk_update writes a CASE per row and field, and building it cost more CPU than
    sending the mail (bench/RESULTS.md). SQLite joins a VALUES list (UPDATE ... FROM needs
    SQLite 3.33, postroom.E003); PostgreSQL unnests one array per column. Returns the state
    written by message id: only the rows this claim still held."""
    if not rows:
        return {}
    claim = Message._meta.get_field("claim").get_db_prep_value(token, connection)
    table = Message._meta.db_table
    columns = ", ".join(RESULT_COLUMNS)
    # Names from the model, every value a parameter.
    assignments = (
        f"UPDATE {table} SET state = v.state, last_response = v.last_response, "  # noqa: S608
        "provider_id = v.provider_id, next_attempt_at = v.next_attempt_at, "
        f"sent_at = v.sent_at, maybe_duplicate = {table}.maybe_duplicate OR v.maybe_duplicate, "
        "claim = NULL, lease_until = NULL, updated_at = %s "
    )
    where = f"WHERE {table}.id = v.id AND {table}.claim = %s RETURNING {table}.id, {table}.state"
    if connection.vendor == "postgresql":
        # Seven parameters, not seven per row: psycopg would parse thousands of %s markers
        # in a query too long for its cache (22% of a worker's CPU, bench/send.py).
        arrays = [list(column) for column in zip(*rows, strict=True)]
        unnest = ", ".join(
            f"%s::{t}[]"
            for t in ("bigint", "varchar", "varchar", "varchar", "timestamptz", "timestamptz")
        )
        sql = f"{assignments} FROM unnest({unnest}, %s::boolean[]) AS v ({columns}) {where}"
        params = [now, *arrays, claim]
    else:
        # Timestamps take few values here (now, now plus each backoff): each converted to
        # SQLite's text form once, not per row (bench/send.py).
        adapted: dict = {None: None}

        def stamp(value):
            if value not in adapted:
                adapted[value] = connection.ops.adapt_datetimefield_value(value)
            return adapted[value]

        params = []
        for mid, state, response, provider_id, next_at, sent_at, maybe_duplicate in rows:
            params += (mid, state, response, provider_id, stamp(next_at), stamp(sent_at))
            params.append(maybe_duplicate)
        params += (stamp(now), claim)  # VALUES first, then SET updated_at, then WHERE claim
        values = ", ".join(["(" + ", ".join(["%s"] * len(RESULT_COLUMNS)) + ")"] * len(rows))
        sql = f"WITH v ({columns}) AS (VALUES {values}) {assignments} FROM v {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


def renew_lease(token: uuid.UUID) -> None:
    """A batch still being sent keeps its claim: the lease runs out only for a dead worker."""
    Message.objects.filter(claim=token, state=Message.State.SENDING).update(
        lease_until=timezone.now() + Message.LEASE
    )


def release_unsent(token: uuid.UUID, unsent: list[Message], reason: str) -> None:
    """The sender could not take these: back to the queue, the attempt not counted."""
    Message.objects.filter(claim=token, id__in=[m.id for m in unsent]).update(
        state=Message.State.QUEUED,
        claim=None,
        lease_until=None,
        attempts=F("attempts") - 1,
        last_response=f"Not sent: {reason}"[:500],
        updated_at=timezone.now(),
    )


def pause_sender(sender: Sender, reason: str) -> None:
    log.warning("sender %s paused: %s", sender.code, reason)
    Sender.objects.filter(pk=sender.pk).update(paused_reason=reason[:500], paused_at=timezone.now())
