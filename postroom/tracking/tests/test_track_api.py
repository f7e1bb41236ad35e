from __future__ import annotations

from postroom.contacts.models import Contact, FieldDefinition, Status
from postroom.test import BaseTestCase
from postroom.tracking.models import Event


class TrackApiTestCase(BaseTestCase):
    def track(self, body: dict, key: str | None = None, **extra):
        return self.api("POST", "track", body, key=key, **extra)

    def test_it_creates_the_contact_and_records_the_event(self) -> None:
        r = self.track({"event": "signed-up", "email": "Ann@Example.com", "data": {"plan": "pro"}})
        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual(set(body), {"success", "contact", "event", "timestamp"})
        self.assertTrue(body["success"])
        contact = Contact.objects.get(project=self.project, email="ann@example.com")
        self.assertEqual(body["contact"], str(contact.code))
        self.assertEqual(contact.status, Status.SUBSCRIBED)
        self.assertEqual(contact.consent_source, "api")
        self.assertEqual(contact.data, {"plan": "pro"})
        event = Event.objects.get(project=self.project)
        self.assertEqual(body["event"], str(event.code))
        self.assertEqual((event.kind, event.name, event.contact), ("custom", "signed-up", contact))
        self.assertEqual(event.data, {"plan": "pro"})

    def test_it_works_with_the_public_key_and_allows_browsers(self) -> None:
        r = self.track({"event": "viewed", "email": "ann@example.com"}, key=self.project.public_key)
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r["Access-Control-Allow-Origin"], "*")
        preflight = self.client.options(
            "/api/v1/track",
            HTTP_ORIGIN="https://shop.example",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        )
        self.assertEqual(preflight.status_code, 204)
        self.assertIn("Authorization", preflight["Access-Control-Allow-Headers"])

    def test_a_secret_key_response_is_not_opened_to_browsers(self) -> None:
        r = self.track({"event": "viewed", "email": "ann@example.com"})
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("Access-Control-Allow-Origin", r)

    def test_non_persistent_values_stay_on_the_event(self) -> None:
        data = {"orderId": {"value": "o-17", "persistent": False}, "firstName": "Ann"}
        self.track({"event": "ordered", "email": "ann@example.com", "data": data})
        contact = Contact.objects.get(email="ann@example.com")
        self.assertEqual(contact.first_name, "Ann")
        self.assertEqual(contact.data, {})
        self.assertEqual(Event.objects.get().data, {"orderId": "o-17", "firstName": "Ann"})

    def test_camel_case_keys_become_field_keys(self) -> None:
        self.track({"event": "e", "email": "ann@example.com", "data": {"planName": "pro"}})
        self.assertEqual(Contact.objects.get().data, {"plan_name": "pro"})
        self.assertTrue(FieldDefinition.objects.filter(key="plan_name").exists())

    def test_null_removes_a_field_and_an_empty_string_is_ignored(self) -> None:
        data = {"plan": "pro", "city": "Oslo"}
        self.make_contact("ann@example.com", data=data, create_fields=True)
        data = {"plan": None, "city": ""}
        self.track({"event": "e", "email": "ann@example.com", "data": data})
        self.assertEqual(Contact.objects.get().data, {"city": "Oslo"})

    def test_an_existing_contact_keeps_its_status_unless_told(self) -> None:
        self.make_contact("ann@example.com", status=Status.UNSUBSCRIBED)
        self.track({"event": "e", "email": "ann@example.com"})
        self.assertEqual(Contact.objects.get().status, Status.UNSUBSCRIBED)
        self.track({"event": "e", "email": "ann@example.com", "subscribed": True})
        contact = Contact.objects.get()
        self.assertEqual(contact.status, Status.SUBSCRIBED)
        self.assertIn("track", contact.status_reason)
        self.track({"event": "e", "email": "ann@example.com", "subscribed": False})
        self.assertEqual(Contact.objects.get().status, Status.UNSUBSCRIBED)

    def test_a_new_contact_tracked_as_not_subscribed_is_unsubscribed(self) -> None:
        self.track({"event": "e", "email": "ann@example.com", "subscribed": False})
        contact = Contact.objects.get()
        self.assertEqual(contact.status, Status.UNSUBSCRIBED)
        self.assertIsNone(contact.consent_at)

    def test_a_bounced_contact_stays_bounced(self) -> None:
        self.make_contact("ann@example.com", status=Status.BOUNCED)
        self.track({"event": "e", "email": "ann@example.com", "subscribed": True})
        self.assertEqual(Contact.objects.get().status, Status.BOUNCED)

    def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(self) -> None:
        cases = [
            ({"email": "ann@example.com"}, "event"),
            ({"event": "e"}, "email"),
            ({"event": "", "email": "ann@example.com"}, "event"),
            ({"event": "a\nb", "email": "ann@example.com"}, "event"),
            ({"event": "e", "email": "a@b.com;Ann;Lee"}, "email"),
            ({"event": "e", "email": "ann@example.com", "data": []}, "data"),
            ({"event": "e", "email": "ann@example.com", "data": {"tags": [1]}}, "data.tags"),
            ({"event": "e", "email": "ann@example.com", "data": {"bad key!": 1}}, "data.bad key!"),
            ({"event": "e", "email": "ann@example.com", "subscribed": "maybe"}, "subscribed"),
            ({"event": "e", "email": "ann@example.com", "data": {"x": "y" * 20000}}, "data"),
        ]
        for body, field in cases:
            r = self.track(body)
            self.assertEqual(r.status_code, 422, (body, r.content))
            self.assertIn(field, [e["field"] for e in r.json()["errors"]], r.json())
        self.assertFalse(Contact.objects.exists())
        self.assertFalse(Event.objects.exists())

    def test_a_typed_field_rejects_the_wrong_type(self) -> None:
        self.track({"event": "e", "email": "a@example.com", "data": {"seats": 3}})
        r = self.track({"event": "e", "email": "b@example.com", "data": {"seats": "many"}})
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "data.seats")

    def test_it_keeps_projects_apart(self) -> None:
        self.make_contact("ann@example.com", project=self.charlies_project)
        self.track({"event": "e", "email": "ann@example.com"})
        self.assertEqual(Contact.objects.filter(email="ann@example.com").count(), 2)
        self.assertEqual(Event.objects.get().project, self.project)

    def test_text_no_database_can_hold_is_a_422_naming_the_field(self) -> None:
        # NUL went on to PostgreSQL, a lone surrogate to any database: a 500 either way.
        for data in [
            {"plan": "pro\x00"},
            {"plan": {"value": "\ud800", "persistent": False}},
            {"plan\x00": "pro"},
        ]:
            with self.subTest(data=data):
                r = self.track({"event": "e", "email": "ann@example.com", "data": data})
                self.assertEqual(r.status_code, 422, r.content)
                self.assertEqual(r.json()["errors"][0]["field"], "data")
        self.assertFalse(Contact.objects.exists())
        self.assertFalse(Event.objects.exists())

    def test_it_needs_a_key(self) -> None:
        r = self.client.post(
            "/api/v1/track", {"event": "e", "email": "a@example.com"}, "application/json"
        )
        self.assertEqual(r.status_code, 401)


