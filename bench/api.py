"""The event and transactional APIs under load: `POST /api/v1/track` and `POST /api/v1/send`.

    python bench/api.py [--seconds S] [--database-url URL] [--connections C] [--floor]
                        [--web-threads T] [--rate-limit N|default] [--profile]

Seeds a project with its secret key, starts the production server (`python -m postroom web`:
granian, WSGI) with 2 worker processes on a free loopback port, and drives each endpoint for
S seconds with `wrk` (Debian package `wrk`: C, cheap, so that it takes little of the CPU the
server needs on a small machine) through a Lua script that POSTs Plunk's bodies:

    track: {"event": "signed-up", "email": "bench-<i>@example.com",
            "data": {"plan": <free|pro|team>, "orderId": {"value": "o-…", "persistent": false}}}
    send:  {"to": "bench-<i>@example.com", "subject": "Hello {{ data.name }}",
            "body": "<p>Hi {{ data.name }}</p>", "data": {"name": "Ann"}}

with `Authorization: Bearer sk_…`. The addresses cycle through a pool of --pool addresses (a
prime, so that a contact seen again gets another plan): the first pass creates contacts, the
rest update them. Each endpoint gets a 2 s warm-up run, then the measured run; wrk's own
figures (requests, duration, latency percentiles, socket errors) come from its `done()` hook,
the status codes from its `response()` hook. Afterwards the server is stopped (it finishes
what it holds) and the database is counted: every 2xx `track` must be a custom Event (each
event's orderId is unique, so duplicates show) and every 2xx `send` a transactional Message.
No worker runs: the messages stay queued, the API is what is measured.

The per-key rate limit is counted as in production (one upsert per request), but set to
--rate-limit (default 100,000,000 per 60 s window) so that it never answers 429: at 2,000
requests/s one key would reach the default 120,000 a window. `--rate-limit default` keeps the
server's own limit (the 429s then show among the statuses); 0 turns it off (no upsert).

This machine is shared: before each endpoint the script waits (--idle-wait) until the machine
is nearly idle, and it reports what else ran meanwhile (`other_cpu_cores`), the hypervisor's
steal and a pure-Python speed index, so that a run disturbed by someone else shows as such.
CPU is the server's (granian and its workers, from /proc) and, on PostgreSQL, the backends
serving the bench database. `--floor` first drives track without a key (401 before any query):
the cost of granian, the middleware and django-ninja alone. `--profile` samples each web
worker with py-spy (`--gil`: CPU, not threads waiting on the database).

SQLite (the default) runs in a throwaway POSTROOM_DATA_DIR under /tmp; PostgreSQL runs in the
database named by the URL, dropped and created again for every run. The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from send import CLOCK_TICKS, database_cpu, free_port, proc_cpu, setup_django, stop

ROOT = Path(__file__).resolve().parent.parent

# Targets from the issue.
TARGET_TRACK_RPS = 2000
TARGET_TRACK_P99_MS = 50

WARMUP_SECONDS = 2
WRK_MARK = "WRK_JSON "

# One Lua state per wrk thread. setup() runs in the main state for each thread; request() and
# response() in the thread's; done() in the main state again, reading each thread's counts.
LUA = r"""
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  kind, run, token, pool = args[1], args[2], args[3], tonumber(args[4])
  counter = 0
  counts = {}
  wrk.method = "POST"
  if token ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  wrk.headers["Content-Type"] = "application/json"
end

local plans = {"free", "pro", "team"}

function request()
  counter = counter + 1
  local i = (counter * 131 + tid * 7919) % pool
  local body
  if kind ~= "send" then
    body = string.format(
      '{"event":"signed-up","email":"bench-%d@example.com","data":{"plan":"%s",' ..
      '"orderId":{"value":"o-%s-%d-%d","persistent":false}}}',
      i, plans[counter % 3 + 1], run, tid, counter)
  else
    body = string.format(
      '{"to":"bench-%d@example.com","subject":"Hello {{ data.name }}",' ..
      '"body":"<p>Hi {{ data.name }}</p>","data":{"name":"Ann"}}', i)
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      statuses[#statuses + 1] = string.format('"%d":%d', status, n)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d},"statuses":[{%s}]}\n',
    "WRK_JSON ", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status, table.concat(statuses, "},{")))
