from __future__ import annotations

from django.utils import timezone

from postroom.accounts.actions import revoke_key
from postroom.accounts.models import ApiKey
from postroom.test import BaseTestCase

SECRET_ONLY = [
    ("GET", "project"),
    ("GET", "contacts"),
    ("POST", "contacts"),
    ("PUT", "contacts"),
    ("DELETE", "contacts"),
    ("POST", "contacts/subscribe"),
    ("POST", "contacts/unsubscribe"),
    ("GET", "fields"),
    ("GET", "suppressions"),
    ("GET", "segments"),
    ("POST", "segments"),
    ("POST", "send"),
    ("GET", "messages"),
    ("GET", "events"),
    ("GET", "senders"),
    ("GET", "campaigns"),
    ("POST", "campaigns"),
    ("GET", "templates"),
    ("POST", "templates"),
]


class ApiAuthTestCase(BaseTestCase):
    def test_it_requires_a_key(self) -> None:
        r = self.client.get("/api/v1/contacts")
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.json()["success"], False)
        self.assertIn("Authorization", r.json()["message"])

    def test_it_rejects_an_unknown_key(self) -> None:
        r = self.api("GET", "contacts", key="sk_" + "0" * 48)
        self.assertEqual(r.status_code, 401)

    def test_it_refuses_the_public_key_where_a_secret_key_is_needed(self) -> None:
        for method, path in SECRET_ONLY:
            r = self.api(method, path, {} if method != "GET" else None, key=self.project.public_key)
            self.assertEqual(r.status_code, 403, f"{method} {path}")
            self.assertIn("secret key", r.json()["message"])

    def test_it_rejects_a_revoked_key(self) -> None:
        revoke_key(ApiKey.objects.get(project=self.project))
        self.assertEqual(self.api("GET", "contacts").status_code, 401)

    def test_it_records_when_a_key_was_last_used(self) -> None:
        self.assertEqual(self.api("GET", "project").status_code, 200)
        key = ApiKey.objects.get(project=self.project)
        self.assertIsNotNone(key.last_used_at)
        self.assertLess((timezone.now() - key.last_used_at).total_seconds(), 5)

    def test_it_returns_the_keys_project(self) -> None:
        body = self.api("GET", "project").json()
        self.assertEqual(body["id"], str(self.project.code))
        self.assertEqual(body["public_key"], self.project.public_key)


class KeyCacheTestCase(BaseTestCase):
    def test_a_revoked_key_stops_working_at_once_in_this_process(self) -> None:
        self.assertEqual(self.api("GET", "project").status_code, 200)  # now cached
        revoke_key(ApiKey.objects.get(project=self.project))
        self.assertEqual(self.api("GET", "project").status_code, 401)

    def test_a_rotated_public_key_stops_working_at_once(self) -> None:
        from postroom.accounts.actions import rotate_public_key

        old = self.project.public_key
        track = {"event": "e", "email": "ann@example.com"}
        self.assertEqual(self.api("POST", "track", track, key=old).status_code, 200)
        rotate_public_key(self.project)
        self.assertEqual(self.api("POST", "track", track, key=old).status_code, 401)

    def test_other_processes_forget_a_revoked_key_within_seconds(self) -> None:
        from unittest import mock

        from postroom.accounts import auth

        self.assertEqual(self.api("GET", "project").status_code, 200)
        ApiKey.objects.update(revoked_at=timezone.now())  # as another process would
        self.assertEqual(self.api("GET", "project").status_code, 200)  # cached
        later = auth.time.monotonic() + auth.KEY_CACHE_SECONDS + 1
        with mock.patch.object(auth.time, "monotonic", return_value=later):
            self.assertEqual(self.api("GET", "project").status_code, 401)
