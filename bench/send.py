"""Sending at scale: one campaign to N recipients through W worker processes into smtp-sink.

    python bench/send.py [--recipients N] [--database-url URL] [--workers W]

Seeds N subscribed contacts set-based, an SMTP sender (no TLS, no rate limit) pointing at a
Postfix `smtp-sink` started on a free loopback port, and an HTML campaign (5 KB as written:
each recipient gets it personalised, with its text part, tracked links, an open pixel and the
unsubscribe footer, ~13 KB on the wire).
Starts W `python -m postroom worker` processes, then starts the campaign (campaigns.actions.start;
a worker's start step snapshots it) and measures from that moment to the last recipient recorded
as sent in the ledger. smtp-sink dumps every transaction (-D) so that duplicates and missing
recipients are counted at the sink, from its X-Rcpt-Args records. In the same run, `smtp-source`
sends N messages of the same size to the same sink over 16 sessions: the ceiling.

SQLite (the default) runs in a throwaway POSTROOM_DATA_DIR under /tmp; PostgreSQL runs in the
database named by the URL, dropped and created again for every run. The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from contacts import reset_postgres

ROOT = Path(__file__).resolve().parent.parent
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
RCPT_DOMAIN = "bench.example"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Targets from the issue.
TARGET_MESSAGES_PER_SECOND = 3000
TARGET_SHARE_OF_CEILING = 0.5


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipients", type=int, default=100_000)
    p.add_argument("--database-url", default="", help="PostgreSQL URL; SQLite when omitted")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument(
        "--body-kb",
        type=int,
        default=5,
        help="size of the HTML body as written; with its text part, tracked links and "
        "footer the message is ~13 KB at 5 (the issue's ~10 KB HTML+text), ~24 KB at 10",
    )
    p.add_argument("--data-dir", default="", help="keep the database, dumps and logs here")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the first worker under cProfile and print its top functions",
    )
    p.add_argument("--no-ceiling", action="store_true", help="skip the smtp-source run")
    p.add_argument(
        "--start-only",
        action="store_true",
        help="no sending: time the snapshot of N recipients into the ledger, then a cancel",
    )
    return p.parse_args()


def setup_django(args: argparse.Namespace, data_dir: str) -> dict[str, str]:
    """Point Django at a fresh bench database; returns the environment for the workers."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "postroom.settings"
    os.environ["POSTROOM_DATA_DIR"] = data_dir
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        reset_postgres(args.database_url)
    else:
        os.environ.pop("DATABASE_URL", None)
        for suffix in ("", "-wal", "-shm"):
            Path(data_dir, "postroom.sqlite3" + suffix).unlink(missing_ok=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# --- seeding -------------------------------------------------------------------------------


def html_body(kb: int) -> str:
    """A newsletter-shaped HTML body of about `kb` KB: paragraphs, links, a table."""
    para = (
        '<p style="font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:24px;'
        'color:#333333;margin:0 0 16px 0">This week in the garden: the tomatoes are in, '
        'the <a href="https://example.com/blog/tomatoes?utm_source=newsletter">late '
        "varieties</a> need staking, and our autumn bulb sale starts on Friday. Résumé of "
        "the month below, with prices in € and a few notes from readers.</p>\n"
    )
    row = (
        '<tr><td style="padding:8px;border-bottom:1px solid #eeeeee">Tulip mix, 25 bulbs</td>'
        '<td style="padding:8px;border-bottom:1px solid #eeeeee;text-align:right">€12.50</td>'
        "</tr>\n"
    )
    head = '<!doctype html><html><body style="margin:0;padding:0"><table width="600">\n'
    parts = [head]
    size = len(head)
    while size < kb * 1024:
        chunk = para if len(parts) % 3 else row
        parts.append(chunk)
        size += len(chunk.encode())
    parts.append("</table></body></html>\n")
    return "".join(parts)


def seed(n: int, port: int, body_kb: int) -> int:
    """Project, N subscribed contacts (set-based), the SMTP sender and the campaign; its id."""
    from django.db import connection, transaction
    from django.utils import timezone

    from postroom.accounts.actions import create_project
    from postroom.accounts.models import User
    from postroom.campaigns.models import Campaign
    from postroom.delivery.models import Sender

    user = User.objects.create_user("bench@example.com", "bench-password")
    project, _ = create_project("Bench", user)
    pg = connection.vendor == "postgresql"
    stamp = connection.ops.adapt_datetimefield_value(timezone.now())
    select = (
        "SELECT %s, md5(n::text)::uuid, 'rcpt' || n || '@" + RCPT_DOMAIN + "', "
        "'Reader', 'No' || n, '{}', 'subscribed', %s, '', %s, 'import', NULL, %s, %s "
    )
    if not pg:
        select = select.replace("md5(n::text)::uuid", "lower(hex(randomblob(16)))")
    insert = (
        "INSERT INTO contacts_contact (project_id, code, email, first_name, last_name, data, "
        "status, status_changed_at, status_reason, consent_at, consent_source, consent_ip, "
        "created_at, updated_at) "
    )
    params = [project.id, stamp, stamp, stamp, stamp]
    with transaction.atomic(), connection.cursor() as cur:
        if pg:
            cur.execute(insert + select + "FROM generate_series(1, %s) AS s(n)", [*params, n])
        else:
            numbers = (
                f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n})"
            )
            numbers += " "
            cur.execute(numbers + insert + select + "FROM s", params)
        cur.execute("ANALYZE", [])
    sender = Sender.objects.create(
        project=project,
        name="smtp-sink",
        kind=Sender.Kind.SMTP,
        is_default=True,
        from_email="news@postroom.example",
        from_name="Postroom Bench",
        host="127.0.0.1",
        port=port,
        security=Sender.Security.NONE,
    )
    campaign = Campaign.objects.create(
        project=project,
        name="Bench",
        subject="The garden in November: tomatoes, bulbs and a sale",
        preheader="Our autumn bulb sale starts on Friday",
        sender=sender,
        from_email=sender.from_email,
        from_name=sender.from_name,
        audience=Campaign.Audience.ALL,
        body_format=Campaign.Format.HTML,
        body=html_body(body_kb),
    )
    return campaign.id


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int, dump: Path) -> subprocess.Popen:
    # -u root: it runs as root here and would otherwise drop to "nobody", who cannot write the
    # dump. 1024: the listen backlog. -m 256: concurrent sessions.
    cmd = [SINK, "-u", "root", "-m", "256", "-D", str(dump), f"127.0.0.1:{port}", "1024"]
    proc = subprocess.Popen(cmd)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def database_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the bench database (the workers' and
    ours), by pid; empty on SQLite, whose work runs inside the workers."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [pid for (pid,) in cur.fetchall()]
    cpu = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError):  # gone, or not ours
            cpu[pid] = proc_cpu(pid)
    return cpu


