"""The track API's fast path (tracking.fasttrack, from postroom.wsgi): it answers the plain
successful call as the API does, hands everything else to Django untouched, and its batches
write every call or none."""

from __future__ import annotations

import io
import json
import threading
import time
import unittest
from unittest import mock

import psycopg
from django.db import OperationalError, connection, connections
from django.test import override_settings

from postroom.accounts.actions import create_project
from postroom.accounts.auth import forget_keys
from postroom.contacts.actions import upsert_contact
from postroom.contacts.models import Contact
from postroom.test import BaseTestCase, BaseTransactionTestCase
from postroom.tracking import fasttrack
from postroom.tracking.actions import (
    commit_tracks,
    prepare_track,
    split_track_data,
    statement_parts,
    write_tracks,
)
from postroom.tracking.models import Event
from postroom.webhooks.actions import forget_endpoints
from postroom.webhooks.models import Delivery, Endpoint

CALL = {
    "event": "signed-up",
    "email": "Ann@Example.com",
    "data": {"plan": "pro", "orderId": {"value": "o-17", "persistent": False}},
}


def environ(body: bytes | dict, key: str, **extra) -> dict:
    """A WSGI environ as granian gives it for POST /api/v1/track."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/track",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(raw)),
        "HTTP_HOST": "localhost",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        **extra,
    }


class FastTrackTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        forget_keys()

    def fast(self, body: bytes | dict, key: str | None = None, **extra):
        return fasttrack.answer_track(environ(body, key or self.secret_key, **extra))

    def assert_handed_to_django(self, body: bytes | dict, key: str | None = None, **extra):
        env = environ(body, key or self.secret_key, **extra)
        self.assertIsNone(fasttrack.answer_track(env))
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.assertEqual(env["wsgi.input"].read(), raw)  # put back for Django to read
        self.assertFalse(Event.objects.exists())


class SameAnswerTest(FastTrackTestCase):
    def test_it_answers_as_the_api_does_and_stores_the_same(self) -> None:
        status, headers, body = self.fast(CALL)
        view = self.api("POST", "track", {**CALL, "email": "bob@example.com"})
        self.assertEqual((status, view.status_code), ("200 OK", 200))
        headers = dict(headers)
        self.assertEqual(set(headers), set(view.headers))
        for name, value in headers.items():
            if name not in ("RateLimit-Remaining", "RateLimit-Reset"):
                self.assertEqual(value, view[name], name)
        self.assertEqual(int(headers["Content-Length"]), len(body))
        fast, slow = json.loads(body), view.json()
        self.assertEqual(set(fast), set(slow))
        self.assertEqual(len(fast["timestamp"]), len(slow["timestamp"]))  # same format
        ann = Contact.objects.get(project=self.project, email="ann@example.com")
        bob = Contact.objects.get(project=self.project, email="bob@example.com")
        self.assertEqual(fast["contact"], str(ann.code))
        for contact, answer in ((ann, fast), (bob, slow)):
            event = Event.objects.get(contact=contact)
            self.assertEqual(answer["event"], str(event.code))
            self.assertEqual((event.kind, event.name), ("custom", "signed-up"))
            self.assertEqual(event.data, {"plan": "pro", "orderId": "o-17"})
            self.assertEqual((contact.data, contact.consent_source), ({"plan": "pro"}, "api"))

    def test_the_public_key_gets_the_browser_headers_and_cannot_resubscribe(self) -> None:
        self.make_contact("ann@example.com", status="unsubscribed")
        _, headers, _ = self.fast({**CALL, "subscribed": True}, self.project.public_key)
        view = self.api("POST", "track", CALL, key=self.project.public_key)
        for name in ("Access-Control-Allow-Origin", "Access-Control-Expose-Headers"):
            self.assertEqual(dict(headers)[name], view[name])
        self.assertEqual(Contact.objects.get(email="ann@example.com").status, "unsubscribed")

    def test_the_rate_limit_counts_the_call_once(self) -> None:
        _, headers, _ = self.fast(CALL)
        view = self.api("POST", "track", CALL)
        remaining = int(dict(headers)["RateLimit-Remaining"])
        self.assertEqual(int(view["RateLimit-Remaining"]), remaining - 1)


class HandedToDjangoTest(FastTrackTestCase):
    def test_calls_it_cannot_answer_go_to_django_with_their_body(self) -> None:
        cases = {
            "no key": {"key": "nope"},
            "an unknown key": {"key": "sk_" + "0" * 40},
            "an Idempotency-Key": {"HTTP_IDEMPOTENCY_KEY": "order-17"},
            "another host": {"HTTP_HOST": "evil.example"},
            "not JSON's content type": {"CONTENT_TYPE": "text/plain"},
        }
        for name, extra in cases.items():
            with self.subTest(name):
                self.assert_handed_to_django(CALL, **extra)

    def test_bad_input_goes_to_django_which_names_the_field(self) -> None:
        bad = {
            "not JSON": b"{nope",
            "a missing email": {"event": "e"},
            "a bad address": {"event": "e", "email": "ann@example.com;Ann;Lee"},
            "a blank event": {"event": " ", "email": "ann@example.com"},
            "an object kept on the contact": {**CALL, "data": {"plan": {"a": 1}}},
            "a NUL": {**CALL, "event": "a\x00b"},
        }
        for name, body in bad.items():
            with self.subTest(name):
                self.assert_handed_to_django(body)
                view = self.client.post(
                    "/api/v1/track",
                    body if isinstance(body, bytes) else json.dumps(body),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
                )
                self.assertIn(view.status_code, (400, 422), view.content)
                self.assertFalse(view.json()["success"])

    def test_other_requests_are_not_its_own(self) -> None:
        self.assertIsNone(fasttrack.answer_track(environ(CALL, self.secret_key, PATH_INFO="/x")))
        self.assertIsNone(
            fasttrack.answer_track(environ(CALL, self.secret_key, REQUEST_METHOD="OPTIONS"))
        )
        self.assertIsNone(fasttrack.answer_track(environ(CALL, self.secret_key, CONTENT_LENGTH="")))
        self.assertFalse(Event.objects.exists())

    def test_a_key_over_its_limit_goes_to_django_for_the_429(self) -> None:
        with override_settings(API_RATE_LIMIT=1):
            self.assertIsNotNone(self.fast(CALL))
            env = environ({**CALL, "email": "bob@example.com"}, self.secret_key)
            self.assertIsNone(fasttrack.answer_track(env))
            view = self.api("POST", "track", {**CALL, "email": "bob@example.com"})
        self.assertEqual(view.status_code, 429)
        self.assertEqual(Event.objects.count(), 1)

    def test_other_middleware_or_https_settings_turn_it_off(self) -> None:
        extra = [*fasttrack.KNOWN_MIDDLEWARE, "example.Middleware"]
        for changed in ({"MIDDLEWARE": extra}, {"SECURE_SSL_REDIRECT": True}):
            with self.subTest(changed), override_settings(**changed):
                self.assert_handed_to_django(CALL)

    def test_a_failed_write_goes_to_django(self) -> None:
        failing = mock.patch.object(fasttrack, "write_track", side_effect=OperationalError)
        with failing, self.assertLogs("postroom.tracking", "ERROR"):
            self.assert_handed_to_django(CALL)


class BatchTest(BaseTestCase):
    """TrackWriter.flush, called here on the test's connection (its thread would use one of
    its own, which cannot see the test's rows)."""

    def prepared(self, email: str, event: str = "signed-up"):
        return prepare_track(self.project, event, email, None, {"plan": "pro"})

    def test_a_batch_writes_every_call_in_one_transaction(self) -> None:
        writer = fasttrack.TrackWriter()
        emails = ["ann@example.com", "bob@example.com", "ann@example.com"]
        pending = [fasttrack.PendingTrack(self.prepared(e)) for e in emails]
        writer.pending = list(pending)
        self.assertEqual(writer.flush(), 3)
        ann = Contact.objects.get(email="ann@example.com")
        bob = Contact.objects.get(email="bob@example.com")
        self.assertTrue(all(p.written.is_set() for p in pending))
        self.assertEqual([p.tracked.contact for p in pending], [ann.code, bob.code, ann.code])
        self.assertEqual(Event.objects.filter(contact=ann).count(), 2)
        self.assertEqual(Event.objects.filter(contact=bob).count(), 1)

    def test_results_come_back_in_order_and_a_contact_is_created_once(self) -> None:
        Endpoint.objects.create(
            project=self.project, url="https://hooks.example/in", event_types=["contact.created"]
        )
        forget_endpoints()
        self.addCleanup(forget_endpoints)  # ids come again after the test's rollback
        calls = [self.prepared(e) for e in ("ann@example.com", "bob@example.com")]
        calls.append(self.prepared("ann@example.com", "paid"))
        tracked = write_tracks(calls)
        ann = Contact.objects.get(email="ann@example.com")
        self.assertEqual([t.contact for t in tracked][::2], [ann.code, ann.code])
        self.assertEqual([t.event for t in tracked], [c.code for c in calls])
        self.assertEqual(
            list(Event.objects.order_by("id").values_list("code", "contact__email", "name")),
            [(c.code, e, c.name) for c, e in zip(calls, ["ann@example.com", "bob@example.com",
                                                          "ann@example.com"], strict=True)],
        )  # fmt: skip
        self.assertEqual(Delivery.objects.filter(event_type="contact.created").count(), 2)

    def test_calls_changing_a_status_are_written_in_their_order(self) -> None:
        subscribed = [None, False, None, True, False, None]
        calls = [
            prepare_track(self.project, f"e{i}", "ann@example.com", s, {"n": i})
            for i, s in enumerate(subscribed)
        ]
        tracked = write_tracks(calls)
        ann = Contact.objects.get(email="ann@example.com")
        self.assertEqual({t.contact for t in tracked}, {ann.code})
        self.assertEqual((ann.status, ann.data), ("unsubscribed", {"n": 5}))
        names = Event.objects.filter(contact=ann).order_by("id").values_list("name", flat=True)
        self.assertEqual(list(names), [f"e{i}" for i in range(6)])

    def test_a_failed_batch_writes_nothing_and_tells_each_call(self) -> None:
        writer = fasttrack.TrackWriter()
        pending = [fasttrack.PendingTrack(self.prepared(e)) for e in ("a@x.org", "b@x.org")]
        writer.pending = list(pending)
        broken = mock.patch.object(fasttrack, "write_batch", side_effect=OperationalError)
        with broken, self.assertLogs("postroom.tracking", "WARNING"):
            self.assertEqual(writer.flush(), 2)
        self.assertEqual([(p.written.is_set(), p.tracked) for p in pending], [(True, None)] * 2)
        self.assertFalse(Event.objects.exists())

    def test_a_call_not_taken_into_a_batch_in_time_is_withdrawn(self) -> None:
        writer = fasttrack.TrackWriter()
        writer.start = lambda: None  # no writer thread: nothing takes the call
        with override_settings(TRACK_BATCHES=True), mock.patch.object(fasttrack, "WAIT_SECONDS", 0):
            self.assertIsNone(writer.write(self.prepared("ann@example.com")))
        self.assertEqual(writer.pending, [])  # a writer starting later cannot write it twice
        self.assertEqual(writer.flush(), 0)

    def test_calls_arriving_together_share_a_batch(self) -> None:
        batches: list[int] = []

        def write_batch(calls):
            time.sleep(0.05)  # meanwhile the other calls gather in the next batch
            batches.append(len(calls))
            return [f"tracked {c.name}" for c in calls]

        writer = fasttrack.TrackWriter()
        self.addCleanup(writer.stop)
        answers: dict[str, object] = {}
        calls = {f"c{i}": self.prepared(f"c{i}@example.com", f"c{i}") for i in range(5)}

        def call(name: str) -> None:
            answers[name] = writer.write(calls[name])

        with (
            override_settings(TRACK_BATCHES=True),
            mock.patch.object(fasttrack, "write_batch", write_batch),
        ):
            threads = [threading.Thread(target=call, args=(f"c{i}",)) for i in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=4)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        self.assertEqual(answers, {f"c{i}": f"tracked c{i}" for i in range(5)})
        self.assertEqual(sum(batches), 5)
        self.assertLess(len(batches), 5)


