"""Crash and resume: an import killed at any checkpoint, a chunk whose write fails, a lease
held, lost, cancelled or released. Whatever happens, every valid row is imported exactly once
and every rejected or skipped row is reported exactly once, as in an uninterrupted run."""

from __future__ import annotations

import contextlib
import unittest
from collections.abc import Callable, Iterator
from datetime import timedelta as td
from unittest.mock import patch

from django.db import OperationalError, connection
from django.utils import timezone

from postroom.contacts.models import Contact, ContactTag, Status, Suppression, Tag
from postroom.imports import actions
from postroom.imports.models import Import, ImportIssue
from postroom.imports.tests.test_import_files import ImportFixture, ImportTestCase
from postroom.test import BaseTransactionTestCase

CHUNK = 4


def generated_file(rows: int = 50) -> bytes:
    """A file of `rows` records with bad rows, duplicates, a blank line and a multi-line
    record (so that physical lines and records differ)."""
    lines = ["email,first_name,status"]
    for i in range(rows):
        if i % 9 == 4:
            lines.append(f"not-an-email-{i},Bad{i},")
        elif i % 10 == 7:
            lines.append(f"C{i - 5}@Example.com,Dup{i},")  # a duplicate of an earlier row
        elif i == 20:
            lines.append(f"c{i}@example.com,Too,many,values")
        elif i == 25:
            lines.append(f"c{i}@example.com,Twenty,maybe")  # a bad status
        elif i == 30:
            lines.append(f'c{i}@example.com,"Thirty\nLines",unsubscribed')
        elif i == 33:
            lines.append("")
        else:
            lines.append(f"c{i}@example.com,First{i},")
    return ("\n".join(lines) + "\n").encode()


