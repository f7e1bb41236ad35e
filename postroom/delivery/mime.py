"""Build the message a relay receives, with the standard library's email package.

Every header value passes through one_line(): user text never reaches a header with a CR or LF.

build_mime() builds one message from scratch: the reference. The send loop uses MimeTemplate
instead: the stdlib builds an Email's message once (bodies, boundary, shared headers), and each
recipient only gets its own To, Date and Message-ID, folded and encoded by the same stdlib
policy (tests/test_mime.py holds the two to the same output).
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formataddr, formatdate

from postroom.delivery.models import Email, Message
from postroom.lib.emails import ascii_domain, one_line

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
    msg["From"] = formataddr((one_line(email.from_name), ascii_domain(email.from_email)))
    msg["To"] = to
    msg["Subject"] = one_line(email.subject)
    msg["Date"] = date
    msg["Message-ID"] = message_id
    if email.reply_to:
        msg["Reply-To"] = ascii_domain(one_line(email.reply_to))
    for name, value in (email.headers or {}).items():
        if HEADER_NAME.match(name):
            msg[name] = one_line(str(value))
    msg.set_content(email.text or "")
    if email.html:
        msg.add_alternative(email.html, subtype="html")
    return msg


def to_header(message: Message) -> str:
    address = ascii_domain(message.to_email)
    if not address.isascii():  # formataddr() takes ASCII only
        local, _, domain = address.rpartition("@")
        return str(Address(one_line(message.to_name), username=local, domain=domain))
    return formataddr((one_line(message.to_name), address))


def needs_smtputf8(address: str) -> bool:
    """A local part that is not ASCII (jörg@example.com): no 7-bit header or envelope can
    carry it, only SMTPUTF8 (RFC 6531) with UTF-8 headers (RFC 6532)."""
    return not ascii_domain(address).isascii()


def id_domain(email: Email) -> str:
    """The domain of the From address in ASCII, for Message-IDs."""
    return ascii_domain(email.from_email).rsplit("@", 1)[-1]


def build_mime(email: Email, message: Message) -> bytes:
    msg = _message(
        email, to_header(message), formatdate(localtime=False), message.message_id(id_domain(email))
    )
    return msg.as_bytes(policy=SMTP)


def header_line(name: str, value: str, plain: re.Pattern, utf8: bool = False) -> bytes:
    """`Name: value` CRLF as the stdlib's SMTP policy writes it (folded, RFC 2047 encoded);
    with `utf8`, as its SMTPUTF8 policy does (UTF-8 as it is)."""
    if len(value) <= PLAIN_MAX and plain.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    # What msg[name] = value and as_bytes(policy=SMTP) do, CR/LF check included.
    policy = SMTPUTF8 if utf8 else SMTP
    return policy.fold_binary(*policy.header_store_parse(name, value))


class MimeTemplate:
    """One Email's message, built once; render() fills in one recipient's headers."""

    def __init__(self, email: Email):
        self.email = email
        self.domain = id_domain(email)
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
                header_line(
                    "To", to_header(message), PLAIN_TO, utf8=needs_smtputf8(message.to_email)
                ),
                b,
                f"Date: {date}\r\n".encode("ascii"),
                c,
                header_line("Message-ID", message.message_id(self.domain), PLAIN_ID),
                d,
            )
        )