# A batch's calls: (project index, email, subscribed, data). Plain calls for distinct
# contacts go in bulk; a repeated contact, a change of status or a removed field cut the run.
MIXED_BATCH = [
    (0, "ann@example.com", None, {"plan": "pro"}),
    (0, "bob@example.com", None, {}),
    (0, "ann@example.com", None, {"seats": 2, "orderId": {"value": 7, "persistent": False}}),
    (1, "ann@example.com", None, {"plan": "team"}),  # the other project's Ann
    (0, "cid@example.com", False, {}),
    (0, "cid@example.com", None, {"plan": None}),  # removes a field: not in bulk
    (0, "dan@example.com", None, {"firstName": "Dan", "plan": "free"}),
    (0, "eve@example.com", None, {}),
    (0, "eve@example.com", True, {"plan": "pro"}),
    (0, "ann@example.com", None, {"plan": ""}),  # an empty value is ignored
    (0, "fay@example.com", None, {"firstName": 'Zoë "Z" O\'Neil', "city": "Zürich\\n\t€"}),
]
EVE = {"status": "unsubscribed", "last_name": "Lee", "data": {"plan": "free"}}


@unittest.skipUnless(
    connection.vendor == "postgresql",
    "calls written in bulk (one statement, its parameters arrays) are PostgreSQL's",
)
class InBulkTest(BaseTestCase):
    """A batch written in as few statements as can be stores what the ORM reference
    (upsert_contact, then the event) stores for the same calls one by one."""

    def setUp(self) -> None:
        super().setUp()
        self.projects = [self.project, create_project("Second", self.alice)[0]]
        self.reference = [create_project(f"Reference {i}", self.alice)[0] for i in (1, 2)]
        for project in (self.project, self.reference[0]):
            self.make_contact("eve@example.com", project=project, create_fields=True, **EVE)
            Endpoint.objects.create(
                project=project, url="https://hooks.example/in", event_types=["contact.created"]
            )
        forget_endpoints()
        self.addCleanup(forget_endpoints)

    def calls(self, projects):
        return [
            prepare_track(projects[i], f"e{n}", email, subscribed, data)
            for n, (i, email, subscribed, data) in enumerate(MIXED_BATCH)
        ]

    def write_by_the_reference(self) -> None:
        for n, (i, email, subscribed, data) in enumerate(MIXED_BATCH):
            project = self.reference[i]
            parsed = split_track_data(data)
            parsed.upsert.subscribed = subscribed
            parsed.upsert.how = f"the track API (e{n})"
            contact, _ = upsert_contact(project, email, parsed.upsert)
            Event.objects.create(
                project=project, kind=Event.Kind.CUSTOM, name=f"e{n}", contact=contact,
                data=parsed.event,
            )  # fmt: skip

    def stored(self, project) -> tuple[list, list, int]:
        contacts = list(
            Contact.objects.filter(project=project)
            .order_by("email")
            .values_list("email", "status", "status_reason", "first_name", "last_name", "data",
                         "consent_source")
        )  # fmt: skip
        events = list(
            Event.objects.filter(project=project)
            .order_by("id")
            .values_list("name", "contact__email", "data")
        )
        created = Delivery.objects.filter(
            endpoint__project=project, event_type="contact.created"
        ).count()
        return contacts, events, created

    def test_a_mixed_batch_stores_what_the_reference_does(self) -> None:
        calls = self.calls(self.projects)
        parts = statement_parts(calls)
        self.assertEqual(
            [(part.in_bulk, len(part.calls)) for part in parts],
            [(True, 2), (True, 2), (False, 1), (False, 1), (True, 2), (False, 1), (True, 2)],
        )
        tracked = write_tracks(calls)
        self.write_by_the_reference()
        for lean, reference in zip(self.projects, self.reference, strict=True):
            with self.subTest(project=lean.name):
                self.assertEqual(self.stored(lean), self.stored(reference))
        codes = dict(Contact.objects.values_list("id", "code"))
        contact_of_event = dict(Event.objects.values_list("code", "contact_id"))
        self.assertEqual([t.contact for t in tracked],
                         [codes[contact_of_event[c.code]] for c in calls])  # fmt: skip
        self.assertEqual([t.event for t in tracked], [c.code for c in calls])

    def test_a_plain_call_moves_updated_at_only_when_it_changes_something(self) -> None:
        eve = Contact.objects.get(project=self.project, email="eve@example.com")
        write_tracks([prepare_track(self.project, "seen", eve.email, None, {})])
        eve_after = Contact.objects.get(pk=eve.pk)
        self.assertEqual((eve_after.updated_at, eve_after.data), (eve.updated_at, eve.data))
        write_tracks([prepare_track(self.project, "seen", eve.email, None, {"seats": 3})])
        eve_after = Contact.objects.get(pk=eve.pk)
        self.assertGreater(eve_after.updated_at, eve.updated_at)
        self.assertEqual(eve_after.data, {"plan": "free", "seats": 3})


