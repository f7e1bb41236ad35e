"""What a sender backend does: open, send one message, close; and answer a connection test."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from postroom.delivery.models import Message, Sender

SENT, DEFERRED, FAILED = "sent", "deferred", "failed"
SKIPPED = "skipped"  # decided before the transport: suppressed or no longer subscribed


@dataclass
class Outcome:
    status: str  # SENT, DEFERRED (try again later) or FAILED (permanent)
    response: str  # the relay's own words, kept on the message
    provider_id: str = ""


class SenderUnavailable(Exception):
    """The sender as a whole cannot send (login refused, host down): pause it, do not fail
    the recipients. The message says what the server answered."""


class Transport(ABC):
    def __init__(self, sender: Sender):
        self.sender = sender

    def open(self) -> None:  # noqa: B027 (most transports need no connection)
        """Connect before a batch. Raises SenderUnavailable."""

    def close(self) -> None:  # noqa: B027
        """Disconnect after a batch; never raises."""

    @abstractmethod
    def send(self, message: Message, envelope_from: str, raw: bytes) -> Outcome:
        """Hand one message to the relay. Raises SenderUnavailable for sender-wide trouble."""

    @abstractmethod
    def test_connection(self) -> list[str]:
        """Connect and log in, returning the server's answers line by line.
        Raises SenderUnavailable with the server's answer when that fails."""
