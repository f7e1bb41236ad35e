from __future__ import annotations

from django.test import override_settings

from postroom.accounts.models import LoginFailure
from postroom.test import PASSWORD, BaseTestCase


class LoginTestCase(BaseTestCase):
    def test_it_logs_in_and_lands_on_the_project(self) -> None:
        r = self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        self.assertRedirects(r, "/", fetch_redirect_response=False)
        r = self.client.get("/")
        self.assertRedirects(r, self.url(""))

    def test_it_accepts_the_email_in_any_case(self) -> None:
        r = self.client.post("/login/", {"username": "Alice@Example.org", "password": PASSWORD})
        self.assertEqual(r.status_code, 302)

    def test_it_rejects_a_wrong_password_and_records_it(self) -> None:
        r = self.client.post("/login/", {"username": "alice@example.org", "password": "nope"})
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, "correct email")
        self.assertEqual(LoginFailure.objects.filter(email="alice@example.org").count(), 1)

    @override_settings(LOGIN_THROTTLE_PER_EMAIL=3)
    def test_it_throttles_repeated_failures_even_with_the_right_password(self) -> None:
        for _ in range(3):
            self.client.post("/login/", {"username": "alice@example.org", "password": "nope"})
        r = self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, "Too many failed logins")
        self.assertNotIn("_auth_user_id", self.client.session)

    @override_settings(LOGIN_THROTTLE_PER_IP=4, LOGIN_THROTTLE_PER_EMAIL=100)
    def test_it_throttles_by_client_ip_across_addresses(self) -> None:
        for i in range(4):
            self.client.post("/login/", {"username": f"guess{i}@example.org", "password": "x"})
        r = self.client.post("/login/", {"username": "bob@example.org", "password": PASSWORD})
        self.assertContains(r, "Too many failed logins")

    def test_dashboard_pages_need_a_login(self) -> None:
        r = self.client.get(self.url("contacts/"))
        self.assertEqual(r.status_code, 302)
        self.assertIn("/login/", r["Location"])

    def test_it_logs_out_with_a_post(self) -> None:
        self.login()
        r = self.client.post("/logout/")
        self.assertRedirects(r, "/login/")
        self.assertEqual(self.client.get("/").status_code, 302)


class ClientIpTestCase(BaseTestCase):
    def ip(self, **meta) -> str | None:
        from django.test import RequestFactory

        from postroom.accounts.forms import client_ip

        return client_ip(RequestFactory().get("/", **meta))

    def test_it_ignores_forwarded_for_unless_told(self) -> None:
        self.assertEqual(
            self.ip(HTTP_X_FORWARDED_FOR="9.9.9.9", REMOTE_ADDR="10.0.0.1"), "10.0.0.1"
        )

    @override_settings(USE_X_FORWARDED_FOR=True)
    def test_it_takes_the_entry_our_proxy_appended(self) -> None:
        self.assertEqual(
            self.ip(HTTP_X_FORWARDED_FOR="6.6.6.6, 1.2.3.4", REMOTE_ADDR="10.0.0.1"), "1.2.3.4"
        )

    @override_settings(USE_X_FORWARDED_FOR=True)
    def test_it_falls_back_on_a_malformed_entry(self) -> None:
        self.assertEqual(
            self.ip(HTTP_X_FORWARDED_FOR="not-an-ip", REMOTE_ADDR="10.0.0.1"), "10.0.0.1"
        )


class LockoutTestCase(BaseTestCase):
    def test_failures_from_one_client_do_not_lock_the_owner_out_elsewhere(self) -> None:
        for _ in range(6):
            self.client.post(
                "/login/", {"username": "alice@example.org", "password": "x"}, REMOTE_ADDR="6.6.6.6"
            )
        r = self.client.post(
            "/login/",
            {"username": "alice@example.org", "password": PASSWORD},
            REMOTE_ADDR="6.6.6.6",
        )
        self.assertContains(r, "Too many failed logins")
        r = self.client.post(
            "/login/",
            {"username": "alice@example.org", "password": PASSWORD},
            REMOTE_ADDR="1.2.3.4",
        )
        self.assertEqual(r.status_code, 302)
