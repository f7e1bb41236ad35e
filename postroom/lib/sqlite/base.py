"""Django's SQLite backend, with every transaction begun on the writers' turn.

Settings begin each transaction with BEGIN IMMEDIATE, which takes SQLite's write lock at
once; a transaction that found it taken waited in SQLite's busy handler, and under load a
few waited over a second (turns.py). Here a transaction first takes the writers' turn, which
hands the write lock on the moment it is let go, and ends it when the transaction ends.
Writes outside a transaction (autocommit) still meet the busy handler, as do other programs
using the file. A database in memory (tests) takes no turns.
"""

from __future__ import annotations

from functools import cached_property

from django.db.backends.sqlite3 import base

from postroom.lib.sqlite.turns import end_turn, take_turn


class DatabaseWrapper(base.DatabaseWrapper):
    holds_turn = False

    @cached_property
    def turn_database(self) -> str | None:
        """The database file whose writers take turns; None in memory."""
        return None if self.is_in_memory_db() else str(self.settings_dict["NAME"])

    def _start_transaction_under_autocommit(self) -> None:
        if self.turn_database is not None and not self.holds_turn:
            # As long as SQLite itself would wait for its lock, then the same error.
            take_turn(self.turn_database, float(self.settings_dict["OPTIONS"].get("timeout", 5)))
            self.holds_turn = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self.end_turn()
            raise

    def _commit(self) -> None:
        super()._commit()
        self.end_turn()  # a commit that failed keeps the turn until the rollback or close

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self.end_turn()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.end_turn()

    def end_turn(self) -> None:
        if self.holds_turn:
            self.holds_turn = False
            end_turn()
