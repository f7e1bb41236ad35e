"""SMTP: a pool of persistent connections per sender, with PIPELINING (RFC 2920).

Not Django's SMTP backend: it aborts a whole batch when one recipient is refused and never
reconnects. Not smtplib's control flow either: it waits for every reply, four round trips
per message (bench/RESULTS.md). smtplib still does what it does well here: connecting, EHLO,
STARTTLS, AUTH, and reading replies. What this module adds:

- PIPELINING: when the relay offers it, a message's MAIL, RCPT and DATA go out in one write
  behind the previous message's body, and their replies are read together: one round trip
  per message instead of four. A relay that does not offer it gets one command at a time.
- A pool: `Sender.pool_size` connections per worker, each driven by its own thread, share a
  batch. They stay open between batches (transports.TransportCache) and reconnect when the
  relay drops them.

Every message is still its own transaction, so one refused recipient fails only that
recipient, with the relay's words kept. A message whose connection drops before its reply is
read is tried once more on a new connection, then deferred.
"""

from __future__ import annotations

import logging
import re
import select
import smtplib
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from postroom.delivery.models import Sender
from postroom.delivery.transports.base import (
    DEFERRED,
    FAILED,
    SENT,
    Outcome,
    Parcel,
    SenderUnavailable,
    Transport,
)
from postroom.lib.emails import InvalidEmail, ascii_domain

log = logging.getLogger(__name__)

DEFAULT_PORTS = {Sender.Security.TLS: 465, Sender.Security.STARTTLS: 587, Sender.Security.NONE: 25}
# The relay's id for the message, as Postfix ("queued as 4Xyz"), Exim ("id=1a2b") say it.
QUEUED_AS = re.compile(r"(?:queued as|id=)\s*<?([\w.@-]+)>?", re.IGNORECASE)
# A batch is spread over the pool, about this many messages per connection at least: one
# transactional message does not open four connections.
MESSAGES_PER_CONNECTION = 10
# A connection that could not be opened while others could (a relay limiting connections
# per client) is not tried again for this long.
REFUSED_BACKOFF = 60.0
# Seconds to wait for the answer to the final dot, at least (RFC 5321 4.5.3.2.6 suggests 10
# minutes; a batch's lease is renewed while it waits, see SmtpTransport.send_many).
END_OF_DATA_TIMEOUT = 120
# How often the send loop's heartbeat runs while the connections send.
HEARTBEAT_SECONDS = 30.0

HANDED_HELD = (
    "Connection lost after the message was handed over; held for review "
    "(it may have been delivered)"
)
HANDED_RESEND = (
    "Connection lost after the message was handed over; it will be sent again (may be a duplicate)."
)


def answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"[:500]


def classify(code: int, text: bytes | str) -> Outcome:
    response = answer(code, text)
    if 200 <= code < 300:
        match = QUEUED_AS.search(response)
        return Outcome(SENT, response, provider_id=match.group(1) if match else "")
    return Outcome(DEFERRED if 400 <= code < 500 else FAILED, response)


def data_block(raw: bytes, crlf: bool = False) -> bytes:
    """The message as DATA carries it: CRLF line ends (checked unless `crlf` says they
    are), leading dots doubled, the final dot."""
    if not crlf and (
        raw.count(b"\n") != raw.count(b"\r\n") or raw.count(b"\r") != raw.count(b"\r\n")
    ):
        raw = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    if raw.startswith(b"."):
        raw = b"." + raw
    raw = raw.replace(b"\r\n.", b"\r\n..")
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


class ConnectionLost(Exception):
    """The relay hung up, timed out or said 421: the connection is gone. `in_flight` are the
    messages whose transaction had started and has no outcome; `handed` is the one whose
    body went out and whose answer never came (the relay may have taken it)."""

    def __init__(self, reason: str, unsettled: tuple[list[Parcel], Parcel | None]):
        super().__init__(reason)
        self.in_flight, self.handed = unsettled


