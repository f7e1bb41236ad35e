"""`postroom inbound`: one email on standard input, as a mail server's pipe delivers it.

Handles mail to unsubscribe+<token>@POSTROOM_INBOUND_DOMAIN, the mailto: of List-Unsubscribe:
the recipient of the message the token names is unsubscribed; and bounces and complaints, as
`postroom bounce` does, so that one pipe can serve the whole domain. With Postfix, a pipe transport:

    postroom  unix  -  n  n  -  -  pipe
      flags=Rq user=postroom argv=/srv/postroom/.venv/bin/postroom inbound --recipient ${recipient}

Exit 0 when handled, 65 (EX_DATAERR) when the mail is for no token of ours, so that the mail
server can say so to the sender.
"""

from __future__ import annotations

import sys
from email import message_from_binary_file, policy
from email.utils import getaddresses

from django.core.management.base import BaseCommand

from postroom.delivery.models import Message
from postroom.lib.signing import unsign
from postroom.tracking import actions
from postroom.tracking.bounces import handle_mail
from postroom.tracking.links import MAILTO_PREFIX, UNSUBSCRIBE

EX_DATAERR = 65


def recipients_of(mail, given: list[str]) -> list[str]:
    """Where the mail was delivered: what the mail server says, else its headers."""
    headers = [mail.get_all(name, []) for name in ("Delivered-To", "X-Original-To", "To", "Cc")]
    found = [address for _, address in getaddresses([str(h) for hs in headers for h in hs])]
    return [*given, *found]


def token_of(address: str) -> str | None:
    local = address.rpartition("@")[0]
    if local.lower().startswith(MAILTO_PREFIX):
        return local[len(MAILTO_PREFIX) :]
    return None


class Command(BaseCommand):
    help = "Read one email from standard input (an unsubscribe by mail) and act on it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--recipient", action="append", default=[], help="envelope recipient")

    def handle(self, *args, recipient: list[str], **options) -> None:
        mail = message_from_binary_file(sys.stdin.buffer, policy=policy.default)
        done = handle_mail(mail, recipient)
        if done is not None:
            self.stdout.write(done)
            return
        for address in recipients_of(mail, recipient):
            token = token_of(address)
            code = unsign(UNSUBSCRIBE, token) if token else None
            message = Message.objects.filter(code=code).select_related("project").first()
            if code is None or message is None:
                continue
            actions.unsubscribe(message, None, "email")
            self.stdout.write(f"unsubscribed the recipient of message {message.code}")
            return
        self.stderr.write("no unsubscribe address of ours among the recipients")
        sys.exit(EX_DATAERR)
