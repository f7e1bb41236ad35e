"""Sender backends: one small module per kind behind transports.base.Transport."""

from __future__ import annotations

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
