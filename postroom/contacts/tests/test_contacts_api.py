from __future__ import annotations

from postroom.contacts.models import Contact, FieldDefinition
from postroom.test import BaseTestCase


class ContactsApiTestCase(BaseTestCase):
    def test_it_creates_a_contact(self) -> None:
        r = self.api(
            "POST",
            "contacts",
            {
                "email": "Ann@Example.com",
                "first_name": "Ann",
                "tags": ["a"],
                "data": {"plan": "pro", "seats": 3, "trial": False},
            },
        )
        self.assertEqual(r.status_code, 201, r.content)
        body = r.json()
        self.assertEqual(body["email"], "ann@example.com")
        self.assertEqual(body["tags"], ["a"])
        self.assertEqual(body["consent"]["source"], "api")
        self.assertTrue(body["subscribed"])
        types = dict(
            FieldDefinition.objects.filter(project=self.project).values_list("key", "type")
        )
        self.assertEqual(types, {"plan": "text", "seats": "number", "trial": "boolean"})

    def test_a_duplicate_is_a_409(self) -> None:
        self.make_contact("ann@example.com")
        r = self.api("POST", "contacts", {"email": "ANN@example.com"})
        self.assertEqual(r.status_code, 409)
        self.assertEqual(r.json()["code"], "conflict")
        self.assertEqual(r.json()["errors"][0]["field"], "email")

    def test_bad_input_is_a_422_naming_the_field(self) -> None:
        cases = [
            ({"email": "a@b.com;Ann;Lee"}, "email"),
            ({"email": "ann@example.com", "status": "happy"}, "status"),
            ({"first_name": "x"}, "email"),
            ({"email": "ann@example.com", "tags": "notalist"}, "tags"),
            ({"email": "ann@example.com", "data": {"Bad Key!": 1}}, "data.bad_key!"),
        ]
        for body, field in cases:
            r = self.api("POST", "contacts", body)
            self.assertEqual(r.status_code, 422, body)
            self.assertIn(field, [e["field"] for e in r.json()["errors"]], r.json())
            self.assertTrue(r.json()["message"])
        self.assertEqual(Contact.objects.count(), 0)

    def test_a_typed_field_rejects_the_wrong_type(self) -> None:
        self.api("POST", "contacts", {"email": "a@example.com", "data": {"seats": 3}})
        r = self.api("POST", "contacts", {"email": "b@example.com", "data": {"seats": "many"}})
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "data.seats")

    def test_malformed_json_is_a_4xx(self) -> None:
        r = self.client.post(
            "/api/v1/contacts",
            "{not json",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
        )
        self.assertIn(r.status_code, (400, 422))
        self.assertIn("message", r.json())

    def test_it_lists_with_a_cursor_and_filters(self) -> None:
        for i in range(5):
            self.make_contact(f"c{i}@example.com", tags=["even"] if i % 2 == 0 else [])
        r = self.api("GET", "contacts", {"limit": 2})
        self.assertEqual([c["email"] for c in r.json()], ["c4@example.com", "c3@example.com"])
        self.assertIn('rel="next"', r["Link"])
        r = self.api("GET", "contacts", {"limit": 2, "cursor": r["X-Next-Cursor"]})
        self.assertEqual([c["email"] for c in r.json()], ["c2@example.com", "c1@example.com"])
        last = self.client.get(
            r["Link"].split(">")[0][1:], HTTP_AUTHORIZATION=f"Bearer {self.secret_key}"
        )
        self.assertEqual([c["email"] for c in last.json()], ["c0@example.com"])
        self.assertNotIn("Link", last)
        r = self.api("GET", "contacts", {"tag": "even"})
        self.assertEqual(len(r.json()), 3)
        self.assertEqual(self.api("GET", "contacts", {"limit": 0}).status_code, 422)
        self.assertEqual(self.api("GET", "contacts", {"status": "x"}).status_code, 422)

    def test_it_gets_updates_and_deletes(self) -> None:
        c = self.make_contact("ann@example.com", data={"plan": "free"}, create_fields=True)
        self.assertEqual(self.api("GET", f"contacts/{c.code}").json()["email"], "ann@example.com")
        r = self.api(
            "PATCH",
            f"contacts/{c.code}",
            {"last_name": "Lee", "data": {"plan": None, "seats": 2}, "status": "unsubscribed"},
        )
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["data"], {"seats": 2})
        self.assertEqual(r.json()["status_reason"], "Changed through the API")
        r = self.api("DELETE", f"contacts/{c.code}")
        self.assertEqual((r.json()["success"], r.json()["id"]), (True, str(c.code)))
        self.assertEqual(self.api("GET", f"contacts/{c.code}").status_code, 404)

    def test_an_unknown_or_malformed_id_is_a_404(self) -> None:
        self.assertEqual(self.api("GET", "contacts/not-a-uuid").status_code, 404)
        self.assertEqual(
            self.api("GET", "contacts/00000000-0000-0000-0000-000000000000").status_code, 404
        )


