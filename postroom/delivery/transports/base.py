"""What a sender backend does: hand a batch of messages over, one outcome each; stay open
between batches; answer a connection test."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from postroom.delivery.models import Message, Sender

SENT, DEFERRED, FAILED = "sent", "deferred", "failed"
SKIPPED = "skipped"  # decided before the transport: suppressed or no longer subscribed


@dataclass
class Outcome:
    status: str  # SENT, DEFERRED (try again later) or FAILED (permanent)
    response: str  # the relay's own words, kept on the message
    provider_id: str = ""
    # An earlier attempt's fate is unknown (the connection dropped after the message was
    # handed over): this one may be a second copy, and the ledger says so.
    maybe_duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Parcel:
    """One message ready to go: its ledger row, the envelope sender and the bytes."""

    message: Message
    envelope_from: str
    raw: bytes
    # Built by delivery.mime, whose every line ends in CRLF: the transport need not check.
    crlf: bool = False


class SenderUnavailable(Exception):
    """The sender as a whole cannot send (login refused, host down): pause it, do not fail
    the recipients. The message says what the server answered."""


class Transport(ABC):
    """One per sender per worker process, kept open between batches
    (transports.TransportCache) and closed when it has been idle a while."""

    def __init__(self, sender: Sender):
        self.sender = sender

    def open(self) -> None:  # noqa: B027 (most transports need no connection)
        """Connect if not connected. Raises SenderUnavailable."""

    def close(self) -> None:  # noqa: B027
        """Disconnect; never raises."""

    def abort(self) -> None:
        """Disconnect after a fault, without the courtesies (a session may be mid-message)."""
        self.close()

    def connections(self) -> int:
        """Connections this transport can use now: a batch is sized by it."""
        return 1

    def send_many(
        self,
        parcels: Iterator[Parcel],
        size: int,
        outcomes: dict[int, Outcome],
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        """Hand every parcel over (`size` of them, about), writing each outcome into
        `outcomes` by message id as soon as it is known. Raises SenderUnavailable for
        sender-wide trouble: what `outcomes` holds by then stands, the rest was not sent.
        A transport that waits long calls `heartbeat` now and then (it renews the claim)."""
        self.open()
        for parcel in parcels:
            outcomes[parcel.message.id] = self.send(parcel)

    @abstractmethod
    def send(self, parcel: Parcel) -> Outcome:
        """Hand one message over. Raises SenderUnavailable for sender-wide trouble."""

    @abstractmethod
    def test_connection(self) -> list[str]:
        """Connect and log in, returning the server's answers line by line.
        Raises SenderUnavailable with the server's answer when that fails."""