@unittest.skipUnless(
    connection.vendor == "postgresql",
    "SQLite's test database lives in memory, where a transaction locks whole tables and other "
    "connections fail at once instead of waiting (bench/api.py runs this path on a file)",
)
class ThroughTheWriterThreadTest(BaseTransactionTestCase):
    """The whole path with its writer thread and that thread's own connection: calls from
    several request threads at once, each answered once stored."""

    def test_concurrent_calls_are_all_stored_and_answered(self) -> None:
        forget_keys()
        from postroom.wsgi import application

        answers: list[tuple[str, dict]] = []

        def request(i: int) -> None:
            def start_response(status, headers):
                answers.append((status, dict(headers)))

            body = {**CALL, "email": f"c{i % 4}@example.com", "data": {"n": i}}
            try:
                b"".join(application(environ(body, self.secret_key), start_response))
            finally:
                connections.close_all()  # this thread's (the test database is dropped later)

        writer = fasttrack.TrackWriter()
        self.addCleanup(writer.stop)
        with (
            override_settings(TRACK_BATCHES=True),
            mock.patch.object(fasttrack, "track_writer", writer),
        ):
            threads = [threading.Thread(target=request, args=(i,)) for i in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=10)
        self.assertEqual([status for status, _ in answers], ["200 OK"] * 12)
        self.assertEqual(Event.objects.filter(project=self.project).count(), 12)
        self.assertEqual(Contact.objects.filter(project=self.project).count(), 4)
        self.assertEqual(
            sorted(e.data["n"] for e in Event.objects.filter(project=self.project)),
            list(range(12)),
        )