end
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=20, help="measured seconds per endpoint")
    p.add_argument("--database-url", default="", help="PostgreSQL URL; SQLite when omitted")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--web-workers", type=int, default=2, help="granian worker processes")
    p.add_argument(
        "--web-threads",
        type=int,
        default=0,
        help="WEB_THREADS for the server (granian's blocking threads per worker); "
        "0 keeps its default (8)",
    )
    p.add_argument("--pool", type=int, default=10_007, help="distinct addresses")
    p.add_argument(
        "--rate-limit",
        default="100000000",
        help="POSTROOM_API_RATE_LIMIT for the server, or 'default' to keep its own",
    )
    p.add_argument("--only", choices=["track", "send"], help="drive one endpoint only")
    p.add_argument(
        "--floor",
        action="store_true",
        help="first drive track without a key (401, no database query): what the server, "
        "Django's middleware and django-ninja cost alone",
    )
    p.add_argument(
        "--idle-wait",
        type=int,
        default=300,
        help="before each endpoint, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument("--data-dir", default="", help="keep the database and the server log here")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample every web worker with py-spy during each measured run and print the "
        "functions where they spend their time (slows the server a little)",
    )
    p.add_argument("--py-spy", default="", help="path to py-spy (default: on PATH or .venv)")
    return p.parse_args()


# --- seeding -------------------------------------------------------------------------------


def seed() -> tuple[str, str]:
    """A user, a project with its default sender, and its keys: (secret key, public key)."""
    from postroom.accounts.actions import create_project
    from postroom.accounts.models import User
    from postroom.delivery.actions import default_sender

    user = User.objects.create_user("bench@example.com", "bench-password")
    project, secret = create_project("Bench", user)
    default_sender(project)  # the built-in mailbox, as a new install has it
    return secret, project.public_key


# --- the server ----------------------------------------------------------------------------


