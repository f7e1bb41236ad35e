from __future__ import annotations

import io
import json

from django.core.management import CommandError, call_command

from postroom.accounts.models import ApiKey, Project, User, hash_key
from postroom.test import BaseTestCase


class ProjectCommandTestCase(BaseTestCase):
    def test_it_creates_a_project_and_prints_json(self) -> None:
        out = io.StringIO()
        call_command(
            "project", "create", "Shop", "--owner", "Alice@example.org", "--json", stdout=out
        )
        result = json.loads(out.getvalue())
        project = Project.objects.get(code=result["project"])
        self.assertEqual(project.name, "Shop")
        self.assertEqual(result["public_key"], project.public_key)
        self.assertTrue(
            ApiKey.objects.filter(project=project, key_hash=hash_key(result["secret_key"])).exists()
        )
        self.assertEqual(
            self.api("GET", "project", key=result["secret_key"]).json()["name"], "Shop"
        )

    def test_it_needs_an_existing_owner(self) -> None:
        with self.assertRaisesRegex(CommandError, "owner: no user"):
            call_command("project", "create", "Shop", "--owner", "nobody@example.org")


class CreateAdminTestCase(BaseTestCase):
    def test_it_generates_and_prints_a_password(self) -> None:
        out = io.StringIO()
        call_command("createadmin", "Root@Example.org", stdout=out)
        password = out.getvalue().split("Password: ")[1].split()[0]
        user = User.objects.get(email="root@example.org")
        self.assertTrue(user.is_superuser and user.check_password(password))

    def test_it_refuses_a_bad_address(self) -> None:
        with self.assertRaisesRegex(CommandError, "email:"):
            call_command("createadmin", "not-an-address")
