"""upsert_contact_row (one SQL statement, track's hot path) is held to upsert_contact (the
ORM reference): the same contact comes out of the same start and the same call."""

from __future__ import annotations

import itertools

from postroom.accounts.actions import create_project
from postroom.contacts.actions import Upsert, upsert_contact, upsert_contact_row
from postroom.contacts.models import Contact, Status
from postroom.test import BaseTestCase

STARTS = [
    None,  # no contact yet
    {"status": Status.SUBSCRIBED, "first_name": "Ann", "data": {"plan": "free", "seats": 2}},
    {"status": Status.UNSUBSCRIBED, "last_name": "Lee", "data": {}},
    {"status": Status.BOUNCED, "data": {"plan": "pro"}},
]
CALLS = [
    Upsert(),
    Upsert(subscribed=True, data={"plan": "team"}, consent_ip="192.0.2.1"),
    Upsert(subscribed=False, first_name="Bea", data={"plan": None}),
    Upsert(subscribed_if_new=False, last_name="", data={"seats": 5, "city": "Oslo"}),
]
COMPARED = (
    "status",
    "status_reason",
    "first_name",
    "last_name",
    "data",
    "consent_source",
    "consent_ip",
)


class UpsertContactRowTestCase(BaseTestCase):
    def outcome(self, project, start: dict | None, call: Upsert, lean: bool) -> dict:
        email = "ann@example.com"
        Contact.objects.filter(project=project).delete()
        if start is not None:
            self.make_contact(email, project=project, create_fields=True, **start)
        if lean:
            upsert_contact_row(project, "Ann@Example.com", call)
        else:
            upsert_contact(project, "Ann@Example.com", call)
        contact = Contact.objects.get(project=project, email=email)
        seen = {name: getattr(contact, name) for name in COMPARED}
        seen["has_consent_at"] = contact.consent_at is not None
        seen["has_status_changed_at"] = contact.status_changed_at is not None
        return seen

    def test_it_does_what_the_orm_reference_does(self) -> None:
        reference_project, _ = create_project("Reference", self.alice)
        for start, call in itertools.product(STARTS, CALLS):
            with self.subTest(start=start, call=call):
                expected = self.outcome(reference_project, start, call, lean=False)
                self.assertEqual(self.outcome(self.project, start, call, lean=True), expected)

    def test_it_returns_the_contacts_id_and_code(self) -> None:
        contact_id, code = upsert_contact_row(self.project, "ann@example.com", Upsert())
        contact = Contact.objects.get()
        self.assertEqual((contact_id, code), (contact.id, contact.code))
        again = upsert_contact_row(self.project, "ANN@example.com", Upsert(data={"a": 1}))
        self.assertEqual(again, (contact.id, contact.code))

    def test_it_touches_updated_at_only_when_asked_to_change_something(self) -> None:
        upsert_contact_row(self.project, "ann@example.com", Upsert())
        before = Contact.objects.get().updated_at
        upsert_contact_row(self.project, "ann@example.com", Upsert())
        self.assertEqual(Contact.objects.get().updated_at, before)
        upsert_contact_row(self.project, "ann@example.com", Upsert(data={"plan": "pro"}))
        self.assertGreater(Contact.objects.get().updated_at, before)


class FieldDefinitionsCacheTestCase(BaseTestCase):
    """Outside a transaction (as track runs), a project's field definitions are read once
    every few seconds; a change made in this process is seen at once."""

    def test_it_is_read_once_and_forgotten_when_a_field_changes(self) -> None:
        from unittest import mock

        from postroom.contacts import actions
        from postroom.contacts.models import FieldDefinition

        # The test runs in a transaction: have the cache believe it does not.
        with mock.patch.object(actions, "outside_transactions", return_value=True):
            actions.create_field(self.project, "plan", "Plan", "text")
            self.assertEqual(set(actions.field_definitions(self.project)), {"plan"})
            with self.assertNumQueries(0):
                actions.field_definitions(self.project)
            FieldDefinition.objects.filter(key="plan").delete()
            self.assertEqual(actions.field_definitions(self.project), {})
            actions.create_field(self.project, "seats", "Seats", "number")
            with self.assertNumQueries(1):
                self.assertEqual(set(actions.field_definitions(self.project)), {"seats"})
            later = actions.time.monotonic() + actions.FIELDS_CACHE_SECONDS + 1
            clock = mock.patch.object(actions.time, "monotonic", return_value=later)
            with clock, self.assertNumQueries(1):
                actions.field_definitions(self.project)

    def test_a_field_another_process_made_is_read_again_once_met(self) -> None:
        from unittest import mock

        from postroom.contacts import actions
        from postroom.contacts.models import FieldDefinition

        with mock.patch.object(actions, "outside_transactions", return_value=True):
            self.assertEqual(actions.field_definitions(self.project), {})  # cached, empty
            # Another process adds "plan" (bulk_create: no signal reaches this process).
            FieldDefinition.objects.bulk_create(
                [FieldDefinition(project=self.project, key="plan", label="Plan", type="text")]
            )
            self.assertEqual(actions.clean_data(self.project, {"plan": "pro"}, create_fields=True),
                             {"plan": "pro"})  # fmt: skip
            with self.assertNumQueries(1):  # the stale cache was dropped: read once more
                actions.clean_data(self.project, {"plan": "team"}, create_fields=True)
            with self.assertNumQueries(0):
                actions.clean_data(self.project, {"plan": "free"}, create_fields=True)

    def test_inside_a_transaction_it_always_reads(self) -> None:
        from postroom.contacts import actions

        with self.assertNumQueries(1):
            actions.field_definitions(self.project)
        with self.assertNumQueries(1):
            actions.field_definitions(self.project)
