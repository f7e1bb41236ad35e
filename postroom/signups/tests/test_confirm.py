"""The confirmation link /f/confirm/<token>: it asks, then subscribes on the button."""

from __future__ import annotations

from datetime import timedelta as td

from django.test import Client
from django.utils import timezone

from postroom.contacts.actions import create_field, erase_contact, suppress
from postroom.contacts.models import Contact, FieldType, Status, Suppression
from postroom.lib.signing import sign
from postroom.signups.models import Signup
from postroom.signups.tests.base import SignupTestCase
from postroom.tracking.models import Event


class ConfirmTestCase(SignupTestCase):
    def sign_up(self, email: str = "ann@example.com", **fields) -> str:
        create_field(self.project, "plan", "Plan", FieldType.TEXT)
        self.form = self.make_form(fields=["first_name", "data.plan"], **fields)
        data = {"email": email, "first_name": "Ann", "data.plan": "pro"}
        self.post_form(self.form, data, REMOTE_ADDR="192.0.2.10")
        return self.link(email)

    def test_opening_the_link_asks_and_changes_nothing(self) -> None:
        link = self.sign_up()
        r = self.client.get(link)
        self.assertContains(r, "Confirm your subscription")
        self.assertContains(r, "ann@example.com")
        self.assertContains(r, "Yes, subscribe me")
        self.assertFalse(Contact.objects.exists())
        self.assertEqual(Signup.objects.get().state, Signup.State.PENDING)

    def test_confirming_subscribes_tags_records_consent_and_the_event(self) -> None:
        link = self.sign_up()
        # A mail app's browser may have no cookie from the GET: no CSRF token is needed.
        r = Client(enforce_csrf_checks=True).post(link, REMOTE_ADDR="198.51.100.1")
        self.assertContains(r, "your subscription is confirmed")
        contact = Contact.objects.get()
        self.assertEqual(contact.status, Status.SUBSCRIBED)
        self.assertEqual((contact.first_name, contact.data), ("Ann", {"plan": "pro"}))
        self.assertEqual(list(contact.tags.values_list("name", flat=True)), ["newsletter"])
        signup = Signup.objects.get()
        self.assertEqual((signup.state, signup.contact), (Signup.State.CONFIRMED, contact))
        # Consent: when it was confirmed, from the IP that signed up, through a form; the row
        # keeps which form and when the signup was made.
        self.assertEqual(contact.consent_at, signup.confirmed_at)
        self.assertEqual((contact.consent_source, contact.consent_ip), ("form", "192.0.2.10"))
        self.assertEqual(signup.form, self.form)
        self.assertLess(signup.created_at, signup.confirmed_at)
        event = Event.objects.get()
        self.assertEqual(
            (event.kind, event.name, event.contact), ("custom", "signup confirmed", contact)
        )
        self.assertEqual(
            event.data,
            {
                "form": "Newsletter",
                "form_code": str(self.form.code),
                "signup": str(signup.code),
                "confirmed_by_email": True,
            },
        )

    def test_confirming_twice_changes_nothing_more(self) -> None:
        link = self.sign_up()
        self.client.post(link)
        again = self.client.post(link)
        self.assertContains(again, "your subscription is confirmed")
        self.assertEqual(Contact.objects.count(), 1)
        self.assertEqual(Event.objects.count(), 1)
        self.assertContains(self.client.get(link), "your subscription is confirmed")

    def test_the_form_may_redirect_after_confirming(self) -> None:
        link = self.sign_up(confirmed_url="https://shop.example/welcome")
        r = self.client.post(link)
        self.assertRedirects(r, "https://shop.example/welcome", fetch_redirect_response=False)

    def test_the_event_name_is_the_forms(self) -> None:
        self.client.post(self.sign_up(event_name="joined weekly digest"))
        self.assertEqual(Event.objects.get().name, "joined weekly digest")

    def test_a_tampered_or_foreign_token_is_a_404(self) -> None:
        link = self.sign_up()
        token = link.rsplit("/", 1)[1]
        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        self.assertEqual(self.client.get(f"/f/confirm/{tampered}").status_code, 404)
        self.assertEqual(self.client.post(f"/f/confirm/{tampered}").status_code, 404)
        # A token signed for another purpose (an unsubscribe link) is no confirmation.
        code = Signup.objects.get().code
        self.assertEqual(
            self.client.post(f"/f/confirm/{sign('unsubscribe', code)}").status_code, 404
        )
        self.assertFalse(Contact.objects.exists())

    def test_an_expired_link_offers_to_sign_up_again(self) -> None:
        link = self.sign_up()
        Signup.objects.update(created_at=timezone.now() - Signup.CONFIRM_WITHIN - td(minutes=1))
        r = self.client.post(link)
        self.assertContains(r, "This link has expired", status_code=410)
        self.assertContains(r, f"/f/{self.form.code}", status_code=410)
        self.assertFalse(Contact.objects.exists())
        self.assertEqual(Signup.objects.get().state, Signup.State.EXPIRED)

    def test_it_resubscribes_a_contact_who_had_opted_out(self) -> None:
        ann = self.make_contact("ann@example.com", status=Status.UNSUBSCRIBED)
        suppress(self.project, ann.email, Suppression.Reason.UNSUBSCRIBED)
        self.client.post(self.sign_up())
        ann.refresh_from_db()
        self.assertEqual(ann.status, Status.SUBSCRIBED)
        self.assertIn("Newsletter", ann.status_reason)
        self.assertEqual((ann.consent_source, ann.consent_ip), ("form", "192.0.2.10"))
        self.assertFalse(Suppression.objects.filter(project=self.project).exists())

    def test_it_updates_an_existing_contact_and_keeps_their_other_tags(self) -> None:
        ann = self.make_contact("ann@example.com", first_name="Annie", tags=["customer"])
        self.client.post(self.sign_up())
        ann.refresh_from_db()
        self.assertEqual(ann.first_name, "Ann")  # confirmed by the address's owner
        self.assertEqual(
            sorted(ann.tags.values_list("name", flat=True)), ["customer", "newsletter"]
        )

    def test_a_bounced_address_stays_bounced(self) -> None:
        ann = self.make_contact("ann@example.com", status=Status.BOUNCED)
        self.client.post(self.sign_up())
        ann.refresh_from_db()
        self.assertEqual(ann.status, Status.BOUNCED)

    def test_a_custom_field_deleted_before_confirming_loses_its_value_not_the_signup(self) -> None:
        link = self.sign_up()
        self.project.fields.get(key="plan").delete()
        self.client.post(link)
        self.assertEqual(Contact.objects.get().data, {})

    def test_erasing_the_contact_erases_its_signup_records(self) -> None:
        self.client.post(self.sign_up())
        erase_contact(Contact.objects.get())
        self.assertFalse(Signup.objects.exists())


class PruneTestCase(SignupTestCase):
    def test_signups_never_confirmed_are_forgotten_after_a_month(self) -> None:
        import datetime as dt

        from django.utils import timezone

        from postroom.signups.actions import prune_signups
        from postroom.signups.models import Signup

        form = self.make_form()
        old = Signup.objects.create(form=form, email="old@example.com")
        Signup.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=31))
        Signup.objects.create(form=form, email="new@example.com")
        done = Signup.objects.create(form=form, email="done@example.com")
        Signup.objects.filter(pk=done.pk).update(
            created_at=timezone.now() - dt.timedelta(days=60), confirmed_at=timezone.now()
        )
        self.assertEqual(prune_signups(), 1)
        self.assertEqual(
            sorted(Signup.objects.values_list("email", flat=True)),
            ["done@example.com", "new@example.com"],
        )
