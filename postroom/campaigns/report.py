"""A campaign's report: what became of its mail, from the events of its Email (tracking),
counted per hour by the worker (tracking.counts) and per link from the click events.

Totals count every event; "unique" counts messages (a recipient who opened five times is one
unique open). Opens and clicks a scanner probably made (Event.machine) are left out unless
asked for. Each kind over time in buckets: hours for the first two days after the send began,
days after that, so one chart serves a campaign of an hour and one of a month.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count

from postroom.campaigns.models import Campaign
from postroom.tracking.counts import email_hours, local_day
from postroom.tracking.models import Event

KINDS = (
    Event.Kind.SENT,
    Event.Kind.DELIVERED,
    Event.Kind.OPENED,
    Event.Kind.CLICKED,
    Event.Kind.BOUNCED,
    Event.Kind.COMPLAINED,
    Event.Kind.UNSUBSCRIBED,
    Event.Kind.FAILED,
)
HOURLY_FOR = dt.timedelta(days=2)
TOP_LINKS = 50


@dataclass
class Report:
    totals: dict[str, int] = field(default_factory=dict)
    unique: dict[str, int] = field(default_factory=dict)
    links: list[dict] = field(default_factory=list)  # url, clicks, unique
    bucket: str = "hour"
    series: dict = field(default_factory=dict)  # {"t": [unix seconds], kind: [counts]}
    machine_hits: int = 0  # opens and clicks left out as a scanner's

    def rate(self, kind: str, of: str = Event.Kind.SENT) -> float | None:
        base = self.totals.get(of) or 0
        return round(100 * self.unique.get(kind, 0) / base, 1) if base else None

    def figures(self) -> list[dict]:
        """The figures across the top: each kind's total, unique and rate over sent."""
        return [
            {
                "kind": kind,
                "label": Event.Kind(kind).label,
                "total": self.totals.get(kind, 0),
                "unique": self.unique.get(kind, 0),
                "rate": None if kind == Event.Kind.SENT else self.rate(kind),
            }
            for kind in KINDS
        ]

    def chart(self) -> dict:
        """What static/postroom/report-chart.js draws."""
        labels = {kind: Event.Kind(kind).label for kind in KINDS}
        return {"bucket": self.bucket, "series": self.series, "labels": labels}


def campaign_report(campaign: Campaign, with_machines: bool = False) -> Report:
    report = Report()
    if not campaign.email_id:
        return report
    hours = email_hours(campaign.email_id, KINDS)
    report.machine_hits = sum(row["events"] for row in hours if row["machine"])
    if not with_machines:
        hours = [row for row in hours if not row["machine"]]
    unique = "unique_all" if with_machines else "unique_people"
    for row in hours:
        kind = row["kind"]
        report.totals[kind] = report.totals.get(kind, 0) + row["events"]
        report.unique[kind] = report.unique.get(kind, 0) + row[unique]
    report.links = top_links(campaign.email_id, with_machines)
    report.bucket, report.series = over_time(hours, campaign)
    return report


def top_links(email_id: int, with_machines: bool) -> list[dict]:
    """Clicks per link, counted from the click events (a few per cent of a campaign's)."""
    clicks = Event.objects.filter(email_id=email_id, kind=Event.Kind.CLICKED)
    if not with_machines:
        clicks = clicks.filter(machine=False)
    per_link = (
        clicks.values("url")
        .annotate(clicks=Count("id"), unique=Count("message_id", distinct=True))
        .order_by("-clicks", "url")[:TOP_LINKS]
    )
    return list(per_link)


def over_time(hours: list[dict], campaign: Campaign) -> tuple[str, dict]:
    """Each kind per hour for a campaign whose events span two days at most, per day (in the
    site's time zone) after that."""
    start = campaign.started_at or campaign.created_at
    hourly = not hours or hours[-1]["hour"] - start <= HOURLY_FOR
    buckets: dict[dt.datetime, dict[str, int]] = {}
    for row in hours:
        at = row["hour"] if hourly else local_day(row["hour"])
        bucket = buckets.setdefault(at, dict.fromkeys(KINDS, 0))
        bucket[row["kind"]] += row["events"]
    series: dict[str, list] = {"t": [], **{kind: [] for kind in KINDS}}
    for at in sorted(buckets):
        series["t"].append(int(at.timestamp()))
        for kind in KINDS:
            series[kind].append(buckets[at][kind])
    return ("hour" if hourly else "day"), series
