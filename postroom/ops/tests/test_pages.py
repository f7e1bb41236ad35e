from __future__ import annotations

from postroom.ops.models import WorkerHeartbeat
from postroom.test import BaseTestCase


class OverviewTestCase(BaseTestCase):
    def test_an_empty_project_says_what_to_do(self) -> None:
        self.login()
        r = self.client.get(self.url())
        self.assertContains(r, "Welcome to your new project")
        self.assertContains(r, "Add a contact")

    def test_it_shows_real_figures(self) -> None:
        self.make_contact("a@example.com")
        self.make_contact("b@example.com", status="bounced")
        self.make_contact("c@example.com", project=self.charlies_project)
        self.login()
        r = self.client.get(self.url())
        self.assertEqual(r.context["figures"]["total"], 2)
        self.assertEqual(r.context["figures"]["bounced"], 1)
        self.assertEqual(r.context["figures"]["last_7_days"], 2)
        self.assertEqual(sum(d["n"] for d in r.context["growth"]), 2)
        self.assertContains(r, 'id="figure-total">2<')

    def test_it_charts_email_per_day(self) -> None:
        from unittest import mock

        from django.db import OperationalError

        from postroom.test import drain
        from postroom.tracking.models import Event

        self.login()
        r = self.client.get(self.url())
        self.assertNotContains(r, 'id="report-chart"')
        self.make_contact("a@example.com")
        self.start_campaign()
        drain()
        Event.objects.create(project=self.project, kind=Event.Kind.OPENED, machine=True)
        r = self.client.get(self.url())
        chart = r.context["mail_chart"]
        self.assertEqual(len(chart["series"]["t"]), 30)
        self.assertEqual(chart["series"]["sent"][-1], 1)
        self.assertEqual(sum(chart["series"]["opened"]), 0)  # a scanner's open is left out
        self.assertContains(r, 'id="report-chart"')
        self.assertContains(r, "uPlot.iife.min.js")
        with mock.patch(
            "postroom.tracking.models.Event.objects.filter", side_effect=OperationalError("slow")
        ):
            r = self.client.get(self.url())
        self.assertContains(r, "The figures could not be loaded: slow")


class HealthTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice.is_staff = True
        self.alice.save()

    def test_it_is_for_staff_only(self) -> None:
        self.login(self.bob)
        self.assertEqual(self.client.get("/health/").status_code, 403)

    def test_the_public_json_has_no_details(self) -> None:
        WorkerHeartbeat.objects.create(name="secret-host:42")
        body = self.client.get("/health.json").json()
        self.assertNotIn("secret-host", str(body))
        self.assertEqual(set(body["checks"][0]), {"name", "status"})
        self.login()
        self.assertIn("secret-host", str(self.client.get("/health.json").json()))

    def test_it_shows_a_stopped_worker(self) -> None:
        self.login()
        r = self.client.get("/health/")
        self.assertContains(r, "Something needs attention")
        self.assertContains(r, "No worker has run yet")
        self.assertEqual(r["Cache-Control"], "no-store")

    def test_it_shows_a_running_worker(self) -> None:
        WorkerHeartbeat.objects.create(name="host:42")
        self.login()
        r = self.client.get("/health/")
        self.assertContains(r, "host:42")
        self.assertContains(r, "All checks pass")

    def test_the_json_is_503_when_unhealthy(self) -> None:
        r = self.client.get("/health.json")
        self.assertEqual(r.status_code, 503)
        self.assertFalse(r.json()["healthy"])
        WorkerHeartbeat.objects.create(name="host:42")
        self.assertEqual(self.client.get("/health.json").status_code, 200)

    def test_the_page_needs_a_login(self) -> None:
        self.assertEqual(self.client.get("/health/").status_code, 302)
