from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from postroom.lib.gctuning import settle_for_batch_work
from postroom.ops.worker import Worker


class Command(BaseCommand):
    help = (
        "Run the background worker: bulk actions, and every later queue. Stops on SIGTERM/Ctrl-C."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")

    def handle(self, *args, **options) -> None:
        settle_for_batch_work()
        worker = Worker()
        if options["once"]:
            worker.beat(force=True)
            worker.run_once()
            return

        def stop(signum, frame) -> None:
            worker.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        worker.run()