@dataclass(slots=True)
class Transaction:
    """One message's MAIL, RCPT, DATA and body on the wire, and what the relay said."""

    parcel: Parcel
    mail_from: str  # the envelope, domains in ASCII
    rcpt_to: str
    refusal: Outcome | None = None  # MAIL, RCPT or DATA refused: the message's outcome
    mail_accepted: bool = False


class Feed:
    """The batch, shared by the pool's threads: each takes the next parcel; a connection
    that fails hands back what it could not send."""

    def __init__(self, parcels: Iterator[Parcel]):
        self._parcels = parcels
        self._returned: deque[Parcel] = deque()
        self._lock = threading.Lock()

    def take(self) -> Parcel | None:
        with self._lock:
            if self._returned:
                return self._returned.popleft()
            return next(self._parcels, None)

    def give_back(self, parcels: Iterable[Parcel]) -> None:
        with self._lock:
            self._returned.extend(parcels)

    def exhausted(self) -> bool:
        parcel = self.take()
        if parcel is None:
            return True
        self.give_back([parcel])
        return False


class Session:
    """One connection to the relay, persistent, reconnecting; used by one thread at a time."""

    def __init__(self, sender: Sender):
        self.sender = sender
        self.smtp: smtplib.SMTP | None = None
        self.pipelining = self.smtputf8 = self.eightbit = False
        # A transaction left open on the relay by a refusal: RSET before the next MAIL.
        self.dirty = False
        self.refused_until = 0.0

    @property
    def port(self) -> int:
        return self.sender.port or DEFAULT_PORTS[self.sender.security]

    def connect(self) -> list[str]:
        """Connect, greet, secure and log in; the server's answers, for test_connection.
        Raises SenderUnavailable."""
        s, port = self.sender, self.port
        lines: list[str] = []
        # Only when TLS is used: building a context costs about 19 ms (bench/send.py).
        context = ssl.create_default_context() if s.security != Sender.Security.NONE else None
        if s.security == Sender.Security.TLS:
            conn = smtplib.SMTP_SSL(timeout=s.timeout, context=context)
        else:
            conn = smtplib.SMTP(timeout=s.timeout)
        try:
            code, text = conn.connect(s.host, port)
            lines.append(answer(code, text))
            if code != 220:
                raise SenderUnavailable(f"{s.host}:{port} greeted us with {answer(code, text)}")
            lines += self.hello(conn)
            if s.security == Sender.Security.STARTTLS:
                lines.append(answer(*conn.starttls(context=context)))
                lines += self.hello(conn)
            if s.username:
                lines.append(answer(*conn.login(s.username, s.password)))
        except SenderUnavailable:
            conn.close()
            raise
        except smtplib.SMTPAuthenticationError as e:
            conn.close()
            raise SenderUnavailable(f"login refused: {answer(e.smtp_code, e.smtp_error)}") from e
        except smtplib.SMTPResponseException as e:
            conn.close()
            said = answer(e.smtp_code, e.smtp_error)
            raise SenderUnavailable(f"{s.host}:{port} said {said}") from e
        except (OSError, smtplib.SMTPException) as e:
            conn.close()
            raise SenderUnavailable(f"cannot connect to {s.host}:{port}: {e}") from e
        self.smtp = conn
        self.pipelining = conn.has_extn("pipelining")
        self.smtputf8 = conn.has_extn("smtputf8")
        self.eightbit = conn.has_extn("8bitmime")
        self.dirty = False
        return lines

    def hello(self, conn: smtplib.SMTP) -> list[str]:
        """EHLO, or HELO from a relay that does not speak ESMTP."""
        code, text = conn.ehlo()
        if code == 250:
            return [answer(code, text)]
        helo_code, helo_text = conn.helo()
        if helo_code != 250:
            said = f"{answer(code, text)}, then {answer(helo_code, helo_text)}"
            raise SenderUnavailable(f"{self.sender.host}:{self.port} refused EHLO and HELO: {said}")
        return [answer(code, text), answer(helo_code, helo_text)]

    def close(self, polite: bool = True) -> None:
        if self.smtp is None:
            return
        try:
            if polite:
                self.smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self.smtp.close()
            self.smtp = None

    def alive(self) -> bool:
        """Connected, and the relay has not spoken out of turn. An SMTP server says nothing
        unasked, so a readable idle socket means it is closing (a 421 for idling, or EOF)."""
        if self.smtp is None or self.smtp.sock is None:
            return False
        readable, _, _ = select.select([self.smtp.sock], [], [], 0)
        return not readable

    # --- sending -------------------------------------------------------------------------

    def deliver(self, feed: Feed, outcomes: dict[int, Outcome]) -> None:
        """Send what the feed holds over this connection until it is empty, reconnecting
        when the relay drops it. Raises SenderUnavailable when it cannot (re)connect,
        having handed its unsent parcels back to the feed."""
        losses: Counter[int] = Counter()
        retry: deque[Parcel] = deque()
        handed: set[int] = set()  # the body went out, the answer never came: fate unknown
        try:
            while True:
                if not self.alive():
                    self.close(polite=False)
                    try:
                        self.connect()
                    except SenderUnavailable:
                        self.give_back(feed, retry, handed, outcomes)
                        raise
                try:
                    self.pipeline(feed, retry, outcomes)
                    return
                except ConnectionLost as lost:
                    self.close(polite=False)
                    self.after_loss(lost, losses, retry, handed, outcomes)
        finally:
            for message_id in handed:
                if message_id in outcomes:
                    outcomes[message_id].maybe_duplicate = True

    def after_loss(self, lost, losses: Counter, retry: deque, handed: set, outcomes) -> None:
        """Sort the messages a lost connection left unsettled: tried again, deferred, or held."""
        if lost.handed is not None:
            if self.sender.on_unknown == Sender.Unknown.HOLD:
                outcomes[lost.handed.message.id] = Outcome(FAILED, f"{HANDED_HELD} ({lost})"[:500])
            else:
                handed.add(lost.handed.message.id)
        # The first unsettled message is the one the relay was handling when it hung up;
        # the one pipelined behind it is tried again without blame.
        for i, parcel in enumerate(lost.in_flight):
            if parcel.message.id in outcomes:
                continue
            losses[parcel.message.id] += i == 0
            if losses[parcel.message.id] > 1:
                response = f"connection lost: {lost}"[:500]
                outcomes[parcel.message.id] = Outcome(DEFERRED, response)
            else:
                retry.append(parcel)

    def give_back(self, feed: Feed, retry: deque, handed: set, outcomes) -> None:
        """This connection cannot go on: another may take its parcels, except those whose
        fate is unknown, which wait (marked) rather than go out twice at once."""
        for parcel in retry:
            if parcel.message.id in handed:
                outcomes[parcel.message.id] = Outcome(DEFERRED, HANDED_RESEND)
        feed.give_back(p for p in retry if p.message.id not in handed)
        retry.clear()

    def pipeline(self, feed: Feed, retry: deque[Parcel], outcomes: dict[int, Outcome]) -> None:
        """Each round trip carries the previous message's body and the next one's MAIL,
        RCPT and DATA (RFC 2920 lets message content lead a group of commands)."""
        body: tuple[Transaction, bytes] | None = None  # DATA accepted: its body goes next
        while True:
            txn = self.next_transaction(feed, retry, outcomes)
            steps: list[tuple[str, Transaction | None, bytes]] = []
            if body is not None:
                steps.append(("end", *body))
            if txn is not None:
                if self.dirty:
                    steps.append(("rset", None, b"RSET\r\n"))
                steps += self.envelope(txn)
            if not steps:
                return
            body = self.exchange(steps, outcomes)

    def next_transaction(
        self, feed: Feed, retry: deque[Parcel], outcomes: dict[int, Outcome]
    ) -> Transaction | None:
        while True:
            parcel = retry.popleft() if retry else feed.take()
            if parcel is None:
                return None
            txn = self.transaction(parcel)
            if isinstance(txn, Transaction):
                return txn
            outcomes[parcel.message.id] = txn

    def transaction(self, parcel: Parcel) -> Transaction | Outcome:
        """The parcel's transaction, or the outcome of one this relay cannot be asked at
        all, decided before a byte is written."""
        envelope = []
        for address in (parcel.envelope_from, parcel.message.to_email):
            try:
                address = ascii_domain(address)
            except InvalidEmail as e:
                return Outcome(FAILED, f"Not sent: {e}"[:500])
            if any(c in address for c in "\r\n<> "):
                return Outcome(FAILED, f"Not sent: {address!r} cannot be an envelope address.")
            if not address.isascii() and not self.smtputf8:
                return Outcome(
                    FAILED,
                    f"Not sent: {address} needs SMTPUTF8 (RFC 6531), which this relay "
                    "does not offer.",
                )
            envelope.append(address)
        return Transaction(parcel, *envelope)

    def envelope(self, txn: Transaction) -> list[tuple[str, Transaction, bytes]]:
        options = ""
        if not (txn.mail_from.isascii() and txn.rcpt_to.isascii()):
            options += " SMTPUTF8"
        if self.eightbit and not txn.parcel.raw.isascii():
            options += " BODY=8BITMIME"
        return [
            ("mail", txn, f"MAIL FROM:<{txn.mail_from}>{options}\r\n".encode()),
            ("rcpt", txn, f"RCPT TO:<{txn.rcpt_to}>\r\n".encode()),
            ("data", txn, b"DATA\r\n"),
        ]

    def exchange(
        self, steps: list[tuple[str, Transaction | None, bytes]], outcomes: dict[int, Outcome]
    ) -> tuple[Transaction, bytes] | None:
        """Write the steps (together when pipelining, else one at a time), read one reply
        each, record outcomes; returns the transaction whose body is to go next."""
        if self.pipelining:
            self.write(b"".join(payload for _, _, payload in steps), steps, 0, outcomes)
        body = None
        for i, (kind, txn, payload) in enumerate(steps):
            if not self.pipelining:
                self.write(payload, steps, i, outcomes)
            code, text = self.read(steps, i, outcomes)
            if code == 421:  # the relay is closing the connection
                raise ConnectionLost(answer(code, text), self.unsettled(steps, i, outcomes))
            if kind == "rset" and code != 250:
                lost = f"RSET refused: {answer(code, text)}"
                raise ConnectionLost(lost, self.unsettled(steps, i, outcomes))
            if kind == "end":
                self.dirty = False
                if txn.refusal is None:
                    outcomes[txn.parcel.message.id] = classify(code, text)
            elif kind == "mail":
                txn.mail_accepted = code == 250
                if not txn.mail_accepted:
                    txn.refusal = classify(code, text)
            elif kind == "rcpt":
                if txn.refusal is None and code not in (250, 251):
                    txn.refusal = classify(code, text)
            elif kind == "data":
                body = self.after_data(txn, code, text, outcomes)
        return body

    def after_data(
        self, txn: Transaction, code: int, text: bytes, outcomes: dict[int, Outcome]
    ) -> tuple[Transaction, bytes] | None:
        if code == 354:
            if txn.refusal is None:
                return txn, data_block(txn.parcel.raw, txn.parcel.crlf)
            # A relay that takes DATA with no valid recipient gets an empty message
            # (RFC 2920, 3.1); the refusal stands.
            outcomes[txn.parcel.message.id] = txn.refusal
            return txn, b".\r\n"
        if txn.refusal is None:
            txn.refusal = classify(code, text)
        outcomes[txn.parcel.message.id] = txn.refusal
        self.dirty = txn.mail_accepted
        return None

    def write(self, payload: bytes, steps, i: int, outcomes) -> None:
        try:
            self.smtp.sock.sendall(payload)
        except OSError as e:
            raise ConnectionLost(str(e), self.unsettled(steps, i, outcomes)) from e

    def read(self, steps, i: int, outcomes) -> tuple[int, bytes]:
        # The answer to the final dot may take a relay's content filters a while.
        end_of_data = steps[i][0] == "end"
        if end_of_data:
            self.smtp.sock.settimeout(max(self.sender.timeout, END_OF_DATA_TIMEOUT))
        try:
            return self.smtp.getreply()
        except (OSError, smtplib.SMTPException) as e:
            raise ConnectionLost(str(e), self.unsettled(steps, i, outcomes)) from e
        finally:
            if end_of_data and self.smtp is not None and self.smtp.sock is not None:
                self.smtp.sock.settimeout(self.sender.timeout)

    @staticmethod
    def unsettled(steps, i: int, outcomes: dict[int, Outcome]) -> tuple:
        """What a connection lost at step i leaves: the parcels of steps i and later with no
        outcome, and the one whose body went out unanswered (its fate is unknown)."""
        seen: dict[int, Parcel] = {}
        for _, txn, _ in steps[i:]:
            if txn is not None and txn.parcel.message.id not in outcomes:
                seen.setdefault(txn.parcel.message.id, txn.parcel)
        kind, txn, _ = steps[0]
        handed = txn.parcel if kind == "end" and i == 0 and txn.refusal is None else None
        return list(seen.values()), handed