def proc_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_workers(n: int, env: dict[str, str], data_dir: str, profile: bool) -> list:
    workers = []
    for i in range(n):
        cmd = [sys.executable]
        if profile and i == 0:
            cmd += ["-m", "cProfile", "-o", str(Path(data_dir, "worker0.prof"))]
        cmd += ["-m", "postroom", "worker"]
        log = open(Path(data_dir, f"worker{i}.log"), "wb")  # noqa: SIM115
        workers.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log))
    return workers


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --- counting at the sink ------------------------------------------------------------------


def sink_recipients(dump: Path) -> Counter:
    """RCPT TO addresses of our recipients, as smtp-sink recorded them, with their counts."""
    out = subprocess.run(
        ["grep", "-a", f"^X-Rcpt-Args: <rcpt[0-9]*@{RCPT_DOMAIN}>", str(dump)],
        capture_output=True,
        check=False,
    ).stdout
    return Counter(line.split(b"<", 1)[1].split(b">", 1)[0] for line in out.splitlines())


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    for tool in (SINK, SOURCE):
        if not Path(tool).exists():
            # Debian's postfix package ships both; installing it starts no mail server here.
            sys.exit(f"{tool} not found: apt-get install postfix (answer 'No configuration').")
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="postroom-bench-send-")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    env = setup_django(args, data_dir)
    from django.db import connection

    port = free_port()
    if args.start_only:
        try:
            figures = time_start_and_cancel(args, port)
        finally:
            connection.close()
            if not args.data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
        print(json.dumps(figures, default=str))
        return
    dump = Path(data_dir, "sink.dump")
    sink = start_sink(port, dump)
    try:
        figures = run(args, env, data_dir, port, dump, sink)
    finally:
        connection.close()
        stop([sink])
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(figures, default=str))