class ResumeFixture:
    """Two workers in one process: each has its own `actions.sessions`, the state a worker
    process keeps between chunks and loses when it dies."""

    CONTENT = generated_file()

    def setUp(self) -> None:
        super().setUp()
        chunk = patch.object(actions, "CHUNK", CHUNK)
        chunk.start()
        self.addCleanup(chunk.stop)
        self.workers: list[dict] = []
        self.prepare()

    def tearDown(self) -> None:
        for sessions in self.workers:
            for session in sessions.values():
                session.close()
        super().tearDown()

    def prepare(self) -> None:
        """The project as each run finds it: two existing contacts, one already tagged."""
        Contact.objects.filter(project=self.project).delete()
        Tag.objects.filter(project=self.project).delete()
        Import.objects.filter(project=self.project).delete()
        Suppression.objects.filter(project=self.project).delete()
        self.make_contact("c1@example.com", first_name="One")
        self.make_contact("c12@example.com", status=Status.UNSUBSCRIBED, tags=["spring"])

    @contextlib.contextmanager
    def worker(self) -> Iterator[dict]:
        """Run the code inside as another worker process."""
        sessions: dict = {}
        self.workers.append(sessions)
        with patch.object(actions, "sessions", sessions):
            yield sessions

    def start(self, mode: str = "create", **chosen) -> Import:
        imp = self.upload("contacts.csv", self.CONTENT, mode=mode, tags=["spring"], **chosen)
        return actions.start_import(imp)

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.assertTrue(actions.handle_one_import())

    def finish(self, imp: Import) -> Import:
        for _ in range(1000):
            if not actions.handle_one_import():
                break
        imp.refresh_from_db()
        self.assertEqual(imp.state, Import.State.DONE, imp.error)
        return imp

    def expire_lease(self, imp: Import) -> None:
        past = timezone.now() - td(seconds=1)
        Import.objects.filter(pk=imp.pk).update(lease_until=past)

    def outcome(self, imp: Import) -> dict:
        imp.refresh_from_db()
        contacts = Contact.objects.filter(project=self.project).order_by("email")
        return {
            "state": imp.state,
            "counts": imp.counts(),
            "records": (imp.records_done, imp.total_rows),
            "contacts": list(contacts.values_list("email", "first_name", "status")),
            "tags": sorted(
                ContactTag.objects.filter(contact__project=self.project).values_list(
                    "contact__email", "tag__name"
                )
            ),
            "issues": list(imp.issues.order_by("line", "id").values_list("line", "kind", "reason")),
            "report": "".join(actions.report_csv(imp)),
        }

    def uninterrupted(self, mode: str = "create", **chosen) -> dict:
        with self.worker():
            result = self.outcome(self.finish(self.start(mode, **chosen)))
        self.prepare()
        return result

    @contextlib.contextmanager
    def during_chunk(self, action: Callable[[Import], object]) -> Iterator[None]:
        """Run `action` (in a request of its own, committed) once the worker has claimed the
        import and read its next chunk, before the chunk's transaction."""
        real_next_chunk = actions.ImportSession.next_chunk

        def next_chunk(session, imp: Import):
            chunk = real_next_chunk(session, imp)
            action(Import.objects.get(pk=imp.pk))
            return chunk

        with patch.object(actions.ImportSession, "next_chunk", next_chunk):
            yield

    def contact_first_name(self, email: str) -> str:
        return Contact.objects.get(project=self.project, email=email).first_name

    def chunks(self, result: dict) -> int:
        return -(-result["records"][1] // CHUNK)


class ResumeTestCase(ResumeFixture, ImportTestCase):
    pass


class KilledWorkerTest(ResumeTestCase):
    maxDiff = None

    def test_the_generated_file_has_what_the_tests_need(self) -> None:
        expected = self.uninterrupted()
        self.assertEqual(expected["records"], (50, 50))
        self.assertGreater(self.chunks(expected), 10)
        kinds = [kind for _, kind, _ in expected["issues"]]
        self.assertGreaterEqual(kinds.count(ImportIssue.Kind.REJECTED), 7)
        self.assertGreaterEqual(kinds.count(ImportIssue.Kind.SKIPPED), 6)
        lines = [line for line, _, _ in expected["issues"]]
        self.assertEqual(len(lines), len(set(lines)))
        self.assertIn(
            (22, ImportIssue.Kind.REJECTED, "the row has 4 values where the header has 3: "
             "is a value with the delimiter in it missing its quotes?"),
            expected["issues"],
        )  # fmt: skip
        self.assertIn(
            (40, ImportIssue.Kind.SKIPPED,
             "duplicate: c32@example.com is on an earlier line of the file."),
            expected["issues"],
        )  # fmt: skip

    def kill_and_resume(self, after: int, mode: str, **chosen) -> dict:
        with self.worker():
            imp = self.start(mode, **chosen)
            self.steps(after)
        # The worker is killed: its sessions are gone and its lease runs out. The state
        # stays "running": nobody told the database.
        imp.refresh_from_db()
        self.assertEqual(imp.state, Import.State.RUNNING)
        self.assertEqual(imp.records_done, min(after * CHUNK, 50))
        with self.worker():
            self.assertFalse(actions.handle_one_import())  # the lease is live
            self.expire_lease(imp)
            return self.outcome(self.finish(imp))

    def test_an_import_killed_at_any_checkpoint_resumes_without_loss_or_repeat(self) -> None:
        for mode, chosen in [("create", {}), ("upsert", {"overwrite": ["names", "status"]})]:
            expected = self.uninterrupted(mode, **chosen)
            for after in range(1, self.chunks(expected)):
                with self.subTest(mode=mode, after=after):
                    self.assertEqual(self.kill_and_resume(after, mode, **chosen), expected)
                    self.prepare()

    def test_an_import_killed_twice_resumes_each_time(self) -> None:
        expected = self.uninterrupted()
        with self.worker():
            imp = self.start()
            self.steps(2)
        with self.worker():
            self.expire_lease(imp)
            self.steps(5)
        with self.worker():
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_a_stray_quote_before_the_checkpoint_does_not_make_a_duplicate(self) -> None:
        # Line 3 opens a quote never closed: it is rejected and the lines after it are read
        # on their own. Its address was not accepted, so the corrected row on line 8 is new.
        self.CONTENT = (
            b"email,first_name,last_name\n"
            b"ann@example.com,Ann,Lee\n"
            b'dan@example.com,"Dan,Lee\n'
            b"bob@example.org,Bob,Stone\n"
            b"cid@example.net,Cid,Gray\n"
            b"eve@example.com,Eve,Ash\n"
            b"fay@example.com,Fay,Oak\n"
            b"dan@example.com,Dan,Lee\n"
            b"gus@example.com,Gus,Elm\n"
        )
        expected = self.uninterrupted()
        self.assertIn(("dan@example.com", "Dan", Status.SUBSCRIBED), expected["contacts"])
        self.assertEqual([i[:2] for i in expected["issues"]], [(3, "rejected")])
        self.assertEqual(self.kill_and_resume(1, "create"), expected)


class FailedWriteTest(ResumeTestCase):
    def test_a_chunk_whose_write_fails_commits_nothing_and_is_done_again(self) -> None:
        expected = self.uninterrupted("upsert", overwrite=["names"])
        real_insert = actions.insert_contacts
        calls = []

        def insert_then_fail(imp, rows):
            calls.append(len(rows))
            real_insert(imp, rows)
            # Mid-way: chunk 4's update of c12 and its inserts are written when this fails.
            raise OperationalError("server closed the connection unexpectedly")

        with self.worker():
            imp = self.start("upsert", overwrite=["names"])
            self.steps(3)
            before = self.outcome(imp)
            with patch.object(actions, "insert_contacts", insert_then_fail):
                self.assertFalse(actions.handle_one_import())
            self.assertEqual(calls, [2])  # c14 and c15
            self.assertEqual(self.outcome(imp), before)  # nothing of chunk 4 committed
            self.assertEqual(self.contact_first_name("c12@example.com"), "")
            self.assertEqual(imp.state, Import.State.RUNNING)
        with self.worker():
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_the_same_worker_resumes_once_the_lease_runs_out(self) -> None:
        expected = self.uninterrupted()
        failed = []

        def fail_once(*args, **kwargs):
            if not failed:
                failed.append(True)
                raise OperationalError("could not serialize access")
            return real_write(*args, **kwargs)

        real_write = actions.write_rows
        with self.worker():
            imp = self.start()
            self.steps(1)
            with patch.object(actions, "write_rows", fail_once):
                self.assertFalse(actions.handle_one_import())
            self.assertFalse(actions.handle_one_import())  # its own lease, still live
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)


