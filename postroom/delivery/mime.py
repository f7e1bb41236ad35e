"""Build the message a relay receives, with the standard library's email package.

Every header value passes through one_line(): user text never reaches a header with a CR or LF.
(The campaign send path will build the MIME once per Email and fill in only what differs per
recipient; this builder stays as the reference that path is tested against.)
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


def build_mime(email: Email, message: Message) -> bytes:
    msg = EmailMessage()
    msg["From"] = formataddr((one_line(email.from_name), email.from_email))
    msg["To"] = formataddr((one_line(message.to_name), message.to_email))
    msg["Subject"] = one_line(email.subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message.message_id(email.from_email.rsplit("@", 1)[-1])
    if email.reply_to:
        msg["Reply-To"] = one_line(email.reply_to)
    for name, value in (email.headers or {}).items():
        if HEADER_NAME.match(name):
            msg[name] = one_line(str(value))
    msg.set_content(email.text or "")
    if email.html:
        msg.add_alternative(email.html, subtype="html")
    return msg.as_bytes(policy=SMTP)