def start_server(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen:
    """`postroom web` (it execs granian, so the pid is granian's), ready to answer."""
    cmd = [sys.executable, "-m", "postroom", "web", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", str(workers)]
    out = open(log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=out)
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the server did not listen on {port}; see {log}")


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (granian's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            total += proc_cpu(p)
    return total


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has run (user, system, interrupts), and those the
    hypervisor gave to other guests (steal: a slower machine that no process shows)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def python_speed_ms() -> float:
    """CPU ms of a fixed pure-Python loop, best of 5: how fast this machine runs Python right
    now. The VM's speed drifts (the same request cost 2.9 and 5.4 CPU ms an hour apart), so
    CPU figures are comparable only between runs with similar values."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        total = 0
        for i in range(300_000):
            total += len(str(i)) * (i & 7)
        best = min(best, time.process_time() - t0)
    return round(best * 1000, 1)


def wait_idle(limit_s: int, busy_cores: float = 0.3) -> float:
    """Wait (up to `limit_s`) until the machine has been nearly idle for 2 s: other people's
    tests on a 2-core machine would halve the figures. Returns the seconds waited."""
    t0 = time.monotonic()
    said = False
    while time.monotonic() - t0 < limit_s:
        before = machine_cpu()[0]
        time.sleep(2)
        busy = (machine_cpu()[0] - before) / 2
        if busy < busy_cores:
            break
        if not said:
            print(f"waiting for the machine to be idle ({busy:.2f} cores busy)…", flush=True)
            said = True
    return round(time.monotonic() - t0 - 2, 1)


def post(port: int, path: str, token: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"{}")
        except ValueError:
            return e.code, {"raw": raw[:200].decode(errors="replace")}


# --- the load ------------------------------------------------------------------------------


def run_wrk(
    args: argparse.Namespace, script: Path, url: str, seconds: int, extra: list[str]
) -> dict[str, Any]:
    """One wrk run; its figures, the status counts and wrk's own CPU seconds."""
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s"]
    cmd += ["--latency", "--timeout", "10s", "-s", str(script), url, "--", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in out.splitlines() if x.startswith(WRK_MARK))
    figures = json.loads(line.removeprefix(WRK_MARK))
    statuses: Counter = Counter()
    for per_thread in figures.pop("statuses"):
        statuses.update({int(k): v for k, v in per_thread.items()})
    figures["statuses"] = statuses
    figures["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures["text"] = out.split(WRK_MARK)[0].rstrip()
    return figures


def wrk_figures(m: dict, ok: int) -> dict[str, Any]:
    """Rates, latency percentiles and statuses of one run_wrk result; `ok` the answers that
    count as served."""
    seconds = m["duration_us"] / 1e6
    return {
        "rps": round(ok / seconds),
        "all_rps": round(m["requests"] / seconds),
        "p50_ms": round(m["p50_us"] / 1000, 2),
        "p90_ms": round(m["p90_us"] / 1000, 2),
        "p99_ms": round(m["p99_us"] / 1000, 2),
        "max_ms": round(m["max_us"] / 1000, 1),
        "requests": m["requests"],
        "statuses": {str(s): n for s, n in sorted(m["statuses"].items())},
        "socket_errors": {k: v for k, v in m["errors"].items() if v and k != "status"},
    }


def sample(pyspy: str, pids: list[int], seconds: int, data_dir: str, name: str) -> list:
    """py-spy on each web worker for `seconds`, in the background: the processes and the
    files they write."""
    procs = []
    for pid in pids:
        out = Path(data_dir, f"{name}-{pid}.txt")
        cmd = [pyspy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200"]
        # --gil: only the thread holding the GIL, so the shares are of CPU, not of threads
        # waiting on the database.
        cmd += ["--gil", "--nonblocking", "--format", "raw", "-o", str(out)]
        procs.append(
            (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
        )
    return procs


def summarise_profile(files: list[Path], top: int = 25) -> dict[str, Any]:
    """From py-spy's collapsed stacks: the share of samples in each function, by own time
    (the innermost frame) and inclusive (anywhere on the stack), and Postroom's own."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            count = int(n)
            total += count
            own[short(frames[-1])] += count
            for frame in {short(f) for f in frames}:
                inclusive[frame] += count
    if not total:
        return {"samples": 0}

    def shares(c: Counter) -> list[tuple[str, float]]:
        return [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]

    ours = Counter({f: n for f, n in inclusive.items() if "(postroom/" in f})
    return {
        "samples": total,
        "own_pct": shares(own),
        "inclusive_pct": shares(inclusive),
        "postroom_inclusive_pct": [(f, p) for f, p in shares(ours) if p >= 1],
    }


def short(frame: str) -> str:
    """'execute (django/db/backends/utils.py:103)' -> 'execute (django/db/backends/utils.py)'"""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def drive(
    args: argparse.Namespace,
    kind: str,
    port: int,
    token: str,
    server: subprocess.Popen,
    data_dir: str,
) -> dict[str, Any]:
    """Warm up, then measure one endpoint. Returns its figures, statuses of every run."""
    script = Path(data_dir, f"{kind}.lua")
    script.write_text(LUA)
    # The floor: track without a key, answered 401 by the API's auth before any query.
    url = f"http://127.0.0.1:{port}/api/v1/{'track' if kind == 'floor' else kind}"
    pool = str(args.pool)
    waited = wait_idle(args.idle_wait) if args.idle_wait else 0.0
    warm = run_wrk(args, script, url, WARMUP_SECONDS, [kind, "w", token, pool])
    workers = children(server.pid)
    spies = []
    if args.profile:
        spies = sample(args.py_spy, workers, args.seconds, data_dir, kind)
    cpu0 = tree_cpu(server.pid)
    db0 = database_cpu()
    busy0, steal0 = machine_cpu()
    m = run_wrk(args, script, url, args.seconds, [kind, "m", token, pool])
    server_cpu = tree_cpu(server.pid) - cpu0
    db_cpu = sum(t - db0.get(pid, 0.0) for pid, t in database_cpu().items())
    busy1, steal1 = machine_cpu()
    busy, steal = busy1 - busy0, steal1 - steal0
    print(m["text"], flush=True)
    seconds = m["duration_us"] / 1e6
    ok = sum(n for s, n in m["statuses"].items() if 200 <= s < 300)
    figures: dict[str, Any] = {
        **wrk_figures(m, ok),
        "server_cpu_cores": round(server_cpu / seconds, 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, m["requests"]), 3),
        "wrk_cpu_cores": round(m["wrk_cpu_s"] / seconds, 2),
        # Everything else the machine did meanwhile (this script, other users): noise.
        "other_cpu_cores": round((busy - server_cpu - db_cpu - m["wrk_cpu_s"]) / seconds, 2),
        "steal_cores": round(steal / seconds, 2),
        "web_workers": len(workers),
        "waited_idle_s": waited,
        "python_speed_ms": python_speed_ms(),
    }
    if db0 or db_cpu:
        figures["database_cpu_cores"] = round(db_cpu / seconds, 2)
        figures["database_cpu_ms_per_request"] = round(1000 * db_cpu / max(1, m["requests"]), 3)
    figures["accepted"] = ok + sum(
        n for s, n in warm["statuses"].items() if 200 <= s < 300
    )  # warm-up included: those are in the database too
    for proc, _ in spies:
        _, err = proc.communicate()
        if proc.returncode:
            print(f"py-spy: {err.decode(errors='replace').strip()[-300:]}", flush=True)
    if spies:
        figures["profile"] = summarise_profile([out for _, out in spies])
    print(
        f"{kind}: {figures['rps']} 2xx/s ({figures['all_rps']} in all), "
        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
        f"statuses {figures['statuses']}, server {figures['server_cpu_cores']} cores "
        f"({figures['server_cpu_ms_per_request']} CPU ms a request), "
        f"database {figures.get('database_cpu_cores', '-')} cores, "
        f"wrk {figures['wrk_cpu_cores']} cores, other {figures['other_cpu_cores']} cores, "
        f"steal {figures['steal_cores']} cores, python speed {figures['python_speed_ms']} ms",
        flush=True,
    )
    return figures


# --- counting in the database -------------------------------------------------------------


def count_stored(accepted: dict[str, int]) -> dict[str, Any]:
    from django.db.models import Count

    from postroom.delivery.models import Message
    from postroom.tracking.models import Event

    events = Event.objects.filter(kind=Event.Kind.CUSTOM, name="signed-up")
    stored_events = events.count()
    order_ids = events.aggregate(n=Count("data__orderId", distinct=True))["n"]
    stored_messages = Message.objects.filter(priority=Message.Priority.TRANSACTIONAL).count()
    lost_events = max(0, accepted.get("track", 0) - stored_events)
    lost_messages = max(0, accepted.get("send", 0) - stored_messages)
    return {
        "stored_events": stored_events,
        "duplicate_events": stored_events - order_ids,
        "stored_messages": stored_messages,
        "lost_events": lost_events,
        "lost_messages": lost_messages,
        "lost": lost_events + lost_messages,
        # Stored but never answered to wrk: requests in flight when a run ended.
        "unacknowledged": max(0, stored_events - accepted.get("track", 0))
        + max(0, stored_messages - accepted.get("send", 0)),
    }


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if args.profile:
        args.py_spy = (
            args.py_spy or shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        )
        if not Path(args.py_spy).exists():
            sys.exit("py-spy not found: pip install py-spy, or pass --py-spy PATH")
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="postroom-bench-api-")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    env = setup_django(args, data_dir)
    from django.db import connection

    try:
        figures = run(args, env, data_dir)
    finally:
        connection.close()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(figures, default=str))


def run(args: argparse.Namespace, env: dict[str, str], data_dir: str) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    engine = connection.vendor
    call_command("migrate", verbosity=0, interactive=False)
    secret, _public = seed()
    connection.close()  # the server's processes have the database to themselves

    if args.web_threads:
        env["WEB_THREADS"] = str(args.web_threads)
    if args.rate_limit != "default":
        env["POSTROOM_API_RATE_LIMIT"] = args.rate_limit
    limit = env.get("POSTROOM_API_RATE_LIMIT", "120000 (the default)")
    port = free_port()
    print(
        f"engine: {engine}, {args.web_workers} web workers x {env.get('WEB_THREADS', '8')} "
        f"threads on 127.0.0.1:{port}, wrk "
        f"{args.threads} thread(s) x {args.connections} connections, {args.seconds} s per "
        f"endpoint, rate limit {limit} per key per window, {os.cpu_count()} cores",
        flush=True,
    )
    figures: dict[str, Any] = {
        "engine": engine,
        "seconds": args.seconds,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "web_workers": args.web_workers,
        "web_threads": int(env.get("WEB_THREADS", "8")),
        "cores": os.cpu_count(),
        "rate_limit": limit,
        "pool": args.pool,
    }
    accepted: dict[str, int] = {}
    log = Path(data_dir, "server.log")
    server = start_server(env, port, args.web_workers, log)
    try:
        kinds = [args.only] if args.only else ["track", "send"]
        if args.floor:
            result = drive(args, "floor", port, "-", server, data_dir)
            result.pop("accepted")
            for key, value in result.items():
                figures[f"floor_{key}"] = value
        for kind in kinds:
            # One request first: the server's imports, and whether the endpoint is there.
            # The track probe is another event name: the count below is of "signed-up".
            body = {"event": "bench-probe", "email": "probe@example.com", "data": {}}
            if kind == "send":
                body = {"to": "probe@example.com", "subject": "Hi", "body": "<p>Hi</p>"}
            status, answer = post(port, f"/api/v1/{kind}", secret, body)
            print(f"probe {kind}: {status} {json.dumps(answer)[:300]}", flush=True)
            figures[f"{kind}_probe_status"] = status
            if status == 404:
                print(f"{kind}: the endpoint is not there (404); skipped", flush=True)
                continue
            result = drive(args, kind, port, secret, server, data_dir)
            accepted[kind] = result.pop("accepted")
            if kind == "send" and 200 <= status < 300:
                accepted[kind] += 1  # the probe's message is counted with the others
            for key, value in result.items():
                figures[f"{kind}_{key}"] = value
    finally:
        stop([server])  # SIGTERM: granian finishes the requests it holds
    if server.returncode not in (0, -signal.SIGTERM):
        print(f"server exit status {server.returncode}; see {log}", flush=True)
    figures["accepted"] = accepted
    figures.update(count_stored(accepted))
    figures["track_target"] = {"rps": TARGET_TRACK_RPS, "p99_ms": TARGET_TRACK_P99_MS}
    if "track_rps" in figures:
        figures["met_target"] = (
            figures["track_rps"] >= TARGET_TRACK_RPS
            and figures["track_p99_ms"] < TARGET_TRACK_P99_MS
        )
    print(
        f"accepted {accepted}, stored {figures['stored_events']} events and "
        f"{figures['stored_messages']} transactional messages: lost {figures['lost']}, "
        f"duplicate events {figures['duplicate_events']}, "
        f"unacknowledged {figures['unacknowledged']}",
        flush=True,
    )
    return figures


if __name__ == "__main__":
    main()
