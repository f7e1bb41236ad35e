from __future__ import annotations

from unittest import mock

from django.db import OperationalError

from postroom.campaigns.report import campaign_report
from postroom.test import BaseTestCase, drain
from postroom.tracking.models import Event


class CampaignReportTest(BaseTestCase):
    def sent_campaign(self, n: int = 3):
        for i in range(n):
            self.make_contact(f"c{i}@example.com")
        campaign = self.start_campaign()
        drain()
        campaign.refresh_from_db()
        return campaign

    def hit(self, campaign, kind: str, message, **fields) -> None:
        Event.objects.create(
            project=self.project,
            kind=kind,
            email_id=campaign.email_id,
            message=message,
            contact_id=message.contact_id,
            **fields,
        )

    def test_totals_unique_rates_and_links(self) -> None:
        campaign = self.sent_campaign(3)
        first, second, _ = campaign.email.messages.order_by("id")
        for _ in range(3):
            self.hit(campaign, Event.Kind.OPENED, first)
        self.hit(campaign, Event.Kind.OPENED, second)
        self.hit(campaign, Event.Kind.OPENED, second, machine=True)
        self.hit(campaign, Event.Kind.CLICKED, first, url="https://example.com/a")
        self.hit(campaign, Event.Kind.CLICKED, first, url="https://example.com/a")
        self.hit(campaign, Event.Kind.CLICKED, second, url="https://example.com/b")
        report = campaign_report(campaign)
        self.assertEqual(report.totals["sent"], 3)
        self.assertEqual((report.totals["opened"], report.unique["opened"]), (4, 2))
        self.assertEqual(report.rate("opened"), 66.7)
        self.assertEqual(report.machine_hits, 1)
        self.assertEqual(
            [(link["url"], link["clicks"], link["unique"]) for link in report.links],
            [("https://example.com/a", 2, 1), ("https://example.com/b", 1, 1)],
        )
        self.assertEqual(report.bucket, "hour")
        self.assertEqual(sum(report.series["opened"]), 4)
        with_machines = campaign_report(campaign, with_machines=True)
        self.assertEqual(with_machines.totals["opened"], 5)

    def test_the_page_shows_figures_and_a_chart(self) -> None:
        campaign = self.sent_campaign(2)
        self.login()
        r = self.client.get(self.url(f"campaigns/{campaign.code}/report/"))
        self.assertContains(r, "Clicks per link")
        self.assertContains(r, 'id="report-chart"')
        self.assertContains(r, "uPlot.iife.min.js")
        self.assertContains(r, 'id="report-data"')
        self.assertEqual(r["Cache-Control"], "no-store")

    def test_a_campaign_not_sent_has_an_empty_state(self) -> None:
        campaign = self.make_campaign()
        self.login()
        r = self.client.get(self.url(f"campaigns/{campaign.code}/report/"))
        self.assertContains(r, "Nothing to report yet")
        self.assertContains(r, "has not been sent")

    def test_a_failing_query_shows_an_error(self) -> None:
        campaign = self.sent_campaign(1)
        self.login()
        with mock.patch(
            "postroom.campaigns.views.campaign_report_of", side_effect=OperationalError("boom")
        ):
            r = self.client.get(self.url(f"campaigns/{campaign.code}/report/"))
        self.assertContains(r, "The report could not be made")
        self.assertContains(r, 'role="alert"')

    def test_another_projects_campaign_is_a_404(self) -> None:
        campaign = self.make_campaign(project=self.charlies_project)
        self.login()
        r = self.client.get(self.url(f"campaigns/{campaign.code}/report/"))
        self.assertEqual(r.status_code, 404)
