from __future__ import annotations

from postroom.contacts.actions import create_field
from postroom.contacts.models import Contact, ContactTag, Status, Suppression
from postroom.test import BaseTestCase


class ContactListTestCase(BaseTestCase):
    def test_the_empty_state_says_what_to_do(self) -> None:
        self.login()
        r = self.client.get(self.url("contacts/"))
        self.assertContains(r, "No contacts yet")
        self.assertContains(r, "/api/v1/contacts")

    def test_it_searches_and_filters(self) -> None:
        self.make_contact("ann@example.com", first_name="Ann", tags=["beta"])
        self.make_contact("bob@example.com", first_name="Bob", status=Status.UNSUBSCRIBED)
        self.login()
        r = self.client.get(self.url("contacts/"), {"q": "ANN"})
        self.assertContains(r, "ann@example.com")
        self.assertNotContains(r, "bob@example.com")
        r = self.client.get(self.url("contacts/"), {"status": "unsubscribed"})
        self.assertContains(r, "bob@example.com")
        self.assertNotContains(r, "ann@example.com")
        r = self.client.get(self.url("contacts/"), {"tag": "beta"})
        self.assertContains(r, "ann@example.com")
        self.assertNotContains(r, "bob@example.com")
        r = self.client.get(self.url("contacts/"), {"q": "zzz"})
        self.assertContains(r, "No contacts match")

    def test_a_search_finds_the_whole_name_in_any_case(self) -> None:
        self.make_contact("a1@example.com", first_name="Ann", last_name="Lee")
        self.make_contact("a2@example.com", first_name="Ann", last_name="Smith")
        self.make_contact("e1@example.com", first_name="Élodie", last_name="Dupré")
        self.login()
        for q, found in (
            ("ann lee", {"a1@example.com"}),
            ("LEE", {"a1@example.com"}),
            ("Ann", {"a1@example.com", "a2@example.com"}),
            ("Élodie Dupré", {"e1@example.com"}),
        ):
            with self.subTest(q):
                r = self.client.get(self.url("contacts/"), {"q": q})
                self.assertEqual({c.email for c in r.context["page"].items}, found)

    def test_it_pages_with_keysets(self) -> None:
        for i in range(55):
            Contact.objects.create(project=self.project, email=f"c{i:02d}@example.com")
        self.login()
        first = self.client.get(self.url("contacts/"))
        self.assertContains(first, "c54@example.com")
        self.assertNotContains(first, "c04@example.com")
        after = first.context["page"].next_cursor
        second = self.client.get(self.url("contacts/"), {"after": after})
        self.assertContains(second, "c04@example.com")
        self.assertContains(second, "c00@example.com")
        self.assertNotContains(second, "c05@example.com")
        back = self.client.get(
            self.url("contacts/"), {"before": second.context["page"].prev_cursor}
        )
        self.assertContains(back, "c54@example.com")
        self.assertContains(back, "c05@example.com")

    def test_a_garbled_cursor_shows_the_first_page(self) -> None:
        self.make_contact()
        self.login()
        self.assertContains(
            self.client.get(self.url("contacts/"), {"after": "%%%"}), "ann@example.com"
        )

    def test_the_count_is_a_fragment(self) -> None:
        self.make_contact("ann@example.com")
        self.make_contact("bob@example.com")
        self.login()
        self.assertContains(self.client.get(self.url("contacts/count/")), "2 contacts")
        self.assertContains(
            self.client.get(self.url("contacts/count/"), {"q": "ann"}), "1 contact matches"
        )

    def test_it_escapes_user_text(self) -> None:
        self.make_contact("x@example.com", first_name="<script>alert(1)</script>")
        self.login()
        r = self.client.get(self.url("contacts/"))
        self.assertNotContains(r, "<script>alert(1)</script>")
        self.assertContains(r, "&lt;script&gt;")


class ContactEditTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        create_field(self.project, "age", "Age", "number")
        create_field(self.project, "vip", "VIP", "boolean")
        self.contact = self.make_contact("ann@example.com", first_name="Ann", data={"age": 30})
        self.login()

    def form(self, **changes) -> dict:
        data = {
            "email": "ann@example.com",
            "first_name": "Ann",
            "last_name": "",
            "status": "subscribed",
            "tags": "",
            "data__age": "30",
            "data__vip": "",
        }
        data.update(changes)
        return data

    def test_it_adds_a_contact(self) -> None:
        r = self.client.post(
            self.url("contacts/new/"),
            self.form(email=" Dana@Example.COM ", tags="a, b", data__age="41"),
        )
        dana = Contact.objects.get(email="dana@example.com")
        self.assertRedirects(r, self.url(f"contacts/{dana.code}/"))
        self.assertEqual(dana.data, {"age": 41})
        self.assertEqual(sorted(dana.tags.values_list("name", flat=True)), ["a", "b"])
        self.assertEqual(dana.consent_source, "manual")

    def test_it_refuses_a_duplicate_in_any_case(self) -> None:
        r = self.client.post(self.url("contacts/new/"), self.form(email="ANN@example.com"))
        self.assertContains(r, "already a contact")
        self.assertEqual(Contact.objects.filter(project=self.project).count(), 1)

    def test_it_rejects_a_row_pasted_into_the_email(self) -> None:
        r = self.client.post(self.url("contacts/new/"), self.form(email="a@b.com;Ann;Lee"))
        self.assertContains(r, "several values in one field")

    def test_it_edits_fields_and_custom_data(self) -> None:
        r = self.client.post(
            self.url(f"contacts/{self.contact.code}/"),
            self.form(first_name="Anna", data__age="31", data__vip="yes", tags="x"),
        )
        self.assertRedirects(r, self.url(f"contacts/{self.contact.code}/"))
        self.contact.refresh_from_db()
        self.assertEqual(self.contact.first_name, "Anna")
        self.assertEqual(self.contact.data, {"age": 31, "vip": True})

    def test_a_bad_typed_value_names_the_field_and_saves_nothing(self) -> None:
        r = self.client.post(
            self.url(f"contacts/{self.contact.code}/"),
            self.form(first_name="Changed", data__age="thirty"),
        )
        self.assertContains(r, "expected a number")
        self.contact.refresh_from_db()
        self.assertEqual(self.contact.first_name, "Ann")

    def test_clearing_a_custom_value_removes_it(self) -> None:
        self.client.post(self.url(f"contacts/{self.contact.code}/"), self.form(data__age=""))
        self.contact.refresh_from_db()
        self.assertEqual(self.contact.data, {})

    def test_changing_status_records_when(self) -> None:
        self.client.post(
            self.url(f"contacts/{self.contact.code}/"), self.form(status="unsubscribed")
        )
        self.contact.refresh_from_db()
        self.assertEqual(self.contact.status, "unsubscribed")
        self.assertIsNotNone(self.contact.status_changed_at)
        r = self.client.get(self.url(f"contacts/{self.contact.code}/"))
        self.assertContains(r, "Became unsubscribed")

    def test_the_page_shows_a_timeline(self) -> None:
        r = self.client.get(self.url(f"contacts/{self.contact.code}/"))
        self.assertContains(r, "Contact created")
        self.assertContains(r, "Consent given (Added by hand)")

    def test_delete_asks_then_erases(self) -> None:
        self.client.post(self.url(f"contacts/{self.contact.code}/"), self.form(tags="t"))
        r = self.client.get(self.url(f"contacts/{self.contact.code}/delete/"))
        self.assertContains(r, "cannot be undone")
        self.assertTrue(Contact.objects.filter(id=self.contact.id).exists())
        r = self.client.post(self.url(f"contacts/{self.contact.code}/delete/"))
        self.assertRedirects(r, self.url("contacts/"))
        self.assertFalse(Contact.objects.filter(id=self.contact.id).exists())
        self.assertFalse(ContactTag.objects.filter(contact_id=self.contact.id).exists())

    def test_a_member_can_work_with_contacts(self) -> None:
        self.login(self.bob)
        self.assertEqual(
            self.client.get(self.url(f"contacts/{self.contact.code}/")).status_code, 200
        )


class FieldsAndSuppressionsTestCase(BaseTestCase):
    def test_it_defines_a_custom_field(self) -> None:
        self.login()
        self.client.post(
            self.url("contacts/fields/"), {"key": "plan", "label": "Plan", "type": "text"}
        )
        self.assertContains(self.client.get(self.url("contacts/fields/")), "contact.plan")
        r = self.client.post(
            self.url("contacts/fields/"), {"key": "plan", "label": "Plan", "type": "text"}
        )
        self.assertContains(r, "already a field")

    def test_it_suppresses_and_unsuppresses(self) -> None:
        self.login()
        self.assertContains(self.client.get(self.url("suppressions/")), "suppression list is empty")
        self.client.post(self.url("suppressions/"), {"email": "Spam@Example.com", "note": "asked"})
        s = Suppression.objects.get(project=self.project)
        self.assertEqual(s.email, "spam@example.com")
        self.assertContains(self.client.get(self.url("suppressions/")), "spam@example.com")
        self.client.post(self.url(f"suppressions/{s.id}/delete/"))
        self.assertFalse(Suppression.objects.exists())

    def test_it_rejects_a_bad_address_for_suppression(self) -> None:
        self.login()
        self.assertContains(
            self.client.post(self.url("suppressions/"), {"email": "nope"}), "@-sign"
        )
