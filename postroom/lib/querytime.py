"""A bound on how long a page's queries may run: past it the query is stopped and the page
shows an error instead of waiting (issue 7: a slow query ends in an error, never a spinner)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from django.db import connection, transaction


class QueryTooSlow(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Run the queries inside for at most `seconds`; a query still running then is stopped
    and QueryTooSlow raised. PostgreSQL: statement_timeout for this transaction alone.
    SQLite: a progress handler that interrupts the statement once the time is up."""
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL statement_timeout = %s", [f"{int(seconds * 1000)}ms"])
                yield
        except Exception as e:
            if "statement timeout" in str(e):
                raise QueryTooSlow(f"the query took longer than {seconds:g} s") from None
            raise
        return
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        yield
    except Exception as e:
        if "interrupted" in str(e):
            raise QueryTooSlow(f"the query took longer than {seconds:g} s") from None
        raise
    finally:
        raw.set_progress_handler(None, 0)
