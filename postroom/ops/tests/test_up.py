"""`postroom up` end to end: real processes on a free port, as a new user would run it."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until(
    proc: subprocess.Popen, pattern: str, lines: list[str], timeout: float = 60
) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"{pattern!r} not printed; output was:\n{''.join(lines)}")


@pytest.fixture
def postroom_up(tmp_path: Path):
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        POSTROOM_DATA_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
        WEB_WORKERS="1",
        SITE_URL=f"http://localhost:{port}",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "postroom", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    yield proc, port
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (loopback only)
            return
        except Exception:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_it_comes_up_lets_the_admin_log_in_and_stops_on_ctrl_c(postroom_up) -> None:
    proc, port = postroom_up
    lines: list[str] = []
    url = read_until(proc, r"running at (http://\S+)", lines).group(1)
    creds = read_until(proc, r"Log in as (\S+) with password (\S+)", lines)
    email, password = creds.group(1), creds.group(2)
    assert url == f"http://localhost:{port}/"
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base + "/login/")

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(base + "/login/")
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode(
        {"username": email, "password": password, "csrfmiddlewaretoken": csrf}
    )
    page = opener.open(
        urllib.request.Request(
            base + "/login/", form.encode(), headers={"Referer": base + "/login/"}
        )
    )
    assert page.url.endswith("/projects/"), page.url  # logged in, asked to create a first project
    assert "You are not in any project yet" in page.read().decode()

    # The worker started beside the web server and beats.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            body = json.loads(urllib.request.urlopen(base + "/health.json").read())  # noqa: S310
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        worker = next(c for c in body["checks"] if c["name"] == "worker")
        if worker["status"] == "ok":
            break
        time.sleep(0.5)
    assert worker["status"] == "ok", worker

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=30) == 0
    rest = proc.stdout.read()
    assert "Stopped." in rest, rest
    # Nothing is left listening on the port.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_second_start_does_not_create_another_admin(postroom_up, tmp_path: Path) -> None:
    proc, port = postroom_up
    lines: list[str] = []
    read_until(proc, r"Log in as", lines)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=20)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(POSTROOM_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1", WEB_WORKERS="1")
    again = subprocess.Popen(
        [sys.executable, "-m", "postroom", "up", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        read_until(again, r"running at", lines := [])
        os.killpg(again.pid, signal.SIGINT)
        again.wait(timeout=20)
        assert "Log in as" not in "".join(lines) + again.stdout.read()
    finally:
        if again.poll() is None:
            os.killpg(again.pid, signal.SIGKILL)


def test_children_die_with_a_killed_up(postroom_up) -> None:
    proc, port = postroom_up
    read_until(proc, r"running at", [])
    wait_for_http(f"http://127.0.0.1:{port}/login/")
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 2, children
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the kernel must tell the children
    proc.wait(timeout=5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"still running after up was killed: {alive}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
