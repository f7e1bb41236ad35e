from __future__ import annotations

import datetime as dt
import unittest
from unittest import mock

import psycopg
from django.db import connection
from django.db.models import Count, Max, Q
from django.db.models.functions import TruncHour
from django.test import TransactionTestCase
from django.utils import timezone

from postroom.accounts.actions import create_project
from postroom.accounts.models import User
from postroom.campaigns.report import KINDS, campaign_report
from postroom.delivery.actions import default_sender, send_test_email
from postroom.test import BaseTestCase, drain
from postroom.tracking import counts
from postroom.tracking.models import EmailCount, Event, EventStream, ProjectCount


def count_all(settle: float = 0) -> int:
    """Run the worker's step until it has nothing left; how many batches it counted."""
    steps = 0
    while counts.roll_up_events(settle=settle):
        steps += 1
    return steps


def counted_live(email_id: int, with_machines: bool) -> dict:
    """The reference the counts must agree with: the report's figures counted from the events
    themselves, as the report did before the counts existed."""
    events = Event.objects.filter(email_id=email_id, kind__in=KINDS)
    if not with_machines:
        events = events.filter(machine=False)
    totals, unique = {}, {}
    for row in events.values("kind").annotate(n=Count("id"), u=Count("message", distinct=True)):
        totals[row["kind"]], unique[row["kind"]] = row["n"], row["u"]
    hours = (
        events.annotate(at=TruncHour("created_at", tzinfo=dt.UTC))
        .values("at")
        .annotate(**{kind: Count("id", filter=Q(kind=kind)) for kind in KINDS})
        .order_by("at")
    )
    series = {"t": [int(row["at"].timestamp()) for row in hours]}
    series |= {kind: [row[kind] for row in hours] for kind in KINDS}
    return {"totals": totals, "unique": unique, "series": series}


