from __future__ import annotations

import getpass
import secrets

from django.core.management.base import BaseCommand, CommandError

from postroom.accounts.models import User
from postroom.lib.emails import InvalidEmail, normalise_email


class Command(BaseCommand):
    help = "Create an admin user. Without --password, a password is generated and printed once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password", help="Use this password (else generated).")
        parser.add_argument("--prompt", action="store_true", help="Ask for the password.")
        parser.add_argument("--name", default="")

    def handle(self, *args, **options) -> None:
        try:
            email = normalise_email(options["email"])
        except InvalidEmail as e:
            raise CommandError(f"email: {e}") from None
        if User.objects.filter(email=email).exists():
            raise CommandError(f"There is already a user {email}.")
        password = options["password"]
        if options["prompt"]:
            password = getpass.getpass("Password: ")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(email, password, name=options["name"])
        self.stdout.write(f"Created admin {email}")
        if generated:
            self.stdout.write(f"Password: {password}  (shown once)")
