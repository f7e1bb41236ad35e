"""`postroom bounce [--recipient R]`: one bounce or complaint on standard input, as a mail
server's pipe delivers it (tracking.bounces). With Postfix, for the bounce domain:

    postroom-bounce  unix  -  n  n  -  -  pipe
      flags=Rq user=postroom argv=/srv/postroom/.venv/bin/postroom bounce --recipient ${recipient}

`postroom bounce --poll` reads POSTROOM_BOUNCE_MAILBOX once (the worker does so every minute).

Exit 0 when handled, 65 (EX_DATAERR) when the mail is no bounce or complaint about a message
of ours, so that the mail server can say so.
"""

from __future__ import annotations

import sys
from email import message_from_binary_file, policy

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from postroom.tracking.bounces import handle_mail
from postroom.tracking.mailbox import poll_bounce_mailbox

EX_DATAERR = 65


class Command(BaseCommand):
    help = "Read one bounce or complaint from standard input and act on it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--recipient", action="append", default=[], help="envelope recipient")
        parser.add_argument(
            "--poll", action="store_true", help="Read POSTROOM_BOUNCE_MAILBOX once instead."
        )

    def handle(self, *args, recipient: list[str], poll: bool, **options) -> None:
        if poll:
            if not settings.BOUNCE_MAILBOX:
                raise CommandError("POSTROOM_BOUNCE_MAILBOX is not set.")
            self.stdout.write(f"{poll_bounce_mailbox()} bounces and complaints handled")
            return
        mail = message_from_binary_file(sys.stdin.buffer, policy=policy.default)
        done = handle_mail(mail, recipient)
        if done is None:
            self.stderr.write("not a bounce or complaint about a message of ours")
            sys.exit(EX_DATAERR)
        self.stdout.write(done)
