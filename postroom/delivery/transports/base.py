"""What a sender backend does: hand a batch of messages over, one outcome each; stay open
between batches; answer a connection test."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from postroom.delivery.models import Message, Sender

SENT, DEFERRED, FAILED = "sent", "deferred", "failed"
SKIPPED = "skipped"  # decided before the transport: suppressed or no longer subscribed


@dataclass
class Outcome:
    status: str  # SENT, DEFERRED (try again later) or FAILED (permanent)
    response: str  # the relay's own words, kept on the message
    provider_id: str = ""


@dataclass(frozen=True, slots=True)
class Parcel:
    """One message ready to go: its ledger row, the envelope sender and the bytes."""

    message: Message
    envelope_from: str
    raw: bytes


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

    def send_many(self, parcels: Iterator[Parcel], size: int, outcomes: dict[int, Outcome]):
        """Hand every parcel over (`size` of them, about), writing each outcome into
        `outcomes` by message id as soon as it is known. Raises SenderUnavailable for
        sender-wide trouble: what `outcomes` holds by then stands, the rest was not sent."""
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