class SmtpTransport(Transport):
    def __init__(self, sender: Sender):
        super().__init__(sender)
        self.sessions = [Session(sender) for _ in range(max(1, sender.pool_size or 1))]
        self.threads: ThreadPoolExecutor | None = None

    def open(self) -> None:
        if not self.sessions[0].alive():
            self.sessions[0].close(polite=False)
            self.sessions[0].connect()

    def close(self) -> None:
        self.shut(polite=True)

    def abort(self) -> None:
        self.shut(polite=False)

    def shut(self, polite: bool) -> None:
        for session in self.sessions:
            session.close(polite=polite)
        if self.threads is not None:
            self.threads.shutdown(wait=True)
            self.threads = None

    def connections(self) -> int:
        now = time.monotonic()
        return 1 + sum(1 for s in self.sessions[1:] if s.refused_until <= now)

    def send(self, parcel: Parcel) -> Outcome:
        outcomes: dict[int, Outcome] = {}
        self.send_many(iter([parcel]), 1, outcomes)
        return outcomes[parcel.message.id]

    def send_many(self, parcels, size, outcomes, heartbeat=None) -> None:
        # The first connection is opened here: a refused login or a host that is down is
        # the sender's trouble (SenderUnavailable), found before anything is handed out.
        self.open()
        feed = Feed(parcels)
        wanted = max(1, -(-size // MESSAGES_PER_CONNECTION))
        now = time.monotonic()
        ready = [s for s in self.sessions[1:] if s.refused_until <= now]
        sessions = [self.sessions[0], *ready[: wanted - 1]]
        failures: dict[Session, Exception] = {}
        while True:
            failures.update(self.run(sessions, feed, outcomes, heartbeat))
            healthy = [s for s in sessions if s not in failures]
            if feed.exhausted():
                break
            if not healthy:  # every connection failed: the sender is unavailable
                raise failures.get(self.sessions[0]) or next(iter(failures.values()))
            # A connection gave back its parcels after the others had finished.
            sessions = healthy
        for session, error in failures.items():
            # The others carried the batch: a relay limiting connections per client.
            log.warning("sender %s: a connection failed: %s", self.sender.code, error)
            session.refused_until = time.monotonic() + REFUSED_BACKOFF

    def run(self, sessions: list[Session], feed: Feed, outcomes, heartbeat) -> dict:
        """Every session delivers from the feed, each in its own thread, until it is empty;
        the ones that failed. The calling thread runs the heartbeat meanwhile."""
        if self.threads is None:
            self.threads = ThreadPoolExecutor(len(self.sessions), thread_name_prefix="smtp")
        futures = {s: self.threads.submit(s.deliver, feed, outcomes) for s in sessions}
        while wait(futures.values(), timeout=HEARTBEAT_SECONDS).not_done:
            if heartbeat is not None:
                heartbeat()
        failures = {}
        for session, future in futures.items():
            error = future.exception()
            if isinstance(error, SenderUnavailable):
                failures[session] = error
            elif error is not None:
                raise error
        return failures

    def test_connection(self) -> list[str]:
        session = Session(self.sender)
        lines = session.connect()
        try:
            lines.append(answer(*session.smtp.noop()))
            said = "offers" if session.pipelining else "does not offer"
            lines.append(f"The relay {said} PIPELINING.")
        finally:
            session.close()
        return lines
