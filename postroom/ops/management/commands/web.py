from __future__ import annotations

import os
import shutil
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

DEFAULT_WEB_THREADS = 8


def web_command(host: str, port: int, workers: int) -> list[str]:
    """granian serving the WSGI app; gunicorn is the fallback (POSTROOM_SERVER=gunicorn)."""
    if os.environ.get("POSTROOM_SERVER", "granian") == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "postroom.wsgi:application",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            "-",
        ]
    granian = shutil.which("granian", path=os.path.dirname(sys.executable)) or "granian"
    return [
        granian,
        "--interface",
        "wsgi",
        "postroom.wsgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        # Eight Python threads per process: enough to overlap database waits, and calls to
        # track gathering into larger batches (bench/api.py: 4 -> 8 threads, 1,787 -> 2,210
        # track calls/s on SQLite), without dozens of threads fighting over the GIL.
        "--blocking-threads",
        os.environ.get("WEB_THREADS", str(DEFAULT_WEB_THREADS)),
        "--no-ws",
        "--log-level",
        "warning",
    ]


class Command(BaseCommand):
    help = "Serve the dashboard and API with granian (WSGI)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=settings.WEB_WORKERS)

    def handle(self, *args, **options) -> None:
        argv = web_command(options["host"], options["port"], options["workers"])
        os.execvp(argv[0], argv)
