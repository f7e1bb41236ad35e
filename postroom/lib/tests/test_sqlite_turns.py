"""The writers' turn (lib.sqlite.turns) and the SQLite backend that takes it for each
transaction (lib.sqlite). The test database lives in memory, where no turns are taken, so
these open a database file of their own."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
import unittest

from django.db import OperationalError, connection
from django.test import TestCase

from postroom.lib.sqlite.base import DatabaseWrapper
from postroom.lib.sqlite.turns import end_turn, take_turn


@unittest.skipUnless(connection.vendor == "sqlite", "the writers' turn is SQLite's")
class TurnTestCase(TestCase):  # (a TestCase: pytest-django lets it open connections)
    def setUp(self) -> None:
        self.database = f"{tempfile.mkdtemp()}/postroom.sqlite3"

    def wrapper(self, closed_by_test: bool = True) -> DatabaseWrapper:
        """A connection to the file as settings make one (IMMEDIATE transactions)."""
        settings = dict(connection.settings_dict, NAME=self.database)
        settings["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 5}
        wrapper = DatabaseWrapper(settings, alias="turns")
        if closed_by_test:  # else by the thread that made it: a connection is its thread's
            self.addCleanup(wrapper.close)
        return wrapper

    def in_thread(self, work) -> threading.Thread:
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        return thread


class TakeTurnTest(TurnTestCase):
    def test_a_thread_waits_for_another_processs_turn(self) -> None:
        hold = (
            "import fcntl, os, time\n"
            f"fd = os.open({self.database + '-writers'!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(0.4)\n"
        )
        other = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
        self.addCleanup(other.wait)
        self.assertEqual(other.stdout.readline().strip(), "held")
        started = time.monotonic()
        take_turn(self.database)
        waited = time.monotonic() - started
        end_turn()
        self.assertGreater(waited, 0.2)  # until the other process let go

    def test_threads_of_one_process_take_turns_and_a_turn_nests(self) -> None:
        entered = threading.Event()

        def hold() -> None:
            take_turn(self.database)
            take_turn(self.database)  # nested: no deadlock, one turn
            entered.set()
            time.sleep(0.3)
            end_turn()
            end_turn()

        self.in_thread(hold)
        self.assertTrue(entered.wait(2))
        started = time.monotonic()
        take_turn(self.database)
        waited = time.monotonic() - started
        end_turn()
        self.assertGreater(waited, 0.15)

    def test_waiting_longer_than_the_timeout_is_sqlites_locked_error(self) -> None:
        entered, done = threading.Event(), threading.Event()

        def hold() -> None:
            take_turn(self.database)
            entered.set()
            done.wait(5)
            end_turn()

        self.in_thread(hold)
        self.assertTrue(entered.wait(2))
        with self.assertRaisesMessage(OperationalError, "database is locked"):
            take_turn(self.database, timeout=0.1)
        done.set()


class BackendTest(TurnTestCase):
    def begin(self, wrapper: DatabaseWrapper) -> None:
        """What an outermost transaction.atomic does first on SQLite."""
        wrapper.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)

    def end(self, wrapper: DatabaseWrapper, commit: bool = True) -> None:
        wrapper.commit() if commit else wrapper.rollback()
        wrapper.set_autocommit(True)

    def second_writer(self, wrapper_ready: threading.Event, began: threading.Event) -> None:
        def work() -> None:
            wrapper = self.wrapper(closed_by_test=False)
            wrapper_ready.set()
            self.begin(wrapper)
            began.set()
            self.end(wrapper)
            wrapper.close()

        self.in_thread(work)
        self.assertTrue(wrapper_ready.wait(2))

    def test_a_transaction_holds_the_turn_until_it_ends(self) -> None:
        for how in ("commit", "rollback", "close"):
            with self.subTest(how=how):
                first = self.wrapper()
                self.begin(first)
                self.assertTrue(first.holds_turn)
                ready, began = threading.Event(), threading.Event()
                self.second_writer(ready, began)
                self.assertFalse(began.wait(0.3))  # waiting for its turn, not for SQLite
                if how == "close":
                    first.close()
                else:
                    self.end(first, commit=how == "commit")
                self.assertTrue(began.wait(2))
                self.assertFalse(first.holds_turn)

    def test_a_commit_lets_the_next_writer_in_at_once(self) -> None:
        """SQLite's busy handler would have the waiter sleep 100 ms between tries by then
        (each hand-over as likely under 50 ms as over); the turn hands the lock on the moment
        the first commits, every time."""
        first = self.wrapper()
        first.cursor().execute("CREATE TABLE t (n integer)")
        for n in range(5):
            self.begin(first)
            first.cursor().execute("INSERT INTO t VALUES (%s)", [n])
            ready, began = threading.Event(), threading.Event()
            self.second_writer(ready, began)
            time.sleep(0.45)  # the busy handler's sleeps have grown to 100 ms
            committed = time.monotonic()
            self.end(first)
            self.assertTrue(began.wait(2))
            self.assertLess(time.monotonic() - committed, 0.05, f"hand-over {n}")

    def test_a_turn_taken_around_a_transaction_nests(self) -> None:
        wrapper = self.wrapper()
        take_turn(self.database)
        self.begin(wrapper)
        self.end(wrapper)
        end_turn()
        ready, began = threading.Event(), threading.Event()
        self.second_writer(ready, began)
        self.assertTrue(began.wait(2))  # every turn ended

    def test_a_database_in_memory_takes_no_turn(self) -> None:
        self.database = ":memory:"
        wrapper = self.wrapper()
        self.begin(wrapper)
        self.assertFalse(wrapper.holds_turn)
        self.end(wrapper)
