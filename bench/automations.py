"""The automations' event reader: how many events a second the worker turns into runs.

    python bench/automations.py [--contacts C] [--database-url URL]

Seeds C subscribed contacts and 2 x C custom events, set-based: first a "signed-up" for every
contact, then, for every fourth contact a "paid", for the others a "signed-up" again. Two
automations listen: "Once" (signed-up, once per contact) and "Every" (signed-up, every time),
both cancelled by "paid" while they wait (each starts with a day's wait). The reader's cursor
is put before the events, and the script times `read_events` (the worker's step, batches of
5,000 ids) until it has read them all, then checks the runs against what the events must
make: Once C runs, Every C + 3C/4, of which C/2 cancelled (both runs of each payer).

SQLite (the default) runs in a throwaway POSTROOM_DATA_DIR under /tmp; PostgreSQL in the
database named by the URL, dropped and created again. The last line printed is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from send import setup_django


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, default=50_000, help="contacts (events: twice as many)")
    p.add_argument("--database-url", default="", help="PostgreSQL URL; SQLite when omitted")
    args = p.parse_args()
    args.contacts -= args.contacts % 4  # whole groups of four
    setup_django(args, tempfile.mkdtemp(prefix="postroom-bench-automations-"))
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    project, automations = seed(args.contacts)
    figures = read_all()
    figures |= check(args.contacts, automations)
    figures |= {"engine": engine(), "contacts": args.contacts, "events": 2 * args.contacts}
    figures["events_per_second"] = round(figures["events"] / figures["seconds"])
    print(
        f"{figures['events']:,} events read in {figures['seconds']} s: "
        f"{figures['events_per_second']:,} events/s; runs {figures['runs']}, "
        f"expected {figures['expected']}: {'ok' if figures['ok'] else 'WRONG'}"
    )
    print(json.dumps(figures))
    sys.exit(0 if figures["ok"] else 1)


def seed(contacts: int):
    from django.utils import timezone

    from postroom.accounts.actions import create_project
    from postroom.accounts.models import User
    from postroom.automations import actions
    from postroom.automations.models import Automation
    from postroom.contacts.models import Contact
    from postroom.tracking.models import Event, EventCursor

    user = User.objects.create_user(email="bench@example.com", password="bench-password-1")
    project, _ = create_project("Bench", user)
    now = timezone.now()
    Contact.objects.bulk_create(
        (
            Contact(project=project, email=f"c{i}@example.com", status="subscribed",
                    created_at=now, updated_at=now)
            for i in range(contacts)
        ),
        batch_size=5000,
    )  # fmt: skip
    ids = list(
        Contact.objects.filter(project=project).order_by("email").values_list("id", flat=True)
    )
    made = {}
    for name, repeat in (("Once", "once"), ("Every", "every")):
        automation = Automation(project=project)
        actions.save_automation(automation, {"name": name, "trigger": "event",
                                             "trigger_event": "signed-up", "repeat": repeat,
                                             "cancel_event": "paid"})  # fmt: skip
        actions.add_step(automation, "wait", {"amount": 1, "unit": "days"})
        actions.set_enabled(automation, True)
        made[name] = automation
    first = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    EventCursor.objects.update_or_create(name=actions.READER, defaults={"through_id": first})
    events = (
        Event(project=project, kind=Event.Kind.CUSTOM, contact_id=contact_id, created_at=now,
              name="paid" if again and n % 4 == 0 else "signed-up", data={"n": n})
        for again in (False, True)
        for n, contact_id in enumerate(ids)
    )  # fmt: skip
    Event.objects.bulk_create(events, batch_size=5000)
    return project, made


def read_all() -> dict:
    from postroom.automations import actions

    started = time.perf_counter()
    steps = 0
    while actions.read_events(settle=0):
        steps += 1
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "steps": steps}


def check(contacts: int, automations: dict) -> dict:
    from postroom.automations.models import Run

    def count(name: str, **filters) -> int:
        return Run.objects.filter(automation=automations[name], **filters).count()

    cancelled = count("Once", state="cancelled") + count("Every", state="cancelled")
    runs = {"once": count("Once"), "every": count("Every"), "cancelled": cancelled}
    expected = {"once": contacts, "every": contacts + 3 * contacts // 4, "cancelled": contacts // 2}
    return {"runs": runs, "expected": expected, "ok": runs == expected}


def engine() -> str:
    from django.db import connection

    return connection.vendor


if __name__ == "__main__":
    main()
