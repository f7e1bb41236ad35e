from __future__ import annotations

import time

import pytest
from django.db import connection

from postroom.lib.querytime import QueryTooSlow, time_limit

# Counts to a hundred million: many seconds on either database.
SLOW = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
    "SELECT count(*) FROM c"
)


@pytest.mark.django_db(transaction=True)
def test_a_query_past_the_limit_is_stopped() -> None:
    started = time.monotonic()
    with (
        pytest.raises(QueryTooSlow, match="longer than 0.2 s"),
        time_limit(0.2),
        connection.cursor() as cursor,
    ):
        cursor.execute(SLOW)
    assert time.monotonic() - started < 3


@pytest.mark.django_db(transaction=True)
def test_a_quick_query_runs_and_the_limit_is_lifted_after() -> None:
    with time_limit(5), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    with connection.cursor() as cursor:  # no limit left behind on the connection
        cursor.execute(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
            "WHERE n < 200000) SELECT count(*) FROM c"
        )
        assert cursor.fetchone() == (200000,)