class LeaseTest(ResumeTestCase):
    def test_a_second_worker_cannot_claim_an_import_whose_lease_is_live(self) -> None:
        with self.worker():
            imp = self.start()
            self.steps(1)
        imp.refresh_from_db()
        lease = imp.lease_until
        with self.worker() as second:
            self.assertFalse(actions.handle_one_import())
            self.assertIsNone(actions.claim_import())
            self.assertEqual(second, {})
        imp.refresh_from_db()
        self.assertEqual((imp.records_done, imp.lease_until), (CHUNK, lease))

    def test_the_worker_holding_the_lease_goes_on(self) -> None:
        expected = self.uninterrupted()
        with self.worker():
            imp = self.start()
            self.steps(2)
            with self.worker():
                self.assertFalse(actions.handle_one_import())
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_release_lets_another_worker_claim_at_once(self) -> None:
        expected = self.uninterrupted()
        with self.worker() as first:
            imp = self.start()
            self.steps(3)
            actions.release_imports()
            self.assertEqual(first, {})
        imp.refresh_from_db()
        self.assertEqual((imp.state, imp.lease_until), (Import.State.RUNNING, None))
        with self.worker():
            self.assertTrue(actions.handle_one_import())
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_a_released_import_is_not_overwritten_by_its_old_worker(self) -> None:
        with self.worker() as first:
            imp = self.start()
            self.steps(2)
            actions.release_imports()
        with self.worker():
            self.steps(1)
        imp.refresh_from_db()
        self.assertEqual(imp.records_done, 3 * CHUNK)
        with patch.object(actions, "sessions", first):
            self.assertFalse(actions.handle_one_import())  # the lease is the other's now
        imp.refresh_from_db()
        self.assertEqual(imp.records_done, 3 * CHUNK)

    def test_a_worker_that_lost_its_lease_between_chunks_writes_nothing(self) -> None:
        expected = self.uninterrupted()
        with self.worker() as first:
            imp = self.start()
            self.steps(2)
            before = self.outcome(imp)
            # Another worker took it over after a stall: the lease in the database is its.
            theirs = timezone.now() + Import.LEASE + td(seconds=30)
            Import.objects.filter(pk=imp.pk).update(lease_until=theirs)
            self.assertFalse(actions.handle_one_import())
            self.assertEqual(first, {})
        self.assertEqual(self.outcome(imp), before)
        imp.refresh_from_db()
        self.assertEqual(imp.lease_until, theirs)
        with self.worker():
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_a_worker_that_loses_its_lease_mid_chunk_commits_nothing(self) -> None:
        expected = self.uninterrupted()

        def take_over(imp: Import) -> None:
            Import.objects.filter(pk=imp.pk).update(lease_until=timezone.now() + td(hours=1))

        with self.worker() as first:
            imp = self.start()
            self.steps(2)
            before = self.outcome(imp)
            with self.during_chunk(take_over), self.assertLogs(actions.log, "WARNING") as logs:
                self.assertTrue(actions.handle_one_import())  # LeaseLost: rolled back
            self.assertIn("lease lost", logs.output[0])
            self.assertEqual(first, {})
        self.assertEqual(self.outcome(imp), before)
        with self.worker():
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)


