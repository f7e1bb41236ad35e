from __future__ import annotations

from datetime import timedelta as td

from django.test import override_settings
from django.utils import timezone

from postroom.accounts.actions import prune_api_records
from postroom.accounts.models import ApiRateWindow, IdempotentRequest
from postroom.contacts.models import Contact
from postroom.test import BaseTestCase
from postroom.tracking.models import Event

TRACK = {"event": "signed-up", "email": "ann@example.com"}


class RateLimitTestCase(BaseTestCase):
    @override_settings(API_RATE_LIMIT=3)
    def test_it_says_what_is_left_and_refuses_past_the_limit(self) -> None:
        remaining = [self.api("GET", "project")["RateLimit-Remaining"] for _ in range(3)]
        self.assertEqual(remaining, ["2", "1", "0"])
        r = self.api("GET", "project")
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.json()["code"], "rate_limited")
        self.assertIn("at most 3", r.json()["message"])
        self.assertTrue(1 <= int(r["Retry-After"]) <= 60)
        self.assertEqual(r["RateLimit-Limit"], "3")

    @override_settings(API_RATE_LIMIT=1)
    def test_each_key_has_its_own_count(self) -> None:
        self.assertEqual(self.api("GET", "project").status_code, 200)
        r = self.api("GET", "project", key=self.charlies_secret_key)
        self.assertEqual(r.status_code, 200)

    @override_settings(API_RATE_LIMIT_PUBLIC=1)
    def test_the_public_key_is_counted_per_client_address(self) -> None:
        key = self.project.public_key
        self.assertEqual(self.api("POST", "track", TRACK, key=key).status_code, 200)
        self.assertEqual(self.api("POST", "track", TRACK, key=key).status_code, 429)
        other = self.api("POST", "track", TRACK, key=key, REMOTE_ADDR="192.0.2.7")
        self.assertEqual(other.status_code, 200)

    @override_settings(API_RATE_LIMIT=0)
    def test_a_limit_of_zero_is_off(self) -> None:
        r = self.api("GET", "project")
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("RateLimit-Limit", r)

    def test_requests_without_a_valid_key_are_not_counted(self) -> None:
        self.assertEqual(self.api("GET", "project", key="sk_nope").status_code, 401)
        self.assertFalse(ApiRateWindow.objects.exists())

    def test_old_windows_are_pruned(self) -> None:
        ApiRateWindow.objects.create(bucket="k1", window_start=0, hits=5)
        self.api("GET", "project")
        self.assertEqual(prune_api_records(), 1)
        self.assertEqual(ApiRateWindow.objects.count(), 1)


