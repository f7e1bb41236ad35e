"""Sender backends: one small module per kind behind transports.base.Transport."""

from __future__ import annotations

import json
import time

from postroom.delivery.models import Sender
from postroom.delivery.transports.anymail import ESPS, AnymailTransport
from postroom.delivery.transports.base import Transport
from postroom.delivery.transports.mailbox import MailboxTransport
from postroom.delivery.transports.smtp import SmtpTransport

TRANSPORTS: dict[str, type[Transport]] = {
    Sender.Kind.MAILBOX: MailboxTransport,
    Sender.Kind.SMTP: SmtpTransport,
    **dict.fromkeys(ESPS, AnymailTransport),
}


def transport_for(sender: Sender) -> Transport:
    return TRANSPORTS[sender.kind](sender)


def fingerprint(sender: Sender) -> tuple:
    """What a transport was opened with: an edited sender gets a new one."""
    return (
        sender.kind,
        sender.host,
        sender.port,
        sender.security,
        sender.username,
        sender.password_encrypted,
        sender.timeout,
        sender.pool_size,
        sender.api_key_encrypted,
        json.dumps(sender.esp_options or {}, sort_keys=True),
    )


class TransportCache:
    """This process's open transports, one per sender, kept between batches: an SMTP
    connection, with its TLS handshake and login, serves many batches instead of one.
    Used by the send loop's thread only."""

    # Closed after this long unused: well under the 5 minutes a relay such as Postfix
    # (smtpd_timeout) waits before dropping an idle client.
    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self.entries: dict[int, tuple[tuple, Transport, float]] = {}

    def get(self, sender: Sender) -> Transport:
        key = fingerprint(sender)
        entry = self.entries.get(sender.pk)
        if entry is not None and entry[0] == key:
            transport = entry[1]
            transport.sender = sender  # the fresh row: limits and names may have changed
        else:
            if entry is not None:
                entry[1].close()
            transport = transport_for(sender)
        self.entries[sender.pk] = (key, transport, time.monotonic())
        return transport

    def discard(self, sender: Sender) -> None:
        """After a failure: the next batch starts from a new transport."""
        entry = self.entries.pop(sender.pk, None)
        if entry is not None:
            entry[1].abort()

    def close_idle(self) -> None:
        cutoff = time.monotonic() - self.IDLE_SECONDS
        for pk, (_, transport, used) in list(self.entries.items()):
            if used < cutoff:
                del self.entries[pk]
                transport.close()

    def close_all(self) -> None:
        for _, transport, _ in self.entries.values():
            transport.close()
        self.entries.clear()


open_transports = TransportCache()