class CancelTest(ResumeTestCase):
    def test_cancel_between_chunks_stops_the_import(self) -> None:
        with self.worker():
            imp = self.start()
            self.steps(2)
            before = self.outcome(imp)
            self.assertTrue(actions.cancel_import(imp))
            self.assertFalse(actions.handle_one_import())
        after = self.outcome(imp)
        self.assertEqual(after["state"], Import.State.CANCELLED)
        self.assertEqual({**after, "state": None}, {**before, "state": None})
        self.assertIsNone(imp.lease_until)
        self.assertFalse(actions.cancel_import(imp))  # finished: nothing to cancel

    def test_cancel_during_a_chunk_commits_nothing_of_it(self) -> None:
        with self.worker():
            imp = self.start()
            self.steps(3)
            before = self.outcome(imp)
            with self.during_chunk(actions.cancel_import), self.assertLogs(actions.log, "WARNING"):
                self.assertTrue(actions.handle_one_import())  # LeaseLost: rolled back
            self.assertFalse(actions.handle_one_import())
        after = self.outcome(imp)
        self.assertEqual(after["state"], Import.State.CANCELLED)
        self.assertEqual({**after, "state": None}, {**before, "state": None})

    def test_a_cancelled_import_is_never_resumed(self) -> None:
        with self.worker():
            imp = self.start()
            self.steps(1)
            actions.cancel_import(imp)
        with self.worker():
            self.expire_lease(imp)
            self.assertFalse(actions.handle_one_import())
        imp.refresh_from_db()
        self.assertEqual((imp.state, imp.records_done), (Import.State.CANCELLED, CHUNK))


