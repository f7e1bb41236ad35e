"""Real `postroom worker` processes against one real database, for test_workers.py.

The test process never opens the workers' database through Django (its own connection points
at pytest's test database): it seeds and inspects it through subprocesses and plain SQL.

- ScratchDatabase: a throwaway database on the backend the suite runs on (an SQLite file under
  tmp_path, or a postroom_workers_<hex> database on the suite's PostgreSQL server), migrated
  by `python -m postroom migrate`, dropped at the end.
- Sink: an SMTP server on loopback in its own process that accepts everything and appends
  "<unix time> <rcpt> <Message-ID>" to a file, written before it answers 250.
- Processes: every child started by a test, killed at teardown even when the test failed.

Run as a module for the pieces that live in their own process:

    python -m postroom.delivery.tests.workerharness sink LOG READY
    python -m postroom.delivery.tests.workerharness seed --port P --count N [--per-second S]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[3]
MODULE = "postroom.delivery.tests.workerharness"
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


# Connections per worker of the seeded sender: a claim is BATCH_PER_CONNECTION times this.
SEED_POOL_SIZE = 2


def recipient(i: int) -> str:
    return f"r{i:05d}@example.org"


def wait_until(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.05):
    """Poll until `condition()` is truthy and return its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class Processes:
    """Children of one test. close() kills whatever is still running: no orphans."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}-{len(self.children)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.children.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        log = next(path for p, path in self.children if p is proc)
        return log.read_text(errors="replace")[-3000:]

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        """SIGTERM, as a deploy does, and wait for a clean exit."""
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def close(self) -> None:
        for proc, _ in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@dataclass
class Delivery:
    at: float
    rcpt: str
    message_id: str


class Sink:
    def __init__(self, processes: Processes, env: dict[str, str], tmp: Path) -> None:
        self.log = tmp / "sink.log"
        ready = tmp / "sink.port"
        args = [sys.executable, "-m", MODULE, "sink", str(self.log), str(ready)]
        self.proc = processes.start("sink", args, env)
        wait_until(ready.exists, 15, "the SMTP sink to listen")
        self.port = int(ready.read_text())

    def deliveries(self) -> list[Delivery]:
        rows = []
        for line in self.log.read_text().splitlines():
            at, rcpt, message_id = line.split(" ")
            rows.append(Delivery(float(at), rcpt, message_id))
        return rows

    def count(self) -> int:
        return self.log.read_bytes().count(b"\n")


class ScratchDatabase:
    """A database of its own for one test, on the backend the suite runs on."""

    def __init__(self, tmp: Path) -> None:
        from django.conf import settings

        db = settings.DATABASES["default"]
        self.vendor = "postgresql" if "postgresql" in db["ENGINE"] else "sqlite"
        self.tmp = tmp
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTROOM_SMTP_URL")
        }
        self.env.update(
            POSTROOM_DATA_DIR=str(tmp / "data"),
            SECRET_KEY="workers-test-" + uuid.uuid4().hex,
            DJANGO_SETTINGS_MODULE="postroom.settings",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        self._pg = None
        if self.vendor == "postgresql":
            import psycopg

            self.server = {
                "host": db.get("HOST") or "127.0.0.1",
                "port": int(db.get("PORT") or 5432),
                "user": db.get("USER") or "postgres",
                "password": db.get("PASSWORD") or None,
            }
            self.name = "postroom_workers_" + uuid.uuid4().hex[:12]
            with psycopg.connect(dbname="postgres", autocommit=True, **self.server) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
            auth = quote(self.server["user"], safe="")
            if self.server["password"]:
                auth += ":" + quote(self.server["password"], safe="")
            self.env["DATABASE_URL"] = (
                f"postgres://{auth}@{self.server['host']}:{self.server['port']}/{self.name}"
            )
        self.manage("migrate", "-v0")

    def manage(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "postroom", *args]
        done = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def seed(self, port: int, count: int, per_second: int | None = None) -> None:
        args = [sys.executable, "-m", MODULE, "seed", "--port", str(port)]
        args += ["--count", str(count)]
        if per_second:
            args += ["--per-second", str(per_second)]
        done = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"seed failed:\n{done.stdout}\n{done.stderr}"

    def sql(self, statement: str) -> tuple[list[tuple], int]:
        """Run one statement; (rows, rowcount). Autocommit: no snapshot is held open."""
        if self.vendor == "sqlite":
            path = self.tmp / "data" / "postroom.sqlite3"
            conn = sqlite3.connect(path, timeout=20, isolation_level=None)
            try:
                cur = conn.execute(statement)
                return cur.fetchall(), cur.rowcount
            finally:
                conn.close()
        if self._pg is None:
            import psycopg

            self._pg = psycopg.connect(dbname=self.name, autocommit=True, **self.server)
        cur = self._pg.execute(statement)
        return (cur.fetchall() if cur.description else []), cur.rowcount

    def states(self) -> dict[str, int]:
        rows, _ = self.sql("SELECT state, COUNT(*) FROM delivery_message GROUP BY state")
        return dict(rows)

    def messages(self) -> dict[str, tuple[str, bool]]:
        """to_email -> (state, maybe_duplicate)."""
        rows, _ = self.sql("SELECT to_email, state, maybe_duplicate FROM delivery_message")
        return {to: (state, bool(dup)) for to, state, dup in rows}

    def expire_leases(self) -> int:
        """What five minutes do to a dead worker's claims: their lease runs out."""
        _, n = self.sql(
            "UPDATE delivery_message SET lease_until = '2000-01-01 00:00:00' "
            "WHERE state = 'sending'"
        )
        return n

    def drop(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self.vendor == "postgresql":
            import psycopg

            with psycopg.connect(dbname="postgres", autocommit=True, **self.server) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def worker_args() -> list[str]:
    return [sys.executable, "-m", "postroom", "worker"]


# ---- the parts that run in their own process ----


class RecordingHandler:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads pipelined commands correctly but does not say so: say it, so that
        # the workers pipeline as they do with a real relay.
        session.host_name = hostname
        return [responses[0], "250-PIPELINING", *responses[1:]]

    async def handle_DATA(self, server, session, envelope):
        match = MESSAGE_ID.search(envelope.original_content)
        message_id = match.group(1).decode() if match else "-"
        now = time.time()
        lines = "".join(f"{now:.6f} {rcpt} {message_id}\n" for rcpt in envelope.rcpt_tos)
        # On disk before the 250: what the sink says it accepted, it has.
        os.write(self.fd, lines.encode())
        os.fsync(self.fd)
        return "250 2.0.0 Ok: queued"


def run_sink(log: str, ready: str) -> None:
    import asyncio

    from aiosmtpd.smtp import SMTP

    async def serve() -> None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        handler = RecordingHandler(fd)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        Path(ready + ".tmp").write_text(str(port))
        os.replace(ready + ".tmp", ready)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(serve())


def run_seed(port: int, count: int, per_second: int | None) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")
    django.setup()
    from postroom.accounts.actions import create_project
    from postroom.accounts.models import User
    from postroom.delivery.models import Email, Message, Sender

    owner = User.objects.create_user("owner@example.org", None, name="Owner")
    project, _ = create_project("Workers", owner)
    sender = Sender.objects.create(
        project=project,
        name="Sink",
        kind=Sender.Kind.SMTP,
        host="127.0.0.1",
        port=port,
        security=Sender.Security.NONE,
        from_email="news@example.com",
        timeout=10,
        per_second=per_second,
        pool_size=SEED_POOL_SIZE,
    )
    email = Email.objects.create(
        project=project,
        kind=Email.Kind.CAMPAIGN,
        sender=sender,
        from_email=sender.from_email,
        subject="Hello from the worker tests",
        text="Plain body",
    )
    Message.objects.bulk_create(
        (
            Message(project=project, email=email, sender=sender, to_email=recipient(i))
            for i in range(count)
        ),
        batch_size=500,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink")
    sink.add_argument("log")
    sink.add_argument("ready")
    seed = sub.add_parser("seed")
    seed.add_argument("--port", type=int, required=True)
    seed.add_argument("--count", type=int, required=True)
    seed.add_argument("--per-second", type=int)
    args = parser.parse_args()
    if args.command == "sink":
        run_sink(args.log, args.ready)
    else:
        run_seed(args.port, args.count, args.per_second)


if __name__ == "__main__":
    main()
