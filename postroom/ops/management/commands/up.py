from __future__ import annotations

import contextlib
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


class Command(BaseCommand):
    help = "Migrate, create the first admin if there is none, and run web + worker until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=settings.WEB_WORKERS)

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready.")
        admin = create_first_admin()
        host, port = options["host"], options["port"]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "postroom.settings"}
        # Each child leads its own process group: Ctrl-C reaches only this process, which then
        # stops the children in order (granian's own workers exit cleanly on its SIGTERM, but
        # not when the terminal's SIGINT hits them all at once).
        web = subprocess.Popen(
            web_command(host, port, options["workers"]), env=env, start_new_session=True
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "postroom", "worker"], env=env, start_new_session=True
        )
        shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host  # noqa: S104
        self.stdout.write(self.style.SUCCESS(f"Postroom is running at http://{shown_host}:{port}/"))
        if admin:
            email, password = admin
            self.stdout.write(f"Log in as {email} with password {password}")
            self.stdout.write("(shown once: change it under your account after logging in)")
        self.stdout.write("Press Ctrl-C to stop.")
        self.wait(web, worker)

    def wait(self, *children: subprocess.Popen) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
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
        if failed and not stopping:
            self.stderr.write("A Postroom process exited unexpectedly; stopped the rest.")
            sys.exit(1)
        self.stdout.write("Stopped.")
