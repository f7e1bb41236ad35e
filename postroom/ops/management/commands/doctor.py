from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand

from postroom.ops.health import ERROR, OK, run_all


class Command(BaseCommand):
    help = "Check the database, migrations, workers, queues, senders and settings."
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--alert",
            action="store_true",
            help="also raise and clear alerts (email and webhook), as the worker does: "
            "for cron, to hear of a worker that stopped",
        )

    def handle(self, *args, **options) -> None:
        results = run_all()
        if options["alert"]:
            from postroom.ops.alerts import check_and_alert

            check_and_alert(results)
        if options["json"]:
            self.stdout.write(json.dumps([r.__dict__ for r in results], indent=2))
        else:
            marks = {OK: self.style.SUCCESS("ok     "), ERROR: self.style.ERROR("ERROR  ")}
            for r in results:
                mark = marks.get(r.status, self.style.WARNING("warning"))
                self.stdout.write(f"{mark} {r.name}: {r.message}")
        if any(r.status == ERROR for r in results):
            sys.exit(1)
