from __future__ import annotations

from datetime import timedelta as td
from unittest import mock

from django.utils import timezone

from postroom.contacts import actions
from postroom.contacts.actions import ContactFilter, handle_one_bulk_action, queue_bulk_action
from postroom.contacts.models import BulkAction, Contact, ContactTag, Status
from postroom.test import BaseTestCase


class BulkTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.contacts = [
            self.make_contact(f"c{i}@example.com", first_name="Ann" if i % 2 else "Bob")
            for i in range(10)
        ]
        self.outsider = self.make_contact(
            "c1@example.com", project=self.charlies_project, first_name="Ann"
        )
        self.login()

    def test_it_tags_the_ticked_contacts_in_the_request(self) -> None:
        codes = [str(c.code) for c in self.contacts[:3]]
        r = self.client.post(
            self.url("contacts/bulk/"),
            {"action": "tag", "bulk_tag": "vip", "contact": codes, "scope": "selected"},
        )
        self.assertRedirects(r, self.url("contacts/"))
        self.assertEqual(ContactTag.objects.filter(tag__name="vip").count(), 3)

    def test_it_ignores_ticked_codes_of_another_project(self) -> None:
        self.client.post(
            self.url("contacts/bulk/"),
            {"action": "delete", "contact": [str(self.outsider.code)], "scope": "selected"},
        )
        self.assertTrue(Contact.objects.filter(id=self.outsider.id).exists())

    def test_it_queues_an_action_on_all_matching_for_the_worker(self) -> None:
        r = self.client.post(
            self.url("contacts/bulk/"), {"action": "unsubscribe", "scope": "all", "q": "ann"}
        )
        bulk = BulkAction.objects.get()
        self.assertRedirects(r, self.url(f"contacts/bulk/{bulk.code}/"))
        self.assertContains(
            self.client.get(self.url(f"contacts/bulk/{bulk.code}/")), "Waiting for the worker"
        )
        while handle_one_bulk_action():
            pass
        bulk.refresh_from_db()
        self.assertEqual((bulk.state, bulk.total, bulk.processed), ("done", 5, 5))
        self.assertEqual(
            Contact.objects.filter(project=self.project, status=Status.UNSUBSCRIBED).count(), 5
        )
        self.outsider.refresh_from_db()
        self.assertEqual(self.outsider.status, Status.SUBSCRIBED)
        self.assertContains(self.client.get(self.url(f"contacts/bulk/{bulk.code}/")), "Done")

    def test_it_resumes_after_a_crash_without_repeating_work(self) -> None:
        bulk = queue_bulk_action(self.project, "tag", "big", ContactFilter(), self.alice)
        with mock.patch.object(actions, "BULK_CHUNK", 4):
            self.assertTrue(handle_one_bulk_action())  # first chunk of 4
            bulk.refresh_from_db()
            self.assertEqual((bulk.processed, bulk.state), (4, "running"))
            # The worker dies mid-chunk: apply_bulk raises, so the chunk's transaction rolls back.
            dies = mock.patch.object(actions, "apply_bulk", side_effect=KeyboardInterrupt)
            with dies, self.assertRaises(KeyboardInterrupt):
                handle_one_bulk_action()
            bulk.refresh_from_db()
            self.assertEqual(bulk.processed, 4)
            # Its lease is held until it expires; then any worker resumes from the checkpoint.
            self.assertIsNone(actions.claim_bulk_action())
            BulkAction.objects.filter(pk=bulk.pk).update(lease_until=timezone.now() - td(seconds=1))
            while handle_one_bulk_action():
                pass
        bulk.refresh_from_db()
        self.assertEqual((bulk.state, bulk.processed, bulk.total), ("done", 10, 10))
        self.assertEqual(ContactTag.objects.filter(tag__name="big").count(), 10)

    def test_a_worker_that_lost_its_lease_changes_nothing(self) -> None:
        bulk = queue_bulk_action(self.project, "tag", "late", ContactFilter(), self.alice)
        stalled = actions.claim_bulk_action()
        # The first worker stalls past its lease; a second one takes over and finishes.
        BulkAction.objects.filter(pk=bulk.pk).update(lease_until=timezone.now() - td(seconds=1))
        while handle_one_bulk_action():
            pass
        bulk.refresh_from_db()
        self.assertEqual((bulk.state, bulk.processed), ("done", 10))
        ContactTag.objects.filter(tag__name="late").delete()
        # The stalled worker wakes up: its chunk and checkpoint are refused together.
        with self.assertRaises(actions.LeaseLost):
            actions.run_bulk_chunk(stalled)
        bulk.refresh_from_db()
        self.assertEqual((bulk.state, bulk.processed), ("done", 10))
        self.assertFalse(ContactTag.objects.filter(tag__name="late").exists())

    def test_a_database_error_leaves_the_action_to_retry(self) -> None:
        from django.db import OperationalError

        bulk = queue_bulk_action(self.project, "tag", "x", ContactFilter(), self.alice)
        with mock.patch.object(actions, "apply_bulk", side_effect=OperationalError("locked")):
            self.assertFalse(handle_one_bulk_action())
        bulk.refresh_from_db()
        self.assertEqual(bulk.state, "running")
        BulkAction.objects.filter(pk=bulk.pk).update(lease_until=timezone.now() - td(seconds=1))
        while handle_one_bulk_action():
            pass
        bulk.refresh_from_db()
        self.assertEqual((bulk.state, bulk.processed), ("done", 10))

    def test_malformed_codes_are_ignored(self) -> None:
        codes = ["not-a-uuid", str(self.contacts[0].code)]
        r = self.client.post(
            self.url("contacts/bulk/"),
            {"action": "tag", "bulk_tag": "t", "contact": codes, "scope": "selected"},
        )
        self.assertEqual(r.status_code, 302)
        self.assertEqual(ContactTag.objects.filter(tag__name="t").count(), 1)

    def test_a_second_worker_cannot_claim_a_leased_action(self) -> None:
        queue_bulk_action(self.project, "delete", "", ContactFilter(), self.alice)
        first = actions.claim_bulk_action()
        self.assertIsNotNone(first)
        self.assertIsNone(actions.claim_bulk_action())

    def test_it_deletes_all_matching(self) -> None:
        queue_bulk_action(self.project, "delete", "", ContactFilter(q="bob"), self.alice)
        while handle_one_bulk_action():
            pass
        self.assertEqual(Contact.objects.filter(project=self.project).count(), 5)
        self.assertTrue(Contact.objects.filter(id=self.outsider.id).exists())

    def test_it_requires_a_tag_name_to_tag(self) -> None:
        r = self.client.post(
            self.url("contacts/bulk/"),
            {"action": "tag", "bulk_tag": "", "scope": "all"},
            follow=True,
        )
        self.assertContains(r, "name the tag")
        self.assertFalse(BulkAction.objects.exists())

    def test_it_shows_an_eta_while_running(self) -> None:
        bulk = BulkAction.objects.create(
            project=self.project,
            kind="tag",
            tag_name="x",
            state="running",
            total=1000,
            processed=100,
            started_at=timezone.now() - td(seconds=10),
        )
        self.assertAlmostEqual(bulk.eta_seconds(), 90, delta=2)
        self.assertEqual(bulk.progress_percent(), 10)
        self.assertContains(self.client.get(self.url(f"contacts/bulk/{bulk.code}/")), "100 of 1000")