@unittest.skipUnless(
    connection.vendor == "postgresql",
    "two writers run on PostgreSQL only (SQLite has one write lock); the tests above cover the "
    "one-writer path on both",
)
class ParallelWritersTest(ResumeFixture, ImportFixture, BaseTransactionTestCase):
    """A step writes two chunks at once, on two connections (PostgreSQL): committed, the
    tests of TestCase above cannot see them, so these run outside a test transaction."""

    maxDiff = None
    PER_STEP = 2 * CHUNK

    def one_writer(self):
        return patch.dict(actions.PARALLEL_WRITES, {"postgresql": False})

    def test_two_chunks_a_step_end_as_one_chunk_a_step_does(self) -> None:
        with self.one_writer():
            expected = self.uninterrupted("upsert", overwrite=["names", "status"])
        with self.worker() as sessions:
            imp = self.start("upsert", overwrite=["names", "status"])
            self.steps(1)
            self.assertIsNotNone(sessions[imp.pk].writer)
            imp.refresh_from_db()
            self.assertEqual(imp.records_done, self.PER_STEP)
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_the_status_modes_end_as_with_one_writer(self) -> None:
        for mode in ("unsubscribe", "suppress"):
            with self.subTest(mode=mode):
                with self.one_writer():
                    expected = self.uninterrupted(mode)
                self.assertEqual(self.uninterrupted(mode), expected)
                self.assertFalse(Tag.objects.exclude(name="spring").exists())

    def test_killed_after_any_step_it_resumes_without_loss_or_repeat(self) -> None:
        with self.one_writer():
            expected = self.uninterrupted()
        for after in range(1, -(-50 // self.PER_STEP)):
            with self.subTest(after=after):
                with self.worker():
                    imp = self.start()
                    self.steps(after)
                imp.refresh_from_db()
                self.assertEqual(imp.records_done, after * self.PER_STEP)
                with self.worker():
                    self.expire_lease(imp)
                    self.assertEqual(self.outcome(self.finish(imp)), expected)
                self.prepare()

    def test_when_the_second_chunk_fails_the_first_stays_committed(self) -> None:
        with self.one_writer():
            expected = self.uninterrupted()
        with self.worker():
            imp = self.start()
            self.steps(1)
            # Step 2 writes chunk 3 (lines 10-13) here and chunk 4 (lines 14-17) on the
            # writer's connection, in whichever order the threads run: fail by the lines.
            real_write = actions.write_rows

            def fail_second(imp, session, rows, issues):
                if rows and rows[0].line > 3 * CHUNK + 1:
                    raise OperationalError("server closed the connection unexpectedly")
                return real_write(imp, session, rows, issues)

            with patch.object(actions, "write_rows", fail_second):
                self.assertFalse(actions.handle_one_import())
            imp.refresh_from_db()
            self.assertEqual((imp.state, imp.records_done), (Import.State.RUNNING, 3 * CHUNK))
        with self.worker():
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_when_the_first_chunk_fails_the_second_is_not_committed(self) -> None:
        with self.one_writer():
            expected = self.uninterrupted()
        with self.worker():
            imp = self.start()
            self.steps(1)
            before = self.outcome(imp)
            real_write = actions.write_rows

            def fail_first(imp, session, rows, issues):
                if rows and rows[0].line <= 3 * CHUNK + 1:
                    raise OperationalError("server closed the connection unexpectedly")
                return real_write(imp, session, rows, issues)

            with patch.object(actions, "write_rows", fail_first):
                self.assertFalse(actions.handle_one_import())
            self.assertEqual(self.outcome(imp), before)
        with self.worker():
            self.expire_lease(imp)
            self.assertEqual(self.outcome(self.finish(imp)), expected)

    def test_new_tags_in_both_chunks_of_a_step_are_made_once(self) -> None:
        self.CONTENT = b"email,tags\n" + b"".join(
            f"t{i}@example.com,new-{i % 3};shared\n".encode() for i in range(20)
        )
        with self.one_writer():
            expected = self.uninterrupted()
        with self.worker():
            imp = self.start()
            self.assertEqual(self.outcome(self.finish(imp)), expected)
        names = Tag.objects.filter(project=self.project).values_list("name", flat=True)
        self.assertEqual(sorted(names), ["new-0", "new-1", "new-2", "shared", "spring"])
