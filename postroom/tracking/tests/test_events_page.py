from __future__ import annotations

from unittest import mock

from django.db import OperationalError

from postroom.lib.querytime import QueryTooSlow
from postroom.test import BaseTestCase, drain
from postroom.tracking.actions import track
from postroom.tracking.models import Event


class EventsPageTest(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login()

    def get(self, query: str = "", **headers):
        return self.client.get(self.url(f"events/{query}"), **headers)

    def test_an_empty_project_shows_its_next_steps(self) -> None:
        r = self.get()
        self.assertContains(r, "No events yet")
        self.assertContains(r, "Send a test email")
        self.assertContains(r, self.project.public_key)
        self.assertContains(r, "/api/v1/track")
        self.assertEqual(r["Cache-Control"], "no-store")
        self.assertContains(r, 'hx-trigger="every 5s"')  # keeps looking for the first event

    def test_the_test_email_button_leads_to_a_sent_event(self) -> None:
        r = self.client.post(self.url("events/test-email/"), follow=True)
        self.assertContains(r, f"A test email to {self.alice.email} is on its way")
        drain()
        r = self.get()
        self.assertNotContains(r, "No events yet")
        self.assertContains(r, '<span class="badge sent">Sent</span>', html=True)

    def test_events_are_listed_newest_first_with_contact_and_data(self) -> None:
        track(self.project, "signed-up", "ann@example.com", None, {"plan": "pro"}, None)
        track(self.project, "paid", "bob@example.com", None, {}, None)
        r = self.get()
        content = r.content.decode()
        self.assertLess(content.index("paid"), content.index("signed-up"))
        self.assertContains(r, "ann@example.com")
        self.assertContains(r, "&quot;plan&quot;: &quot;pro&quot;")

    def test_filters_narrow_the_list(self) -> None:
        track(self.project, "signed-up", "ann@example.com", None, {}, None)
        track(self.project, "paid", "bob@example.com", None, {}, None)
        r = self.get("?name=paid")
        self.assertContains(r, "bob@example.com")
        self.assertNotContains(r, "ann@example.com")
        r = self.get("?contact=ANN@example.com")
        self.assertContains(r, "signed-up")
        self.assertNotContains(r, ">paid<")
        r = self.get("?kind=opened")
        self.assertContains(r, "No events match")
        r = self.get("?contact=nobody@example.com")
        self.assertContains(r, "There is no contact")

    def test_pages_go_by_keyset_and_only_the_first_polls(self) -> None:
        for i in range(55):
            track(self.project, f"e{i}", "ann@example.com", None, {}, None)
        r = self.get()
        self.assertContains(r, ">e54<")
        self.assertNotContains(r, ">e4<")
        after = r.context["page"].next_cursor
        r = self.get(f"?after={after}")
        self.assertContains(r, ">e4<")
        self.assertNotContains(r, 'hx-trigger="every')

    def test_the_live_fragment_is_the_list_alone(self) -> None:
        track(self.project, "signed-up", "ann@example.com", None, {}, None)
        r = self.get(HTTP_HX_REQUEST="true")
        self.assertContains(r, 'id="events-live"')
        self.assertNotContains(r, "<html")
        self.assertEqual(r["Cache-Control"], "no-store")

    def test_a_failing_query_shows_an_error_not_a_spinner(self) -> None:
        with mock.patch(
            "postroom.tracking.dashboard.filtered_events", side_effect=OperationalError("disk I/O")
        ):
            r = self.get()
        self.assertContains(r, "The events could not be loaded: disk I/O")
        self.assertContains(r, 'role="alert"')
        self.assertContains(r, 'hx-trigger="every 5s"')  # and it tries again

    def test_a_slow_query_ends_in_an_error(self) -> None:
        slow = QueryTooSlow("the query took longer than 5 s")
        with mock.patch("postroom.tracking.dashboard.filtered_events", side_effect=slow):
            r = self.get()
        self.assertContains(r, "could not be loaded in time: the query took longer than 5 s")

    def test_another_projects_events_are_not_shown(self) -> None:
        track(self.charlies_project, "secret", "zed@example.com", None, {}, None)
        r = self.get()
        self.assertNotContains(r, "zed@example.com")
        self.client.force_login(self.charlie)
        self.assertEqual(self.get().status_code, 404)

    def test_the_contact_page_shows_the_contacts_events(self) -> None:
        track(self.project, "signed-up", "ann@example.com", None, {}, None)
        contact = Event.objects.get().contact
        r = self.client.get(self.url(f"contacts/{contact.code}/"))
        self.assertContains(r, "Event “signed-up”")

    def test_scanner_hits_are_flagged_and_can_be_hidden(self) -> None:
        track(self.project, "signed-up", "ann@example.com", None, {}, None)
        event = Event.objects.get()
        Event.objects.create(
            project=self.project, kind=Event.Kind.OPENED, contact=event.contact, machine=True
        )
        r = self.get()
        self.assertContains(r, "scanner?")
        r = self.get("?people=1")
        self.assertNotContains(r, "scanner?")
        self.assertContains(r, "signed-up")