def time_start_and_cancel(args, port: int) -> dict[str, Any]:
    """What a web request and the worker's start step cost for a big campaign: `start()`
    (the request: it only marks the campaign due), the worker's snapshot into the ledger,
    and `cancel()` (the request: it holds the Email and hands the rest to the worker)."""
    from django.core.management import call_command
    from django.db import connection

    from postroom.campaigns import actions
    from postroom.campaigns.models import Campaign
    from postroom.delivery.models import Message

    call_command("migrate", verbosity=0, interactive=False)
    figures: dict[str, Any] = {"engine": connection.vendor, "recipients": args.recipients}
    t0 = time.perf_counter()
    campaign_id = seed(args.recipients, port, args.body_kb)
    figures["seed_s"] = round(time.perf_counter() - t0, 1)
    campaign = Campaign.objects.get(id=campaign_id)
    timings = [
        ("start_request_s", lambda: actions.start(campaign)),
        ("snapshot_step_s", actions.start_due_campaigns),
        ("live_page_progress_s", lambda: actions.progress(Campaign.objects.get(id=campaign_id))),
        ("cancel_request_s", lambda: actions.cancel(Campaign.objects.get(id=campaign_id))),
    ]
    for name, step in timings:
        t0 = time.perf_counter()
        step()
        figures[name] = round(time.perf_counter() - t0, 3)
        print(f"{name}: {figures[name]} s", flush=True)
    # The worker's part of the cancel, one chunk per step.
    steps = []
    while True:
        t0 = time.perf_counter()
        if not actions.cancel_unsent_recipients():
            break
        steps.append(time.perf_counter() - t0)
    figures["cancel_steps"] = len(steps)
    figures["cancel_step_max_s"] = round(max(steps), 3)
    figures["cancel_worker_total_s"] = round(sum(steps), 2)
    figures["state_after"] = Campaign.objects.get(id=campaign_id).state
    print(f"cancelled in {len(steps)} steps, {figures['cancel_worker_total_s']} s", flush=True)
    figures["ledger_rows"] = Message.objects.count()
    return figures


