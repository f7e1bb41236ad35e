from __future__ import annotations

import re

from django.core import mail
from django.test import override_settings

from postroom.test import PASSWORD, BaseTestCase


class PasswordTestCase(BaseTestCase):
    def test_it_changes_the_password(self) -> None:
        self.login()
        r = self.client.post(
            "/password/change/",
            {
                "old_password": PASSWORD,
                "new_password1": "a new long passphrase",
                "new_password2": "a new long passphrase",
            },
        )
        self.assertRedirects(r, "/password/change/done/")
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password("a new long passphrase"))

    def test_it_resets_the_password_by_email(self) -> None:
        r = self.client.post("/password/reset/", {"email": "alice@example.org"})
        self.assertRedirects(r, "/password/reset/sent/")
        self.assertEqual(len(mail.outbox), 1)
        self.assertIn("Reset your Postroom password", mail.outbox[0].subject)
        link = re.search(r"https?://[^/]+(/password/reset/\S+/)", mail.outbox[0].body).group(1)
        r = self.client.get(link, follow=True)
        form_url = r.redirect_chain[-1][0]
        r = self.client.post(
            form_url,
            {"new_password1": "reset passphrase 42", "new_password2": "reset passphrase 42"},
        )
        self.assertRedirects(r, "/password/reset/done/")
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password("reset passphrase 42"))

    def test_it_does_not_reveal_unknown_addresses(self) -> None:
        r = self.client.post("/password/reset/", {"email": "nobody@example.org"})
        self.assertRedirects(r, "/password/reset/sent/")
        self.assertEqual(len(mail.outbox), 0)


class ResetLinkHostTestCase(BaseTestCase):
    @override_settings(ALLOWED_HOSTS=["*"], SITE_URL="https://mail.example.com")
    def test_the_link_uses_site_url_whatever_the_host_header(self) -> None:
        self.client.post(
            "/password/reset/", {"email": "alice@example.org"}, HTTP_HOST="evil.example"
        )
        body = mail.outbox[0].body
        self.assertIn("https://mail.example.com/password/reset/", body)
        self.assertNotIn("evil.example", body)

    def test_an_unknown_host_is_refused(self) -> None:
        r = self.client.post(
            "/password/reset/", {"email": "alice@example.org"}, HTTP_HOST="evil.example"
        )
        self.assertEqual(r.status_code, 400)
        self.assertEqual(len(mail.outbox), 0)