class EventsApiTestCase(BaseTestCase):
    def test_a_nul_in_a_filter_is_a_422(self) -> None:
        # It went on to PostgreSQL: a 500 there.
        r = self.api("GET", "events", {"name": "signed-up\x00"})
        self.assertEqual(r.status_code, 422, r.content)
        self.assertEqual(r.json()["errors"][0]["field"], "name")

    def test_a_time_out_of_range_in_utc_is_a_422(self) -> None:
        # Year 1 at +14:00 is before year 1 in UTC: SQLite's adapter overflowed, a 500.
        for field, value in [
            ("since", "0001-01-01T00:00:00+14:00"),
            ("until", "9999-12-31T23:59:59-14:00"),
        ]:
            with self.subTest(field=field):
                r = self.api("GET", "events", {field: value})
                self.assertEqual(r.status_code, 422, r.content)
                self.assertEqual(r.json()["errors"][0]["field"], field)

    def test_times_with_an_offset_still_filter(self) -> None:
        self.api("POST", "track", {"event": "signed-up", "email": "ann@example.com"})
        past, future = "2000-01-01T00:00:00+14:00", "9999-12-30T00:00:00-14:00"
        self.assertEqual(len(self.api("GET", "events", {"since": past}).json()["items"]), 1)
        self.assertEqual(self.api("GET", "events", {"since": future}).json()["items"], [])
