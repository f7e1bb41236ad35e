"""Erasing a contact (contacts.actions.erase_contact) from the dashboard and the API: the
address leaves messages and events, its suppression entries keep a hash, and an erased address
that bounced stays suppressed when it is imported, created or sent to again."""

from __future__ import annotations

import json
from datetime import timedelta as td

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from postroom.campaigns.actions import count_audience
from postroom.contacts.actions import ERASED_ADDRESS, erase_contact, suppress
from postroom.contacts.models import Contact, ContactTag, Suppression
from postroom.delivery import sending
from postroom.delivery.models import MailboxMessage, Message
from postroom.imports.models import Import, ImportIssue
from postroom.imports.tests.test_import_files import ImportTestCase
from postroom.imports.tests.test_import_modes import csv_bytes
from postroom.lib.emails import hash_email
from postroom.test import BaseTestCase, drain
from postroom.tracking import actions as tracking
from postroom.tracking import bounces
from postroom.tracking.models import Event

ANN = "ann@example.com"


class ErasedAnn:
    """Ann got a campaign (opened, clicked a link that names her), tracked an event, and her
    address got a message without her that bounced; the address is suppressed for it, and a
    second campaign waits to go to her. Bob is another contact, left alone."""

    def make_ann(self) -> None:
        self.ann = self.make_contact(ANN, first_name="Ann", tags=["vip"])
        self.other = self.make_contact("bob@example.com", first_name="Bob")
        self.first = self.start_campaign(subject="Spring")
        drain()
        self.sent = Message.objects.get(contact=self.ann)
        for kind, url in (("opened", ""), ("clicked", "https://shop.example/?u=ann%40example.com")):
            Event.objects.create(
                project=self.project,
                kind=kind,
                contact=self.ann,
                message=self.sent,
                email_id=self.sent.email_id,
                url=url,
                user_agent="Ann's phone",
            )
        tracking.track(self.project, "viewed", ANN, None, {"page": "/pricing"})
        self.loose = Message.objects.create(
            project=self.project,
            email=self.sent.email,
            sender=self.sent.sender,
            to_email=ANN,
            to_name="Ann",
            state=Message.State.FAILED,
            last_response="550 5.1.1 <ann@example.com>: no such user",
        )
        Event.objects.create(
            project=self.project,
            kind="bounced",
            message=self.loose,
            email_id=self.loose.email_id,
            data={"diagnostic": "<ann@example.com> no such user"},
        )
        self.later = self.start_campaign(name="Later", subject="Summer")
        suppress(self.project, ANN, Suppression.Reason.HARD_BOUNCE, "Bounced: <ann@example.com>")


