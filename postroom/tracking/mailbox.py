"""Bounces read from a mailbox: for mail servers that cannot pipe to `postroom bounce`, the
worker reads POSTROOM_BOUNCE_MAILBOX once a minute (IMAP: unread messages, marked read after;
POP3: every message, deleted after) and hands each to tracking.bounces. Whatever is not a
bounce or complaint of ours is left read (IMAP) or removed (POP3) all the same: the mailbox
exists for bounces alone."""

from __future__ import annotations

import contextlib
import imaplib
import logging
import poplib
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from urllib.parse import unquote, urlsplit

from django.conf import settings

from postroom.tracking.bounces import handle_mail

log = logging.getLogger(__name__)

# At most this many messages a poll: a flood waits for the next minute, the worker goes on.
POLL_LIMIT = 200
TIMEOUT = 30


@dataclass
class MailboxConfig:
    scheme: str  # imap, imaps, pop3, pop3s
    host: str
    port: int
    user: str
    password: str
    folder: str = "INBOX"


class MailboxConfigError(ValueError):
    pass


def parse_mailbox_url(url: str) -> MailboxConfig:
    """imaps://user:pass@host[:port][/folder] or pop3s://user:pass@host[:port]."""
    parts = urlsplit(url)
    defaults = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
    if parts.scheme not in defaults:
        raise MailboxConfigError(
            "POSTROOM_BOUNCE_MAILBOX: use imaps://, imap://, pop3s:// or pop3://"
        )
    if not (parts.hostname and parts.username):
        raise MailboxConfigError("POSTROOM_BOUNCE_MAILBOX: give a user and a host")
    return MailboxConfig(
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or defaults[parts.scheme],
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        folder=unquote(parts.path.strip("/")) or "INBOX",
    )


def poll_bounce_mailbox() -> int:
    """Periodic: read the bounce mailbox once; how many bounces and complaints were acted on."""
    if not settings.BOUNCE_MAILBOX:
        return 0
    try:
        config = parse_mailbox_url(settings.BOUNCE_MAILBOX)
        reader = imap_messages if config.scheme.startswith("imap") else pop3_messages
        handled = 0
        for raw in reader(config):
            mail = message_from_bytes(raw, policy=policy.default)
            try:
                if handle_mail(mail, []) is not None:
                    handled += 1
            except Exception:
                log.exception("a message in the bounce mailbox could not be handled")
        return handled
    except (OSError, imaplib.IMAP4.error, poplib.error_proto, MailboxConfigError) as e:
        log.warning("bounce mailbox: %s", e)
        return 0


def imap_messages(config: MailboxConfig) -> Iterator[bytes]:
    connect = imaplib.IMAP4_SSL if config.scheme == "imaps" else imaplib.IMAP4
    client = connect(config.host, config.port, timeout=TIMEOUT)
    try:
        if config.scheme == "imap":
            client.starttls()
        client.login(config.user, config.password)
        client.select(config.folder)
        _, found = client.search(None, "UNSEEN")
        for number in (found[0] or b"").split()[:POLL_LIMIT]:
            _, data = client.fetch(number, "(RFC822)")
            raw = next((part[1] for part in data if isinstance(part, tuple)), None)
            if raw is not None:
                yield raw
            client.store(number, "+FLAGS", "\\Seen")
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()


def pop3_messages(config: MailboxConfig) -> Iterator[bytes]:
    connect = poplib.POP3_SSL if config.scheme == "pop3s" else poplib.POP3
    client = connect(config.host, config.port, timeout=TIMEOUT)
    try:
        if config.scheme == "pop3":
            client.stls()
        client.user(config.user)
        client.pass_(config.password)
        count, _ = client.stat()
        for number in range(1, min(count, POLL_LIMIT) + 1):
            _, lines, _ = client.retr(number)
            yield b"\r\n".join(lines) + b"\r\n"
            client.dele(number)
    finally:
        with contextlib.suppress(OSError, poplib.error_proto):
            client.quit()  # deletions take effect here