class SegmentsApiTestCase(BaseTestCase):
    def test_it_creates_counts_updates_and_deletes(self) -> None:
        self.make_contact("ann@example.com", tags=["vip"])
        self.make_contact("bob@example.com", status="unsubscribed", tags=["vip"])
        self.make_contact("cy@example.com")
        rules = {"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]}
        r = self.api("POST", "segments", {"name": "VIPs", "rules": rules})
        self.assertEqual(r.status_code, 201, r.content)
        code = r.json()["id"]
        self.assertEqual(
            self.api("GET", f"segments/{code}/count").json(), {"total": 2, "subscribed": 1}
        )
        r = self.api("PATCH", f"segments/{code}", {"rules": {"match": "all", "rules": []}})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(self.api("GET", f"segments/{code}/count").json()["total"], 3)
        self.assertEqual([s["name"] for s in self.api("GET", "segments").json()], ["VIPs"])
        self.assertEqual(self.api("DELETE", f"segments/{code}").status_code, 200)
        self.assertEqual(self.api("GET", f"segments/{code}").status_code, 404)

    def test_a_malformed_rule_is_a_422_naming_it(self) -> None:
        rules = {
            "match": "all",
            "rules": [
                {"kind": "email", "op": "exists"},
                {"kind": "tag", "op": "maybe", "value": "x"},
            ],
        }
        r = self.api("POST", "segments", {"name": "Bad", "rules": rules})
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "rules.rules[1]")
        self.assertIn("unknown operator", r.json()["message"])

    def test_a_segment_whose_field_was_removed_reports_it(self) -> None:
        from postroom.contacts.actions import create_field
        from postroom.contacts.models import FieldDefinition

        create_field(self.project, "age", "Age", "number")
        rules = {"match": "all", "rules": [{"kind": "field", "key": "age", "op": "gt", "value": 3}]}
        code = self.api("POST", "segments", {"name": "Adults", "rules": rules}).json()["id"]
        FieldDefinition.objects.filter(key="age").delete()
        r = self.api("GET", f"segments/{code}/count")
        self.assertEqual(r.status_code, 409)
        self.assertIn("no custom field 'age'", r.json()["message"])


class OpenApiTestCase(BaseTestCase):
    def test_the_schema_and_docs_render(self) -> None:
        schema = self.client.get("/api/openapi.json").json()
        self.assertIn("/api/v1/contacts", schema["paths"])
        self.assertEqual(self.client.get("/api/docs").status_code, 200)