def run(args, env, data_dir: str, port: int, dump: Path, sink) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Max, Min

    from postroom.campaigns import actions
    from postroom.campaigns.models import Campaign
    from postroom.delivery.models import Message

    n = args.recipients
    engine = connection.vendor
    print(f"engine: {engine}, recipients: {n:,}, workers: {args.workers}, sink port {port}")
    figures: dict[str, Any] = {"engine": engine, "recipients": n, "workers": args.workers}

    call_command("migrate", verbosity=0, interactive=False)
    t0 = time.perf_counter()
    campaign_id = seed(n, port, args.body_kb)
    figures["seed_s"] = round(time.perf_counter() - t0, 1)
    print(f"seeded in {figures['seed_s']} s")
    connection.close()  # let the workers have SQLite's write lock

    workers = start_workers(args.workers, env, data_dir, args.profile)
    time.sleep(3)  # imports and django.setup(): not part of the send
    cpu_before = {p.pid: proc_cpu(p.pid) for p in workers}
    sink_cpu_before = proc_cpu(sink.pid)
    db_cpu_before = database_cpu()
    try:
        campaign = Campaign.objects.get(id=campaign_id)
        wall0 = time.time()
        actions.start(campaign)
        while True:
            time.sleep(0.5)
            if any(p.poll() is not None for p in workers):
                raise SystemExit(f"a worker exited; see {data_dir}/worker*.log")
            campaign.refresh_from_db()
            if campaign.email_id is None:
                continue
            unfinished = Message.objects.filter(
                email_id=campaign.email_id, state__in=actions.UNFINISHED
            )
            if not unfinished.exists():
                break
        cpu = sum(proc_cpu(p.pid) - cpu_before[p.pid] for p in workers)
        rss = max(proc_hwm_mb(p.pid) for p in workers)
        sink_cpu = proc_cpu(sink.pid) - sink_cpu_before
        db_cpu_after = database_cpu()
        db_cpu = sum(t - db_cpu_before.get(pid, 0.0) for pid, t in db_cpu_after.items())
    finally:
        stop(workers)
    messages = Message.objects.filter(email_id=campaign.email_id)
    span = messages.aggregate(first=Min("sent_at"), last=Max("sent_at"))
    states = dict(Counter(messages.values_list("state", flat=True)))
    elapsed = span["last"].timestamp() - wall0
    snapshot_s = campaign.started_at.timestamp() - wall0
    figures["states"] = states
    figures["snapshot_s"] = round(snapshot_s, 2)
    figures["elapsed_s"] = round(elapsed, 2)
    figures["messages_per_second"] = round(states.get("sent", 0) / elapsed)
    # The send loop alone: first to last sent_at (excludes the snapshot and first claim).
    loop = span["last"].timestamp() - span["first"].timestamp()
    figures["send_loop_messages_per_second"] = round(states.get("sent", 0) / max(loop, 1e-9))
    figures["cpu_seconds_per_1000"] = round(cpu / n * 1000, 3)
    figures["sink_cpu_seconds_per_1000"] = round(sink_cpu / n * 1000, 3)
    if db_cpu_after:
        figures["database_cpu_seconds_per_1000"] = round(db_cpu / n * 1000, 3)
    figures["peak_rss_mb"] = round(rss, 1)

    seen = sink_recipients(dump)
    figures["received_at_sink"] = sum(seen.values())
    figures["duplicates"] = sum(c - 1 for c in seen.values())
    figures["missing"] = n - len(seen)
    figures["dump_mb"] = round(dump.stat().st_size / 2**20, 1)
    figures["mean_message_bytes"] = round(dump.stat().st_size / max(1, sum(seen.values())))
    print(
        f"sent {states.get('sent', 0):,} in {elapsed:.1f} s "
        f"(snapshot {snapshot_s:.1f} s): {figures['messages_per_second']} msg/s, "
        f"{figures['cpu_seconds_per_1000']} CPU s per 1000, peak RSS {rss:.0f} MB, "
        f"duplicates {figures['duplicates']}, missing {figures['missing']}",
        flush=True,
    )

    if not args.no_ceiling:
        # The same sink, the same number of messages of our messages' size, 16 sessions; one
        # connection per message (smtp-source's default) and, with -d, kept open like ours.
        for key, extra in (("ceiling_messages_per_second", []), ("ceiling_reuse", ["-d"])):
            # Messages of the size ours had on the wire, so the two are comparable.
            size = str(figures["mean_message_bytes"])
            cmd = [SOURCE, "-s", "16", "-l", size, "-m", str(n), *extra]
            cmd += [f"127.0.0.1:{port}"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            rate = round(n / (time.perf_counter() - t0))
            figures[key] = rate
            print(f"smtp-source {' '.join(cmd[1:])}: {rate} msg/s", flush=True)
        figures["share_of_ceiling"] = round(
            figures["messages_per_second"] / figures["ceiling_messages_per_second"], 3
        )
    figures["target_messages_per_second"] = TARGET_MESSAGES_PER_SECOND
    figures["met_target"] = figures["messages_per_second"] >= TARGET_MESSAGES_PER_SECOND and (
        args.no_ceiling or figures["share_of_ceiling"] >= TARGET_SHARE_OF_CEILING
    )

    if args.profile:
        stats = pstats.Stats(str(Path(data_dir, "worker0.prof")))
        print("--- worker 0, by own time ---")
        stats.sort_stats("tottime").print_stats(25)
        print("--- worker 0, cumulative ---")
        stats.sort_stats("cumulative").print_stats(40)
    return figures


if __name__ == "__main__":
    main()
