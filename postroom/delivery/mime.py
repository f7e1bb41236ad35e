"""Build the message a relay receives, with the standard library's email package.

Every header value passes through one_line(): user text never reaches a header with a CR or LF.

build_mime() builds one message from scratch: the reference. The send loop uses MimeTemplate
instead: the stdlib builds an Email's message once (bodies, boundary, shared headers), and each
recipient only gets its own To, Date and Message-ID, folded and encoded by the same stdlib
policy (tests/test_mime.py holds the two to the same output).
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate

from postroom.accounts.models import one_line
from postroom.delivery.models import Email, Message

# RFC 5322 field names: printable ASCII without colon; we allow the usual letters, digits, "-".
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,75}$")

# Placeholders for the per-recipient headers while the stdlib builds the shared message.
SLOT_TO = "slot-to@postroom.invalid"
SLOT_DATE = "Thu, 01 Jan 1970 00:00:00 -0000"
SLOT_ID = "<slot-id@postroom.invalid>"
# Values the stdlib writes out unchanged (a dot-atom address, a plain id, short enough never
# to be folded): these skip its header parser, anything else goes through it.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
ADDRESS = rf"{ATEXT}(?:\.{ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
PLAIN_TO = re.compile(rf"{ADDRESS}|[A-Za-z0-9-]+(?: [A-Za-z0-9-]+)* <{ADDRESS}>")
PLAIN_ID = re.compile(r"<[A-Za-z0-9.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
PLAIN_MAX = 60


def _message(email: Email, to: str, date: str, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((one_line(email.from_name), email.from_email))
    msg["To"] = to
    msg["Subject"] = one_line(email.subject)
    msg["Date"] = date
    msg["Message-ID"] = message_id
    if email.reply_to:
        msg["Reply-To"] = one_line(email.reply_to)
    for name, value in (email.headers or {}).items():
        if HEADER_NAME.match(name):
            msg[name] = one_line(str(value))
    msg.set_content(email.text or "")
    if email.html:
        msg.add_alternative(email.html, subtype="html")
    return msg


def to_header(message: Message) -> str:
    return formataddr((one_line(message.to_name), message.to_email))


def build_mime(email: Email, message: Message) -> bytes:
    domain = email.from_email.rsplit("@", 1)[-1]
    msg = _message(
        email, to_header(message), formatdate(localtime=False), message.message_id(domain)
    )
    return msg.as_bytes(policy=SMTP)


def header_line(name: str, value: str, plain: re.Pattern) -> bytes:
    """`Name: value` CRLF as the stdlib's SMTP policy writes it (folded, RFC 2047 encoded)."""
    if len(value) <= PLAIN_MAX and plain.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    # What msg[name] = value and as_bytes(policy=SMTP) do, CR/LF check included.
    return SMTP.fold_binary(*SMTP.header_store_parse(name, value))


class MimeTemplate:
    """One Email's message, built once; render() fills in one recipient's headers."""

    def __init__(self, email: Email):
        self.email = email
        self.domain = email.from_email.rsplit("@", 1)[-1]
        raw = _message(email, SLOT_TO, SLOT_DATE, SLOT_ID).as_bytes(policy=SMTP)
        end = raw.index(b"\r\n\r\n") + 2
        head, body = raw[:end], raw[end:]
        self.parts: list[bytes] = []
        for line in (f"To: {SLOT_TO}\r\n", f"Date: {SLOT_DATE}\r\n", f"Message-ID: {SLOT_ID}\r\n"):
            before, found, head = head.partition(line.encode("ascii"))
            if not found:
                raise AssertionError(f"the template lost its slot {line!r}")
            self.parts.append(before)
        self.parts.append(head + body)

    def render(self, message: Message) -> bytes:
        a, b, c, d = self.parts
        date = formatdate(localtime=False)
        return b"".join(
            (
                a,
                header_line("To", to_header(message), PLAIN_TO),
                b,
                f"Date: {date}\r\n".encode("ascii"),
                c,
                header_line("Message-ID", message.message_id(self.domain), PLAIN_ID),
                d,
            )
        )
