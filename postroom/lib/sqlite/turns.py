"""The writers' turn on a SQLite database: its writers, in every process, begin one at a time,
a waiting one let in the moment the one before it ends.

SQLite lets one writer at a time in and makes the others wait in its busy handler, which
sleeps 1, 2, 5, 10 ms and up to 100 ms between tries: under load whoever tries at the right
moment goes first, and the unlucky wait for a second and more. Measured with bench/api.py
(two web processes, 16 callers): the send API's p99 was 1.4 s against a median of 18 ms, and
track's batch writers left the machine 40% idle; the open pixel's p99 was 48 ms
(bench/events.py). A turn is two locks: this process's threads queue on a lock of their own
(flock does not tell apart threads sharing a descriptor), then its one taker queues with
the other processes on a file lock beside the database, which the kernel hands on at once.
postroom.lib.sqlite takes a turn for every transaction.
"""

from __future__ import annotations

import fcntl
import os
import threading

from django.db import OperationalError

_turn_files: dict[tuple[int, str], int] = {}  # (pid, database file) -> an open descriptor
_turn_lock = threading.Lock()  # this process's threads, one at a time
_turn = threading.local()  # this thread's: depth (nested turns) and fd


def take_turn(database: str, timeout: float = -1) -> None:
    """This thread's turn to write `database` (a SQLite file), once no other thread of any
    process holds it (woken the moment it is let go); nested when this thread holds it.
    Waits at most `timeout` seconds for the other threads of this process (-1: as long as
    it takes), then raises OperationalError as SQLite does when its lock stays taken."""
    depth = getattr(_turn, "depth", 0)
    if depth:
        _turn.depth = depth + 1
        return
    if not _turn_lock.acquire(timeout=timeout):
        raise OperationalError(f"database is locked: no writer's turn within {timeout:g} s")
    try:
        key = (os.getpid(), database)  # a forked process opens its own (flock is per open)
        fd = _turn_files.get(key)
        if fd is None:
            fd = _turn_files[key] = os.open(database + "-writers", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits without the GIL
    except BaseException:
        _turn_lock.release()
        raise
    _turn.depth, _turn.fd = 1, fd


def end_turn() -> None:
    """End the turn take_turn gave (the outermost of nested ones lets the next writer in)."""
    _turn.depth -= 1
    if _turn.depth == 0:
        fcntl.flock(_turn.fd, fcntl.LOCK_UN)
        _turn_lock.release()