class EraseContactTestCase(ErasedAnn, BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_ann()

    def test_it_removes_the_address_from_every_message_to_the_contact_or_the_address(self) -> None:
        erasure = erase_contact(self.ann)
        self.assertFalse(Contact.objects.filter(email=ANN).exists())
        self.assertFalse(ContactTag.objects.filter(contact_id=self.ann.id).exists())
        self.assertFalse(Message.objects.filter(to_email=ANN).exists())
        erased = Message.objects.filter(to_email=ERASED_ADDRESS)
        self.assertEqual(erased.count(), 3)
        self.assertEqual(set(erased.values_list("to_name", flat=True)), {""})
        self.loose.refresh_from_db()
        self.assertEqual(self.loose.last_response, f"550 5.1.1 <{ERASED_ADDRESS}>: no such user")
        queued = erased.get(email__campaign=self.later)
        self.assertEqual(queued.state, Message.State.CANCELLED)
        self.sent.refresh_from_db()
        self.assertEqual(self.sent.state, Message.State.SENT)  # its fate stays in the ledger
        self.assertFalse(MailboxMessage.objects.filter(message__in=erased).exists())
        self.assertEqual((erasure.messages, erasure.cancelled, erasure.suppressions), (3, 1, 1))
        # Bob's mail is left alone.
        self.assertEqual(Message.objects.filter(to_email="bob@example.com").count(), 2)
        self.assertTrue(MailboxMessage.objects.filter(message__to_email="bob@example.com").exists())

    def test_custom_events_go_and_email_events_stay_leading_to_no_one(self) -> None:
        erasure = erase_contact(self.ann)
        self.assertFalse(Event.objects.filter(kind="custom", name="viewed").exists())
        kept = Event.objects.filter(message__to_email=ERASED_ADDRESS)
        self.assertEqual(
            sorted(kept.values_list("kind", flat=True)), ["bounced", "clicked", "opened", "sent"]
        )
        self.assertFalse(kept.exclude(contact=None).exists())
        self.assertEqual(set(kept.values_list("user_agent", flat=True)), {""})
        self.assertFalse(kept.exclude(data={}).exists())
        self.assertEqual(kept.get(kind="clicked").url, f"https://shop.example/?u={ERASED_ADDRESS}")
        self.assertEqual((erasure.events_deleted, erasure.events_anonymised), (1, 4))
        self.assertTrue(Event.objects.filter(contact=self.other).exists())

    def test_the_suppression_entry_keeps_only_a_hash_of_the_address(self) -> None:
        erase_contact(self.ann)
        entry = Suppression.objects.get(project=self.project)
        self.assertEqual((entry.email, entry.email_hash), ("", hash_email(ANN)))
        self.assertEqual(entry.reason, Suppression.Reason.HARD_BOUNCE)
        self.assertTrue(entry.is_erased)
        self.assertNotIn("ann", entry.note)
        self.assertEqual(str(entry), "erased address")

    def test_rows_of_import_reports_that_name_the_address_lose_it(self) -> None:
        run = Import.objects.create(
            project=self.project, file_name="list.csv", encoding="utf-8", delimiter=","
        )
        ImportIssue.objects.create(
            run=run, line=3, kind="skipped", reason="duplicate: ann@example.com", raw="ANN@x,"
        )
        ImportIssue.objects.create(
            run=run, line=4, kind="rejected", reason="bad", raw="Ann@Example.com;Ann;Lee"
        )
        ImportIssue.objects.create(run=run, line=5, kind="rejected", reason="bad", raw="bob@x;y")
        erase_contact(self.ann)
        raws = list(ImportIssue.objects.order_by("line").values_list("raw", flat=True))
        self.assertEqual(raws, ["", "", "bob@x;y"])
        self.assertNotIn("ann", " ".join(ImportIssue.objects.values_list("reason", flat=True)))

    def test_an_erased_address_sent_to_again_is_skipped_and_named_again(self) -> None:
        erase_contact(self.ann)
        r = self.api("POST", "send", {"to": ANN, "subject": "Receipt", "body": "Thanks"})
        self.assertEqual(r.status_code, 200, r.content)
        drain()
        message = Message.objects.get(to_email=ANN)
        self.assertEqual(message.state, Message.State.SKIPPED)
        self.assertIn("suppressed (hard bounce)", message.last_response)
        # The address is in the project again: its entry names it, for the campaign audience.
        self.assertEqual(Suppression.objects.get(project=self.project).email, ANN)

    def test_a_contact_created_again_with_the_address_is_suppressed(self) -> None:
        erase_contact(self.ann)
        again = self.make_contact(ANN)
        self.assertEqual(Suppression.objects.get(project=self.project).email, ANN)
        self.login()
        self.assertContains(self.client.get(self.url(f"contacts/{again.code}/")), "Suppressed")
        campaign = self.make_campaign()
        self.assertEqual(count_audience(campaign).suppressed, 1)

    def test_an_address_back_through_track_is_skipped_at_send_time(self) -> None:
        erase_contact(self.ann)
        # The track API's one-statement upsert does not look at suppressions (its hot path):
        # the send loop's check finds the hash.
        tracking.track(self.project, "viewed", ANN, None, {})
        self.start_campaign(name="Autumn")
        drain()
        message = Message.objects.get(to_email=ANN)
        self.assertEqual(message.state, Message.State.SKIPPED)
        self.assertEqual(Suppression.objects.get(project=self.project).email, ANN)
        self.assertEqual(count_audience(self.make_campaign()).suppressed, 1)

    def test_a_bounce_or_unsubscribe_of_an_erased_message_suppresses_nothing(self) -> None:
        Suppression.objects.all().delete()
        erase_contact(self.ann)
        self.loose.refresh_from_db()
        bounces.apply_report(self.loose, bounces.Report(kind=bounces.HARD, status="5.1.1"))
        tracking.unsubscribe(self.loose, None, "link")
        self.assertFalse(Suppression.objects.exists())

    def test_a_message_in_flight_when_its_contact_was_erased_is_not_sent_again(self) -> None:
        Message.objects.filter(email__campaign=self.later, contact=self.ann).update(
            state=Message.State.SENDING, lease_until=timezone.now() - td(minutes=1)
        )
        erase_contact(self.ann)
        sending.requeue_due()
        drain()
        message = Message.objects.get(email__campaign=self.later, to_email=ERASED_ADDRESS)
        self.assertEqual(message.state, Message.State.SKIPPED)
        self.assertEqual(message.last_response, "Skipped: the address was erased.")

    def test_signups_of_the_address_go_and_its_automation_runs_with_the_contact(self) -> None:
        from postroom.automations.models import Automation, Run
        from postroom.signups.models import Signup, SignupForm

        form = SignupForm.objects.create(project=self.project, name="Newsletter")
        Signup.objects.create(form=form, email=ANN, ip="203.0.113.9")  # pending, no contact
        Signup.objects.create(form=form, email="bob@example.com")
        automation = Automation.objects.create(project=self.project, name="Welcome")
        Run.objects.create(project=self.project, automation=automation, contact=self.ann)
        from postroom.contacts.privacy import export_json

        document = json.loads("".join(export_json(self.ann)))
        self.assertEqual([s["ip"] for s in document["signups"]], ["203.0.113.9"])
        self.assertEqual(document["automation_runs"][0]["automation"], "Welcome")
        erase_contact(self.ann)
        self.assertEqual(list(Signup.objects.values_list("email", flat=True)), ["bob@example.com"])
        self.assertFalse(Run.objects.exists())

    def test_the_send_loop_checks_a_batch_in_one_query(self) -> None:
        erase_contact(self.ann)
        suppress(self.project, "zed@example.com", Suppression.Reason.COMPLAINT)
        first, *others = Message.objects.filter(project=self.project).order_by("id")
        first.to_email = "zed@example.com"
        for message in others:
            message.to_email = f"m{message.id}@example.com"
        with CaptureQueriesContext(connection) as queries:
            reasons = sending.skip_reasons([first, *others], {})
        self.assertEqual(len(queries), 1)
        self.assertEqual(reasons, {first.id: "Skipped: the address is suppressed (complaint)."})


class EraseFromTheDashboardTestCase(ErasedAnn, BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_ann()
        self.login(self.bob)

    def test_the_confirm_page_says_what_will_happen(self) -> None:
        r = self.client.get(self.url(f"contacts/{self.ann.code}/delete/"))
        self.assertContains(r, "Erase ann@example.com?")
        self.assertContains(r, "1 tag")
        self.assertContains(r, "1 message waiting to be sent is cancelled")
        self.assertContains(r, "3 messages</strong> sent to them or to their address")
        self.assertContains(r, "1 custom event</strong>")
        self.assertContains(r, "4 email events</strong>")
        self.assertContains(r, "The address stays suppressed</strong> (hard bounce)")
        self.assertContains(r, "cannot be undone")
        self.assertContains(r, f"contacts/{self.ann.code}/export.json")
        self.assertTrue(Contact.objects.filter(pk=self.ann.pk).exists())

    def test_posting_erases_and_says_the_address_stays_suppressed(self) -> None:
        r = self.client.post(self.url(f"contacts/{self.ann.code}/delete/"), follow=True)
        self.assertRedirects(r, self.url("contacts/"))
        self.assertContains(r, "everything about them was erased. It stays suppressed.")
        self.assertFalse(Contact.objects.filter(pk=self.ann.pk).exists())

    def test_another_projects_contact_cannot_be_erased(self) -> None:
        self.login(self.charlie)
        self.assertEqual(
            self.client.post(self.url(f"contacts/{self.ann.code}/delete/")).status_code, 404
        )
        self.assertTrue(Contact.objects.filter(pk=self.ann.pk).exists())

    def test_the_suppression_list_shows_an_erased_address_without_leaking_it(self) -> None:
        erase_contact(self.ann)
        r = self.client.get(self.url("suppressions/"))
        self.assertContains(r, "erased address")
        self.assertNotContains(r, "ann@")
        self.assertNotContains(r, hash_email(ANN))
        # The whole address finds its entry (why is mail to it skipped?); a part does not.
        self.assertContains(
            self.client.get(self.url("suppressions/"), {"q": ANN}), "erased address"
        )
        r = self.client.get(self.url("suppressions/"), {"q": "ann"})
        self.assertContains(r, "No suppressed address matches")
        entry = Suppression.objects.get()
        r = self.client.post(self.url(f"suppressions/{entry.id}/delete/"), follow=True)
        self.assertContains(r, "An erased address removed from the suppression list.")


class EraseThroughTheApiTestCase(ErasedAnn, BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_ann()

    def test_it_answers_with_what_was_done(self) -> None:
        r = self.api("DELETE", f"contacts/{self.ann.code}")
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(
            r.json(),
            {
                "success": True,
                "id": str(self.ann.code),
                "erased": {
                    "messages": 3,
                    "cancelled": 1,
                    "events_deleted": 1,
                    "events_anonymised": 4,
                    "suppressions": 1,
                },
            },
        )
        self.assert_error(self.api("DELETE", f"contacts/{self.ann.code}"), 404)

    def test_another_projects_key_gets_a_404_and_erases_nothing(self) -> None:
        r = self.api("DELETE", f"contacts/{self.ann.code}", key=self.charlies_secret_key)
        self.assert_error(r, 404)
        self.assertTrue(Contact.objects.filter(pk=self.ann.pk).exists())

    def test_the_suppressions_list_shows_the_entry_as_erased_and_it_can_be_removed(self) -> None:
        erase_contact(self.ann)
        (item,) = self.api("GET", "suppressions").json()["items"]
        self.assertEqual((item["email"], item["erased"], item["reason"]), ("", True, "hard_bounce"))
        self.assertEqual(len(self.api("GET", "suppressions", {"q": ANN}).json()["items"]), 1)
        r = self.api("POST", "suppressions", {"email": "Ann@Example.com"})
        self.assertEqual((r.status_code, r.json()["email"]), (201, ANN))  # named again
        self.assertEqual(Suppression.objects.count(), 1)
        r = self.api("DELETE", "suppressions/ann@example.com")
        self.assertEqual(r.json(), {"success": True, "id": ANN})
        self.assertFalse(Suppression.objects.exists())


class ImportAfterEraseTestCase(ErasedAnn, ImportTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_ann()
        erase_contact(self.ann)

    def imported(self, *lines: str, **chosen) -> Import:
        imp = self.run_import(self.upload("contacts.csv", csv_bytes(*lines), **chosen))
        self.assertEqual(imp.state, Import.State.DONE, imp.error)
        return imp

    def test_an_erased_address_imported_again_stays_suppressed(self) -> None:
        self.imported("email,first_name", "Ann@Example.com,Ann", "cid@example.com,Cid")
        self.assertEqual(Suppression.objects.get(project=self.project).email, ANN)
        campaign = self.start_campaign(name="Winter")
        recipients = set(
            Message.objects.filter(email__campaign=campaign).values_list("to_email", flat=True)
        )
        self.assertEqual(recipients, {"bob@example.com", "cid@example.com"})

    def test_suppressing_it_again_by_import_keeps_one_entry(self) -> None:
        imp = self.imported("email", "ann@example.com", "dan@example.com", mode="suppress")
        self.assertEqual((imp.created, imp.unchanged), (1, 1))
        entries = dict(
            Suppression.objects.filter(project=self.project).values_list("email", "reason")
        )
        self.assertEqual(entries, {ANN: "hard_bounce", "dan@example.com": "manual"})
