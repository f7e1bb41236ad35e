from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from postroom.accounts.actions import create_first_admin
from postroom.ops.management.commands.web import web_command

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def start_child_group() -> None:
    """Run in each child before exec: lead its own process group, and die with `up`.

    Its own group: Ctrl-C reaches only `up`, which stops the children in order (granian's
    workers exit cleanly on its SIGTERM, not when the terminal's SIGINT hits them all at once).
    PDEATHSIG: if `up` is killed outright (SIGKILL, OOM), the kernel sends the child SIGTERM,
    so no web server or worker is left running with nobody to stop it.
    """
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = "Migrate, create the first admin if there is none, and run web + worker until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=settings.WEB_WORKERS)

    def handle(self, *args, **options) -> None:
        self.stopping = False
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.stop)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready.")
        admin = create_first_admin()
        host, port = options["host"], options["port"]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "postroom.settings"}
        children: list[subprocess.Popen] = []
        try:
            for argv in (
                web_command(host, port, options["workers"]),
                [sys.executable, "-m", "postroom", "worker"],
            ):
                children.append(subprocess.Popen(argv, env=env, preexec_fn=start_child_group))
            self.announce(host, port, admin)
            while not self.stopping and all(c.poll() is None for c in children):
                time.sleep(0.2)
        finally:
            self.stop_children(children)

    def stop(self, signum, frame) -> None:
        self.stopping = True

    def announce(self, host: str, port: int, admin: tuple[str, str] | None) -> None:
        shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host  # noqa: S104
        self.stdout.write(self.style.SUCCESS(f"Postroom is running at http://{shown_host}:{port}/"))
        if admin:
            email, password = admin
            self.stdout.write(f"Log in as {email} with password {password}")
            self.stdout.write("(shown once: change it under your account after logging in)")
        self.stdout.write("Press Ctrl-C to stop.")

    def stop_children(self, children: list[subprocess.Popen]) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
            # Whatever the child left behind in its group goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
        if failed and not self.stopping:
            self.stderr.write("A Postroom process exited unexpectedly; stopped the rest.")
            sys.exit(1)
        self.stdout.write("Stopped.")