class IdempotencyTestCase(BaseTestCase):
    def track(self, body: dict, key: str = "order-17"):
        return self.api("POST", "track", body, HTTP_IDEMPOTENCY_KEY=key)

    def test_a_retry_gets_the_first_answer_and_does_nothing_again(self) -> None:
        first = self.track(TRACK)
        again = self.track(TRACK)
        self.assertEqual(first.status_code, 200)
        self.assertEqual(again.status_code, 200)
        self.assertEqual(again.json(), first.json())
        self.assertEqual(again["Idempotent-Replayed"], "true")
        self.assertEqual(Event.objects.count(), 1)

    def test_a_reuse_for_another_request_is_a_409(self) -> None:
        self.track(TRACK)
        r = self.track({**TRACK, "event": "other"})
        self.assertEqual(r.status_code, 409)
        self.assertEqual(r.json()["errors"][0]["field"], "Idempotency-Key")
        self.assertEqual(Event.objects.count(), 1)

    def test_a_request_still_running_is_a_409(self) -> None:
        self.track(TRACK)
        IdempotentRequest.objects.update(status_code=None)
        r = self.track(TRACK)
        self.assertEqual(r.status_code, 409)
        self.assertIn("still running", r.json()["message"])

    def test_errors_are_kept_too(self) -> None:
        bad = {"event": "e", "email": "not an address"}
        self.assertEqual(self.track(bad).status_code, 422)
        self.assertEqual(self.track(bad).status_code, 422)
        self.assertEqual(IdempotentRequest.objects.get().status_code, 422)

    def test_keys_are_per_project(self) -> None:
        self.track(TRACK)
        r = self.api(
            "POST", "track", TRACK, key=self.charlies_secret_key, HTTP_IDEMPOTENCY_KEY="order-17"
        )
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("Idempotent-Replayed", r)
        self.assertEqual(Contact.objects.count(), 2)

    def test_a_key_older_than_a_day_is_forgotten(self) -> None:
        self.track(TRACK)
        IdempotentRequest.objects.update(created_at=timezone.now() - td(hours=25))
        r = self.track({**TRACK, "event": "other"})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(Event.objects.count(), 2)
        IdempotentRequest.objects.update(created_at=timezone.now() - td(hours=25))
        self.assertEqual(prune_api_records(), 1)

    def test_a_malformed_key_is_a_400(self) -> None:
        r = self.track(TRACK, key="x" * 256)
        self.assertEqual(r.status_code, 400)
        self.assertEqual(r.json()["errors"][0]["field"], "Idempotency-Key")
        self.assertFalse(Event.objects.exists())

    def test_get_requests_ignore_the_header(self) -> None:
        r = self.api("GET", "project", HTTP_IDEMPOTENCY_KEY="k")
        self.assertEqual(r.status_code, 200)
        self.assertFalse(IdempotentRequest.objects.exists())


class MethodNotAllowedTestCase(BaseTestCase):
    def test_a_method_a_path_lacks_is_a_json_405_naming_the_allowed_ones(self) -> None:
        r = self.api("PUT", "project", {})
        self.assertEqual(r.status_code, 405)
        self.assertEqual(r.json()["code"], "method_not_allowed")
        self.assertIn("GET", r["Allow"])
        self.assertIn("GET", r.json()["message"])


