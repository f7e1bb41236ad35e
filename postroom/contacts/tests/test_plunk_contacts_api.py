"""Plunk's contact endpoints, with its request and response shapes."""

from __future__ import annotations

from postroom.contacts.models import Contact, Status, Suppression
from postroom.test import BaseTestCase


class PlunkContactsApiTestCase(BaseTestCase):
    def test_create_takes_plunks_body_and_answers_with_its_fields(self) -> None:
        body = {"email": "ann@example.com", "subscribed": False, "data": {"firstName": "Ann"}}
        r = self.api("POST", "contacts", body)
        self.assertEqual(r.status_code, 201, r.content)
        out = r.json()
        for key in ("success", "id", "email", "subscribed", "data", "createdAt", "updatedAt"):
            self.assertIn(key, out)
        self.assertEqual((out["success"], out["subscribed"]), (True, False))
        contact = Contact.objects.get()
        self.assertEqual((contact.first_name, contact.status), ("Ann", Status.UNSUBSCRIBED))

    def test_subscribed_and_status_must_agree(self) -> None:
        r = self.api(
            "POST",
            "contacts",
            {"email": "a@example.com", "status": "subscribed", "subscribed": False},
        )
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "status")

    def test_list_is_a_list_of_contacts(self) -> None:
        self.make_contact("ann@example.com")
        r = self.api("GET", "contacts")
        self.assertIsInstance(r.json(), list)
        self.assertEqual(r.json()[0]["email"], "ann@example.com")
        self.assertTrue(r.json()[0]["subscribed"])

    def test_count_works_with_the_public_key(self) -> None:
        self.make_contact("ann@example.com")
        self.make_contact("bea@example.com")
        self.make_contact("cy@example.com", project=self.charlies_project)
        r = self.api("GET", "contacts/count", key=self.project.public_key)
        self.assertEqual(r.json(), {"count": 2})

    def test_put_updates_by_the_id_in_the_body(self) -> None:
        contact = self.make_contact("ann@example.com", data={"plan": "free"}, create_fields=True)
        body = {"id": str(contact.code), "subscribed": False, "data": {"plan": "pro"}}
        r = self.api("PUT", "contacts", body)
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual((r.json()["subscribed"], r.json()["data"]), (False, {"plan": "pro"}))
        self.assertTrue(r.json()["success"])

    def test_delete_erases_by_the_id_in_the_body(self) -> None:
        contact = self.make_contact("ann@example.com")
        r = self.api("DELETE", "contacts", {"id": str(contact.code)})
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["email"], "ann@example.com")
        self.assertFalse(Contact.objects.exists())

    def test_subscribe_and_unsubscribe_by_id_or_email(self) -> None:
        contact = self.make_contact("ann@example.com")
        r = self.api("POST", "contacts/unsubscribe", {"email": "Ann@example.com"})
        self.assertEqual(
            r.json(), {"success": True, "contact": str(contact.code), "subscribed": False}
        )
        contact.refresh_from_db()
        self.assertEqual(contact.status, Status.UNSUBSCRIBED)
        Suppression.objects.create(project=self.project, email=contact.email, reason="unsubscribed")
        r = self.api("POST", "contacts/subscribe", {"id": str(contact.code)})
        self.assertEqual(r.json()["subscribed"], True)
        contact.refresh_from_db()
        self.assertEqual((contact.status, contact.consent_source), (Status.SUBSCRIBED, "api"))
        self.assertFalse(Suppression.objects.exists())

    def test_a_bounced_contact_cannot_be_subscribed(self) -> None:
        self.make_contact("ann@example.com", status=Status.BOUNCED)
        r = self.api("POST", "contacts/subscribe", {"email": "ann@example.com"})
        self.assertEqual(r.status_code, 409)
        self.assertIn("bounced", r.json()["message"])

    def test_subscribe_needs_an_id_or_an_email(self) -> None:
        r = self.api("POST", "contacts/subscribe", {})
        self.assertEqual(r.status_code, 422)
        self.assertEqual(r.json()["errors"][0]["field"], "id")
        r = self.api("POST", "contacts/subscribe", {"email": "nobody@example.com"})
        self.assertEqual(r.status_code, 404)

    def test_another_projects_contact_is_a_404_everywhere(self) -> None:
        theirs = self.make_contact("ann@example.com", project=self.charlies_project)
        ref = {"id": str(theirs.code)}
        for method, path, body in [
            ("PUT", "contacts", ref),
            ("DELETE", "contacts", ref),
            ("POST", "contacts/subscribe", ref),
            ("POST", "contacts/unsubscribe", ref),
            ("POST", "contacts/unsubscribe", {"email": "ann@example.com"}),
        ]:
            self.assertEqual(self.api(method, path, body).status_code, 404, (method, path))
        theirs.refresh_from_db()
        self.assertEqual(theirs.status, Status.SUBSCRIBED)
