"""A campaign's report: what became of its mail, from the events of its Email (tracking).

Totals count every event; "unique" counts messages (a recipient who opened five times is one
unique open). Opens and clicks a scanner probably made (Event.machine) are left out unless
asked for. Each kind over time in buckets: hours for the first two days after the send began,
days after that, so one chart serves a campaign of an hour and one of a month.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Q
from django.db.models.functions import TruncDay, TruncHour

from postroom.campaigns.models import Campaign
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
    events = Event.objects.filter(email_id=campaign.email_id, kind__in=KINDS)
    report.machine_hits = events.filter(machine=True).count()
    if not with_machines:
        events = events.filter(machine=False)
    for row in events.values("kind").annotate(
        n=Count("id"), unique=Count("message_id", distinct=True)
    ):
        report.totals[row["kind"]] = row["n"]
        report.unique[row["kind"]] = row["unique"]
    clicks = (
        events.filter(kind=Event.Kind.CLICKED)
        .values("url")
        .annotate(clicks=Count("id"), unique=Count("message_id", distinct=True))
        .order_by("-clicks", "url")[:TOP_LINKS]
    )
    report.links = list(clicks)
    report.bucket, report.series = over_time(events, campaign)
    return report


def over_time(events, campaign: Campaign) -> tuple[str, dict]:
    start = campaign.started_at or campaign.created_at
    last = events.order_by("-id").values_list("created_at", flat=True).first()
    hourly = last is None or last - start <= HOURLY_FOR
    trunc = TruncHour("created_at") if hourly else TruncDay("created_at")
    rows = (
        events.annotate(at=trunc)
        .values("at")
        .annotate(**{kind: Count("id", filter=Q(kind=kind)) for kind in KINDS})
        .order_by("at")
    )
    series: dict[str, list] = {"t": [], **{kind: [] for kind in KINDS}}
    for row in rows:
        series["t"].append(int(row["at"].timestamp()))
        for kind in KINDS:
            series[kind].append(row[kind])
    return ("hour" if hourly else "day"), series
