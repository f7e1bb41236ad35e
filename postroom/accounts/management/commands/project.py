from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from postroom.accounts.actions import create_project
from postroom.accounts.models import Project, User


class Command(BaseCommand):
    help = "Manage projects: `project create NAME --owner EMAIL [--json]`, `project list`."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a project with a first secret key.")
        create.add_argument("name")
        create.add_argument("--owner", required=True, help="Email of an existing user.")
        create.add_argument("--json", action="store_true")
        sub.add_parser("list", help="List projects.")

    def handle(self, *args, **options) -> None:
        if options["action"] == "list":
            for p in Project.objects.order_by("name"):
                self.stdout.write(f"{p.code}  {p.name}")
            return
        owner = User.objects.filter(email=options["owner"].strip().lower()).first()
        if owner is None:
            raise CommandError(
                f"owner: no user {options['owner']!r}; create one with `postroom createadmin`."
            )
        name = options["name"].strip()
        if not name:
            raise CommandError("name: a project needs a name.")
        project, secret_key = create_project(name, owner)
        result = {
            "project": str(project.code),
            "name": project.name,
            "public_key": project.public_key,
            "secret_key": secret_key,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            for key, value in result.items():
                self.stdout.write(f"{key}: {value}")