class SharedCountTestCase(BaseTestCase):
    """Each web process adds its requests to the shared count once a second, or on every
    request near the limit; what it reports counts its own requests since."""

    def shared(self, bucket: str) -> int:
        row = ApiRateWindow.objects.filter(bucket=bucket).first()
        return row.hits if row else 0

    def test_a_process_writes_once_a_second_far_from_the_limit(self) -> None:
        from postroom.accounts.actions import count_api_request

        t = 1_000_020.0
        counts = [count_api_request("kA", 1000, now=t + i / 100).hits for i in range(10)]
        self.assertEqual(counts, list(range(1, 11)))
        self.assertEqual(self.shared("kA"), 1)  # the first request of the window
        self.assertEqual(count_api_request("kA", 1000, now=t + 1.5).hits, 11)
        self.assertEqual(self.shared("kA"), 11)

    def test_another_processes_requests_are_seen_at_the_next_write(self) -> None:
        from postroom.accounts.actions import add_to_rate_window, count_api_request

        t = 1_000_020.0
        count_api_request("kB", 1000, now=t)
        window = int(t // 60) * 60
        add_to_rate_window("kB", window, 500)  # as another process would
        self.assertEqual(count_api_request("kB", 1000, now=t + 0.1).hits, 2)
        self.assertEqual(count_api_request("kB", 1000, now=t + 1.2).hits, 503)

    def test_near_the_limit_every_request_is_written(self) -> None:
        from postroom.accounts.actions import add_to_rate_window, count_api_request

        t = 1_000_020.0
        count_api_request("kC", 100, now=t)
        add_to_rate_window("kC", int(t // 60) * 60, 95)  # another process took 95
        self.assertEqual(count_api_request("kC", 100, now=t + 1.1).hits, 97)
        for i in range(3):
            count_api_request("kC", 100, now=t + 1.2 + i / 100)
        self.assertEqual(self.shared("kC"), 100)
        self.assertTrue(count_api_request("kC", 100, now=t + 1.3).exceeded)

    def test_a_new_window_starts_from_nothing(self) -> None:
        from postroom.accounts.actions import count_api_request

        t = 1_000_020.0
        for i in range(5):
            count_api_request("kD", 1000, now=t + i / 10)
        self.assertEqual(count_api_request("kD", 1000, now=t + 60).hits, 1)


class ReviewFixesTestCase(BaseTestCase):
    def test_another_key_reusing_an_idempotency_key_is_not_a_replay(self) -> None:
        body = {"event": "e", "email": "ann@example.com"}
        first = self.api("POST", "track", body, HTTP_IDEMPOTENCY_KEY="k1")
        other = self.api(
            "POST", "track", body, key=self.project.public_key, HTTP_IDEMPOTENCY_KEY="k1"
        )
        self.assertEqual(first.status_code, 200)
        self.assertEqual(other.status_code, 409)
        self.assertNotIn(first.json()["event"], other.content.decode())

    def test_a_refusal_of_the_key_is_not_kept(self) -> None:
        send = {"to": "ann@example.com", "subject": "S", "body": "B"}
        r = self.api("POST", "send", send, key=self.project.public_key, HTTP_IDEMPOTENCY_KEY="k2")
        self.assertEqual(r.status_code, 403)
        r = self.api("POST", "send", send, HTTP_IDEMPOTENCY_KEY="k2")
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("Idempotent-Replayed", r)

    def test_a_request_left_running_by_a_dead_process_is_forgotten(self) -> None:
        body = {"event": "e", "email": "ann@example.com"}
        self.api("POST", "track", body, HTTP_IDEMPOTENCY_KEY="k3")
        IdempotentRequest.objects.update(
            status_code=None, created_at=timezone.now() - td(minutes=3)
        )
        r = self.api("POST", "track", body, HTTP_IDEMPOTENCY_KEY="k3")
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("Idempotent-Replayed", r)

    def test_a_body_past_the_limit_is_a_json_413(self) -> None:
        from django.test import override_settings

        body = {"to": "ann@example.com", "subject": "S", "body": "x" * 5000}
        with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
            for extra in ({}, {"HTTP_IDEMPOTENCY_KEY": "k4"}):
                r = self.api("POST", "send", body, **extra)
                self.assertEqual(r.status_code, 413, extra)
                self.assertEqual(r.json()["code"], "too_large")

    def test_nan_and_infinity_are_a_422(self) -> None:
        for raw in (
            '{"event": "e", "email": "a@example.com", "data": {"x": NaN}}',
            '{"to": "a@example.com", "subject": "S", "body": "B", "data": {"x": Infinity}}',
        ):
            path = "track" if "event" in raw else "send"
            r = self.client.post(
                f"/api/v1/{path}",
                raw,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
            )
            self.assertEqual(r.status_code, 422, raw)
            self.assertEqual(r.json()["errors"][0]["field"], "data")

    def test_the_public_key_cannot_undo_an_opt_out(self) -> None:
        from postroom.contacts.models import Status

        self.make_contact("ann@example.com", status=Status.UNSUBSCRIBED)
        body = {"event": "e", "email": "ann@example.com", "subscribed": True}
        self.assertEqual(
            self.api("POST", "track", body, key=self.project.public_key).status_code, 200
        )
        self.assertEqual(Contact.objects.get().status, Status.UNSUBSCRIBED)
        self.api("POST", "track", body)  # the secret key may
        self.assertEqual(Contact.objects.get().status, Status.SUBSCRIBED)

    def test_fields_made_from_unknown_keys_are_capped(self) -> None:
        from unittest import mock

        from postroom.contacts import actions

        with mock.patch.object(actions, "MAX_FIELDS", 2):
            body = {"event": "e", "email": "a@example.com", "data": {"a": 1, "b": 2}}
            self.assertEqual(self.api("POST", "track", body).status_code, 200)
            body["data"] = {"c": 3}
            r = self.api("POST", "track", body)
            self.assertEqual(r.status_code, 422)
            self.assertIn("most it may have", r.json()["message"])
