"""Shared test personas, as in healthchecks' hc/test.py.

alice owns `project`; bob is a member of it; charlie is an outsider with a project of his own,
whose objects every test of tenancy tries to reach from alice's side (and the reverse).
"""

from __future__ import annotations

from django.test import TestCase, TransactionTestCase

from postroom.accounts.actions import create_project
from postroom.accounts.models import Membership, Project, Role, User
from postroom.contacts.actions import create_contact
from postroom.contacts.models import Contact

PASSWORD = "correct horse battery staple"


def drain() -> int:
    """Run the send loop until nothing is left to send; how many batches it took."""
    from postroom.delivery.sending import handle_one_send_batch

    steps = 0
    while handle_one_send_batch():
        steps += 1
    return steps


class ProjectFixture:
    """The personas and their projects, made in setUp; mixed into a TestCase (BaseTestCase)
    or, for code that opens connections of its own, a TransactionTestCase."""

    alice: User
    bob: User
    charlie: User
    project: Project
    charlies_project: Project
    secret_key: str
    charlies_secret_key: str

    def setUp(self) -> None:
        super().setUp()
        self.alice = User.objects.create_user("alice@example.org", PASSWORD, name="Alice")
        self.project, self.secret_key = create_project("Alice's project", self.alice)
        self.bob = User.objects.create_user("bob@example.org", PASSWORD, name="Bob")
        Membership.objects.create(project=self.project, user=self.bob, role=Role.MEMBER)
        self.charlie = User.objects.create_user("charlie@example.org", PASSWORD, name="Charlie")
        self.charlies_project, self.charlies_secret_key = create_project("Charlie's", self.charlie)

    def login(self, user: User | None = None) -> None:
        self.client.force_login(user or self.alice)

    def url(self, path: str = "", project: Project | None = None) -> str:
        """A dashboard URL inside a project: url("contacts/") -> /p/<code>/contacts/."""
        return f"/p/{(project or self.project).code}/{path}"

    def make_contact(
        self, email: str = "ann@example.com", project: Project | None = None, **kw
    ) -> Contact:
        return create_contact(project or self.project, email, **kw)

    def make_campaign(self, project: Project | None = None, **fields):
        """A draft campaign through the project's default sender (the Mailbox)."""
        from postroom.campaigns.models import Campaign
        from postroom.delivery.actions import default_sender

        project = project or self.project
        sender = default_sender(project)
        fields = {"name": "C", "subject": "S", "body": "Hello", **fields}
        return Campaign.objects.create(
            project=project, sender=sender, from_email=sender.from_email, **fields
        )

    def start_campaign(self, **fields):
        """A campaign started and snapshotted into the ledger, its recipients queued."""
        from postroom.campaigns import actions

        campaign = self.make_campaign(**fields)
        actions.start(campaign)
        actions.start_due_campaigns()
        return campaign

    def api(self, method: str, path: str, data: object = None, key: str | None = None, **extra):
        """Call /api/v1/<path> with a bearer key (alice's secret key by default)."""
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key or self.secret_key}", **extra}
        call = getattr(self.client, method.lower())
        if data is None:
            return call(f"/api/v1/{path}", **headers)
        if method.upper() == "GET":
            return call(f"/api/v1/{path}", data, **headers)
        return call(f"/api/v1/{path}", data, content_type="application/json", **headers)

    def assert_error(self, r, status: int, field: str | None = None) -> dict:
        """An API error: `status`, our JSON shape with a message, naming `field` if given."""
        self.assertEqual(r.status_code, status, r.content)
        body = r.json()
        self.assertIs(body["success"], False)
        self.assertTrue(body["message"])
        if field is not None:
            self.assertIn(field, [e["field"] for e in body["errors"]], body)
        return body


class BaseTestCase(ProjectFixture, TestCase):
    pass


class BaseTransactionTestCase(ProjectFixture, TransactionTestCase):
    pass