class CountsTest(BaseTestCase):
    def sent_campaign(self, n: int):
        for i in range(n):
            self.make_contact(f"c{i}@example.com")
        from postroom.campaigns import actions

        campaign = self.make_campaign()
        actions.start(campaign)
        actions.start_due_campaigns()
        drain()
        campaign.refresh_from_db()
        return campaign

    def hit(self, message, kind: str, hours_later: int = 0, **fields) -> Event:
        return Event.objects.create(
            project_id=message.project_id,
            kind=kind,
            email_id=message.email_id,
            message=message,
            contact_id=message.contact_id,
            created_at=timezone.now() + dt.timedelta(hours=hours_later),
            **fields,
        )

    def assert_report_matches_events(self, campaign) -> None:
        for with_machines in (False, True):
            report = campaign_report(campaign, with_machines)
            live = counted_live(campaign.email_id, with_machines)
            self.assertEqual(report.totals, live["totals"])
            self.assertEqual(report.unique, live["unique"])
            self.assertEqual(report.series, live["series"])

    def test_it_counts_events_into_hours_and_moves_on(self) -> None:
        campaign = self.sent_campaign(2)
        first, second = campaign.email.messages.order_by("id")
        self.hit(first, Event.Kind.OPENED)
        self.hit(first, Event.Kind.OPENED, hours_later=1)
        self.hit(second, Event.Kind.OPENED, machine=True)
        self.assertEqual(count_all(), 1)
        self.assertFalse(counts.roll_up_events(settle=0))
        largest = Event.objects.order_by("-id").values_list("id", flat=True).first()
        self.assertEqual(counts.counted_through(), largest)
        opened = EmailCount.objects.filter(email_id=campaign.email_id, kind="opened")
        self.assertEqual(
            sorted(opened.values_list("machine", "events", "unique_people", "unique_all")),
            # People: two opens in two hours, one of them the message's first; the scanner's
            # open is the first of its message by anyone, by no person.
            [(False, 1, 0, 0), (False, 1, 1, 1), (True, 1, 0, 1)],
        )
        sent = ProjectCount.objects.get(project=self.project, kind="sent")
        self.assertEqual((sent.events, sent.machine), (2, False))

    def test_the_report_agrees_with_the_events_before_during_and_after_counting(self) -> None:
        campaign = self.sent_campaign(3)
        first, second, third = campaign.email.messages.order_by("id")
        self.hit(first, Event.Kind.OPENED)
        self.hit(first, Event.Kind.OPENED, hours_later=3)
        self.hit(second, Event.Kind.OPENED, machine=True)
        self.hit(third, Event.Kind.DELIVERED)
        self.assert_report_matches_events(campaign)  # nothing counted yet: all from events
        count_all()
        # Counted, then more: some from the counts, some from the events above them.
        self.hit(second, Event.Kind.OPENED)
        self.hit(first, Event.Kind.OPENED, hours_later=3)
        self.hit(third, Event.Kind.CLICKED, url="https://example.com/", machine=True)
        self.hit(third, Event.Kind.CLICKED, url="https://example.com/")
        self.assert_report_matches_events(campaign)
        count_all()
        self.assert_report_matches_events(campaign)
        report = campaign_report(campaign)
        self.assertEqual((report.totals["opened"], report.unique["opened"]), (4, 2))
        self.assertEqual(report.machine_hits, 2)

    def test_it_counts_in_batches(self) -> None:
        campaign = self.sent_campaign(5)
        for message in campaign.email.messages.all():
            self.hit(message, Event.Kind.OPENED)
        with mock.patch.object(counts, "BATCH_IDS", 3):
            self.assertEqual(count_all(), 4)  # 5 sent + 5 opened, 3 ids a step
        self.assertEqual(sum(EmailCount.objects.values_list("events", flat=True)), 10)
        self.assert_report_matches_events(campaign)

    def test_a_transactional_email_counts_for_the_project_only(self) -> None:
        sender = default_sender(self.project)
        send_test_email(self.project, sender, "ann@example.com", self.alice)
        drain()
        count_all()
        self.assertFalse(EmailCount.objects.exists())
        self.assertEqual(ProjectCount.objects.get(kind="sent").events, 1)

    def test_the_overview_chart_reads_counted_and_uncounted_events(self) -> None:
        campaign = self.sent_campaign(2)
        count_all()
        first = campaign.email.messages.order_by("id").first()
        self.hit(first, Event.Kind.OPENED)
        self.hit(first, Event.Kind.OPENED, machine=True)  # left out of the chart
        self.login()
        r = self.client.get(self.url())
        chart = r.context["mail_chart"]["series"]
        self.assertEqual((chart["sent"][-1], chart["opened"][-1]), (2, 1))
        self.assertEqual(sum(chart["sent"]), 2)

    def test_a_read_is_repeated_when_the_worker_moves_on_meanwhile(self) -> None:
        reads = []
        with mock.patch.object(counts, "counted_through", side_effect=[5, 7, 7, 7]):
            result = counts.as_of_one_moment(lambda through: reads.append(through) or through)
        self.assertEqual((reads, result), ([5, 7], 7))

    @unittest.skipUnless(connection.vendor == "postgresql", "PostgreSQL only")
    def test_an_id_is_not_safe_until_it_has_settled(self) -> None:
        self.sent_campaign(1)
        self.assertFalse(counts.roll_up_events(settle=60))
        stream = EventStream.objects.get()
        self.assertEqual((stream.safe_id, stream.next_xid), (0, None))
        self.assertGreater(stream.next_id, 0)
        self.assertEqual(counts.counted_through(), 0)


@unittest.skipUnless(connection.vendor == "postgresql", "PostgreSQL gives ids out of order")
class OutOfOrderIdsTest(TransactionTestCase):
    """Committed for real (no test transaction around it), as the worker sees the database."""

    def test_it_waits_for_older_transactions_that_may_still_hold_lower_ids(self) -> None:
        user = User.objects.create_user("ann@example.org", "x" * 12)
        project, _ = create_project("Ann's", user)
        Event.objects.create(project=project, kind=Event.Kind.CUSTOM, name="a")
        largest = Event.objects.aggregate(m=Max("id"))["m"]
        # Another connection with a transaction in progress, older than the rollup's: as one
        # that has inserted an event and not committed yet.
        with psycopg.connect(**connection.get_connection_params(), autocommit=False) as other:
            other.execute("SELECT pg_current_xact_id()")
            self.assertFalse(counts.roll_up_events(settle=0))
            stream = EventStream.objects.get()
            self.assertEqual((stream.safe_id, stream.next_id), (0, largest))
            self.assertIsNotNone(stream.next_xid)
            self.assertEqual(counts.counted_through(), 0)
            other.rollback()
        self.assertEqual(count_all(), 1)
        self.assertEqual(counts.counted_through(), largest)
        self.assertEqual(ProjectCount.objects.get(project=project).events, 1)
