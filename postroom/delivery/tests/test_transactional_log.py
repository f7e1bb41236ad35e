from __future__ import annotations

from unittest import mock

from django.db import OperationalError

from postroom.test import BaseTestCase, drain


class TransactionalLogTest(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login()

    def send(self, to: str, subject: str = "Your receipt") -> None:
        r = self.api("POST", "send", {"to": to, "subject": subject, "body": "B"})
        self.assertEqual(r.status_code, 200, r.content)

    def test_empty_it_shows_how_to_send_one(self) -> None:
        r = self.client.get(self.url("messages/"))
        self.assertContains(r, "No transactional email yet")
        self.assertContains(r, "/api/v1/send")

    def test_it_lists_and_searches_by_recipient_or_subject(self) -> None:
        self.send("ann@example.com", "Your receipt")
        self.send("bob@example.com", "Password reset")
        drain()
        self.start_campaign()  # campaign mail is not listed
        r = self.client.get(self.url("messages/"))
        self.assertContains(r, "ann@example.com")
        self.assertContains(r, "bob@example.com")
        r = self.client.get(self.url("messages/?q=ANN@example.com"))
        self.assertContains(r, "ann@example.com")
        self.assertNotContains(r, "bob@example.com")
        r = self.client.get(self.url("messages/?q=password"))
        self.assertContains(r, "bob@example.com")
        self.assertNotContains(r, "ann@example.com")
        r = self.client.get(self.url("messages/?state=failed"))
        self.assertContains(r, "No message matches")
        self.assertEqual(r["Cache-Control"], "no-store")

    def test_a_failing_query_shows_an_error(self) -> None:
        with mock.patch(
            "postroom.delivery.views.keyset_page", side_effect=OperationalError("locked")
        ):
            r = self.client.get(self.url("messages/"))
        self.assertContains(r, "The messages could not be loaded")

    def test_another_projects_mail_is_not_listed(self) -> None:
        self.api(
            "POST",
            "send",
            {"to": "zed@example.com", "subject": "S", "body": "B"},
            key=self.charlies_secret_key,
        )
        r = self.client.get(self.url("messages/"))
        self.assertNotContains(r, "zed@example.com")