@unittest.skipUnless(
    connection.vendor == "postgresql",
    "one round trip with its own BEGIN and COMMIT is PostgreSQL's (SQLite writes in a "
    "transaction of Django's)",
)
class CommitTracksTest(BaseTransactionTestCase):
    def prepared(self, email: str, data: dict | None = None):
        return prepare_track(self.project, "signed-up", email, None, data or {"plan": "pro"})

    def test_it_writes_and_commits_a_batch_in_one_go(self) -> None:
        calls = [self.prepared(e) for e in ("ann@example.com", "bob@example.com")]
        tracked = commit_tracks(calls)
        ann = Contact.objects.get(email="ann@example.com")
        self.assertEqual([t.event for t in tracked], [c.code for c in calls])
        self.assertEqual(tracked[0].contact, ann.code)
        self.assertEqual(Event.objects.count(), 2)
        self.assertFalse(connection.in_atomic_block)

    def test_a_failed_call_rolls_the_batch_back(self) -> None:
        calls = [self.prepared("ann@example.com"), self.prepared("bob@example.com")]
        calls[1].code = calls[0].code  # the second event's code is taken: a unique violation
        with self.assertRaises(psycopg.errors.UniqueViolation):
            commit_tracks(calls)
        self.assertFalse(Event.objects.exists())
        self.assertFalse(Contact.objects.exists())
        self.assertEqual(len(commit_tracks([self.prepared("cid@example.com")])), 1)

    def test_it_leaves_batches_with_a_contact_created_endpoint_to_a_transaction(self) -> None:
        Endpoint.objects.create(
            project=self.project, url="https://hooks.example/in", event_types=["contact.created"]
        )
        forget_endpoints()
        self.addCleanup(forget_endpoints)
        self.assertIsNone(commit_tracks([self.prepared("ann@example.com")]))
        tracked = fasttrack.write_batch([self.prepared("ann@example.com")])
        self.assertEqual(len(tracked), 1)
        self.assertEqual(Delivery.objects.filter(event_type="contact.created").count(), 1)
