"""`postroom worker` processes against one real database and a real SMTP server on loopback.

What DESIGN.md promises of the send loop, checked with separate processes the way it runs:
a worker killed mid-batch loses nothing and resends at most what it had in flight, flagged;
several workers at once send nothing twice; rate limits hold across workers and restarts.
Each test gets a database of its own on the suite's backend (workerharness.ScratchDatabase).
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import Counter
from unittest import mock

import pytest

from postroom.delivery import sending
from postroom.delivery.models import BATCH_PER_CONNECTION
from postroom.delivery.tests.workerharness import (
    SEED_POOL_SIZE,
    Processes,
    ScratchDatabase,
    Sink,
    recipient,
    wait_until,
    worker_args,
)


@pytest.fixture
def database(tmp_path):
    try:
        db = ScratchDatabase(tmp_path)
    except ImportError as e:  # psycopg missing
        pytest.skip(f"PostgreSQL variant needs psycopg: {e}")
    except Exception as e:
        if type(e).__module__.startswith("psycopg"):
            pytest.skip(f"No PostgreSQL reachable for a scratch database: {e}")
        raise
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture
def processes(database, tmp_path):
    # Depends on `database` so that every child is dead before the database is dropped.
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture
def sink(processes, database, tmp_path) -> Sink:
    return Sink(processes, database.env, tmp_path)


def wait_until_all_sent(database, processes, workers, count: int, timeout: float) -> None:
    def done() -> bool:
        for w in workers:
            assert w.poll() is None, f"a worker exited:\n{processes.log_of(w)}"
        return database.states() == {"sent": count}

    wait_until(done, timeout, f"all {count} messages sent", poll=0.2)


BATCH_SIZE = BATCH_PER_CONNECTION * SEED_POOL_SIZE


def test_a_killed_worker_loses_nothing_and_resends_only_what_it_had_in_flight(
    database, processes, sink
):
    count = 600
    database.seed(sink.port, count)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 0
    for _ in range(4):
        worker = processes.start("worker", worker_args(), database.env)
        # Kill it mid-send: after a random number of deliveries since it started.
        target = sink.count() + rng.randint(10, 140)
        wait_until(
            lambda w=worker, n=target: sink.count() >= n or w.poll() is not None,
            20,
            f"the worker to deliver up to {target} (random seed {seed})",
            poll=0.005,
        )
        assert worker.poll() is None, processes.log_of(worker)
        worker.kill()
        worker.wait(timeout=10)
        kills += 1
        # A claim is one batch: that is all a dead worker can leave in doubt.
        assert database.expire_leases() <= BATCH_SIZE

    worker = processes.start("worker", worker_args(), database.env)
    wait_until_all_sent(database, processes, [worker], count, timeout=30)
    assert processes.stop(worker) == 0, processes.log_of(worker)

    deliveries = sink.deliveries()
    copies = Counter(d.rcpt for d in deliveries)
    assert set(copies) == {recipient(i) for i in range(count)}
    extra = len(deliveries) - len(copies)
    print(f"{database.vendor}: {kills} kills, {extra} duplicate deliveries (random seed {seed})")
    assert extra <= kills * BATCH_SIZE
    ledger = database.messages()
    duplicated = sorted(r for r, n in copies.items() if n > 1)
    assert [r for r in duplicated if not ledger[r][1]] == []
    # A resend carries the same Message-ID, so it is recognisable downstream.
    ids: dict[str, set[str]] = {}
    for d in deliveries:
        ids.setdefault(d.rcpt, set()).add(d.message_id)
    assert all(len(v) == 1 for v in ids.values())


def test_three_workers_at_once_send_every_message_exactly_once(database, processes, sink):
    count = 1200
    database.seed(sink.port, count)
    workers = [processes.start("worker", worker_args(), database.env) for _ in range(3)]
    wait_until_all_sent(database, processes, workers, count, timeout=60)
    for w in workers:
        assert processes.stop(w) == 0, processes.log_of(w)

    copies = Counter(d.rcpt for d in sink.deliveries())
    assert set(copies) == {recipient(i) for i in range(count)}
    assert [r for r, n in copies.items() if n > 1] == []
    assert [r for r, (_, dup) in database.messages().items() if dup] == []


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any window [t, t + 1s)."""
    times = sorted(times)
    return max(bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def test_two_workers_and_a_restart_never_exceed_the_per_second_limit(database, processes, sink):
    count, limit = 160, 20
    database.seed(sink.port, count, per_second=limit)
    first = processes.start("worker", worker_args(), database.env)
    second = processes.start("worker", worker_args(), database.env)
    wait_until(lambda: sink.count() >= 50, 20, "50 deliveries before the restart")
    # A deploy: one worker stops, a new one starts, the other carries on.
    assert processes.stop(first) == 0, processes.log_of(first)
    first = processes.start("worker", worker_args(), database.env)
    wait_until_all_sent(database, processes, [first, second], count, timeout=30)
    for w in (first, second):
        assert processes.stop(w) == 0, processes.log_of(w)

    deliveries = sink.deliveries()
    assert sorted(d.rcpt for d in deliveries) == [recipient(i) for i in range(count)]
    busiest = busiest_second([d.at for d in deliveries])
    print(f"{database.vendor}: at most {busiest} deliveries in one second (limit {limit})")
    assert busiest <= limit


# The race this guards against: a worker counts its room, another claims and sends in
# between, and both spend the same room (before the fix: 40 sent under per_second=20). The room
# is now counted inside claim_batch's transaction, with claimers of a limited sender in turn.
@pytest.mark.django_db
def test_a_worker_claiming_between_another_ones_count_and_claim_does_not_share_its_room():
    from postroom.accounts.actions import create_project
    from postroom.accounts.models import User
    from postroom.delivery.actions import default_sender
    from postroom.delivery.models import Email, Message

    owner = User.objects.create_user("owner@example.org", None)
    project, _ = create_project("Race", owner)
    sender = default_sender(project)  # the Mailbox: nothing to connect to
    sender.per_second = 20
    sender.save()
    email = Email.objects.create(
        project=project,
        kind=Email.Kind.CAMPAIGN,
        sender=sender,
        from_email=sender.from_email,
        subject="Hi",
        text="Body",
    )
    Message.objects.bulk_create(
        Message(project=project, email=email, sender=sender, to_email=recipient(i))
        for i in range(60)
    )
    count_room = sending.capacity
    other_worker_ran = False

    def counted_then_overtaken(*args):
        # This worker has counted its room; another worker claims and sends before it claims.
        nonlocal other_worker_ran
        room = count_room(*args)
        if not other_worker_ran:
            other_worker_ran = True
            sending.handle_one_send_batch()
        return room

    with mock.patch.object(sending, "capacity", side_effect=counted_then_overtaken):
        sending.handle_one_send_batch()
    sent = Message.objects.filter(sender=sender, state=Message.State.SENT).count()
    assert sent <= 20