class OddInputApiTestCase(BaseTestCase):
    def test_nested_and_non_finite_values_are_422(self) -> None:
        for data in ({"x": {"a": 1}}, {"x": [1, 2]}):
            r = self.api("POST", "contacts", {"email": "a@example.com", "data": data})
            self.assertEqual(r.status_code, 422, data)
        self.api("POST", "contacts", {"email": "b@example.com", "data": {"n": 1}})
        r = self.client.post(
            "/api/v1/contacts",
            '{"email": "c@example.com", "data": {"n": NaN}}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
        )
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "data")
        self.assertIn("n: nan", r.json()["message"])

    def test_blank_segment_names_and_deep_rules_are_4xx(self) -> None:
        r = self.api("POST", "segments", {"name": "   ", "rules": {"match": "all", "rules": []}})
        self.assertEqual(r.status_code, 422)
        deep = '{"name": "x", "rules": ' + "[" * 100_000 + "]" * 100_000 + "}"
        r = self.client.post(
            "/api/v1/segments",
            deep,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
        )
        self.assertIn(r.status_code, (400, 422))
        self.assertIn("message", r.json())

    def test_field_keys_must_be_simple(self) -> None:
        # camelCase and spaces are understood (Plunk's keys): planName -> plan_name.
        for key in ("a__b", "2024", "_x", "a!"):
            r = self.api("POST", "contacts", {"email": "a@example.com", "data": {key: 1}})
            self.assertEqual(r.status_code, 422, key)


class FieldsApiTestCase(BaseTestCase):
    def test_it_lists_adds_and_removes_fields(self) -> None:
        r = self.api("POST", "fields", {"key": "signup_date", "type": "date"})
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(r.json(), {"key": "signup_date", "label": "signup_date", "type": "date"})
        self.assertEqual([f["key"] for f in self.api("GET", "fields").json()], ["signup_date"])
        self.assertEqual(self.api("POST", "fields", {"key": "signup_date"}).status_code, 409)
        self.assertEqual(self.api("DELETE", "fields/signup_date").status_code, 200)
        self.assertEqual(self.api("GET", "fields").json(), [])
        self.assertEqual(self.api("DELETE", "fields/signup_date").status_code, 404)

    def test_bad_keys_and_types_are_a_422(self) -> None:
        for body, field in [({"key": "Bad Key"}, "key"), ({"key": "a", "type": "blob"}, "type")]:
            r = self.api("POST", "fields", body)
            self.assertEqual(r.status_code, 422, body)
            self.assertEqual(r.json()["errors"][0]["field"], field)

    def test_another_projects_fields_are_not_seen(self) -> None:
        FieldDefinition.objects.create(project=self.charlies_project, key="plan", label="Plan")
        self.assertEqual(self.api("GET", "fields").json(), [])
        self.assertEqual(self.api("DELETE", "fields/plan").status_code, 404)
        self.assertTrue(FieldDefinition.objects.filter(key="plan").exists())


class SuppressionsApiTestCase(BaseTestCase):
    def test_it_adds_lists_and_removes_addresses(self) -> None:
        r = self.api("POST", "suppressions", {"email": "Ann@Example.com", "note": "asked"})
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual((r.json()["email"], r.json()["reason"]), ("ann@example.com", "manual"))
        for i in range(3):
            self.api("POST", "suppressions", {"email": f"u{i}@example.com"})
        page = self.api("GET", "suppressions", {"limit": 2}).json()
        self.assertEqual(len(page["items"]), 2)
        rest = self.api("GET", "suppressions", {"limit": 2, "cursor": page["next_cursor"]}).json()
        self.assertEqual(len(rest["items"]), 2)
        self.assertEqual(len(self.api("GET", "suppressions", {"q": "ann"}).json()["items"]), 1)
        self.assertEqual(self.api("DELETE", "suppressions/ann@example.com").status_code, 200)
        self.assertEqual(self.api("DELETE", "suppressions/ann@example.com").status_code, 404)

    def test_a_bad_address_is_a_422(self) -> None:
        r = self.api("POST", "suppressions", {"email": "a@b.com;Ann"})
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "email")

    def test_another_projects_suppressions_are_not_seen(self) -> None:
        self.api("POST", "suppressions", {"email": "ann@example.com"}, key=self.charlies_secret_key)
        self.assertEqual(self.api("GET", "suppressions").json()["items"], [])
        self.assertEqual(self.api("DELETE", "suppressions/ann@example.com").status_code, 404)
