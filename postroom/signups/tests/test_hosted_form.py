"""The hosted page /f/<code>: what it shows, and what a post to it (from the page itself or
from the snippet embedded on another site) does."""

from __future__ import annotations

from unittest import mock

from django.test import Client

from postroom.contacts.actions import create_field
from postroom.contacts.models import Contact, FieldType, Status
from postroom.delivery.models import Message
from postroom.signups import actions
from postroom.signups.models import Signup
from postroom.signups.tests.base import SignupTestCase
from postroom.tracking.models import Event


class HostedPageTestCase(SignupTestCase):
    def test_it_shows_the_form_to_anyone_with_a_csrf_token_and_a_honeypot(self) -> None:
        create_field(self.project, "plan", "Plan", FieldType.TEXT)
        form = self.make_form(title="Our news", fields=["first_name", "data.plan"])
        r = self.client.get(f"/f/{form.code}")
        self.assertContains(r, "<h1>Our news</h1>", html=True)
        self.assertContains(r, 'name="csrfmiddlewaretoken"')
        self.assertContains(r, 'name="email"')
        self.assertContains(r, 'name="first_name"')
        self.assertContains(r, 'name="data.plan"')
        self.assertContains(r, 'name="website"')  # the honeypot
        self.assertNotContains(r, 'name="last_name"')
        self.assertEqual(
            r["Cache-Control"], "max-age=0, no-cache, no-store, must-revalidate, private"
        )

    def test_an_unknown_form_is_a_404(self) -> None:
        self.assertEqual(
            self.client.get("/f/00000000-0000-0000-0000-000000000000").status_code, 404
        )

    def test_a_closed_form_says_so_and_takes_nothing(self) -> None:
        form = self.make_form(active=False)
        r = self.client.get(f"/f/{form.code}")
        self.assertContains(r, "not taking signups", status_code=410)
        self.post_form(form, {"email": "ann@example.com"})
        self.assertFalse(Signup.objects.exists())

    def test_it_leaves_out_a_custom_field_deleted_since(self) -> None:
        field = create_field(self.project, "plan", "Plan", FieldType.TEXT)
        form = self.make_form(fields=["data.plan"])
        field.delete()
        r = self.client.get(f"/f/{form.code}")
        self.assertNotContains(r, "data.plan")


class DoubleOptInTestCase(SignupTestCase):
    def test_a_post_without_a_csrf_token_makes_a_pending_signup_and_a_confirmation(self) -> None:
        form = self.make_form(fields=["first_name"])
        self.client = Client(enforce_csrf_checks=True)  # as from another site: no token
        r = self.post_form(
            form,
            {"email": " Ann@Example.com ", "first_name": "Ann"},
            HTTP_USER_AGENT="Firefox",
            HTTP_REFERER="https://shop.example/blog",
        )
        self.assertContains(r, "we sent you an email")
        signup = Signup.objects.get()
        self.assertEqual(signup.email, "ann@example.com")
        self.assertEqual(signup.state, Signup.State.PENDING)
        self.assertEqual(signup.submitted["first_name"], "Ann")
        self.assertEqual(signup.ip, "127.0.0.1")
        self.assertEqual(signup.user_agent, "Firefox")
        self.assertEqual(signup.referrer, "https://shop.example/blog")
        self.assertFalse(Contact.objects.exists())  # nothing until the address confirms
        self.assertFalse(Event.objects.exists())
        message = self.confirmation()
        self.assertEqual(signup.message, message)
        self.assertEqual(message.priority, Message.Priority.TRANSACTIONAL)
        self.assertTrue(message.sender.is_default)
        self.assertIn("/f/confirm/", message.email.text)

    def test_an_existing_subscriber_gets_the_same_answer_as_a_stranger(self) -> None:
        form = self.make_form()
        self.make_contact("ann@example.com")
        known = self.post_form(form, {"email": "ann@example.com"})
        unknown = self.post_form(form, {"email": "bob@example.com"})
        self.assertEqual(known.status_code, unknown.status_code)
        self.assertEqual(known.content, unknown.content)
        # Each address's owner gets the link; only they learn whether they were on the list.
        self.assertEqual(Message.objects.count(), 2)

    def test_the_success_message_or_url_is_the_forms(self) -> None:
        form = self.make_form(success_message="Check your inbox, friend.")
        self.assertContains(self.post_form(form, {"email": "ann@example.com"}), "Check your inbox")
        form.success_url = "https://shop.example/thanks"
        form.save()
        r = self.post_form(form, {"email": "bob@example.com"})
        self.assertRedirects(r, "https://shop.example/thanks", fetch_redirect_response=False)

    def test_one_address_gets_at_most_three_confirmations_an_hour(self) -> None:
        form = self.make_form()
        answers = {self.post_form(form, {"email": "ann@example.com"}).content for _ in range(5)}
        self.assertEqual(len(answers), 1)  # the dropped ones are answered alike
        self.assertEqual(Message.objects.filter(to_email="ann@example.com").count(), 3)


class BadInputTestCase(SignupTestCase):
    def test_a_bad_address_is_named_and_nothing_is_kept(self) -> None:
        form = self.make_form()
        r = self.post_form(form, {"email": "a@b.com;Ann;Lee"})
        self.assertContains(r, "Email:", status_code=400)
        self.assertContains(r, "several values in one field", status_code=400)
        self.assertContains(r, 'value="a@b.com;Ann;Lee"', status_code=400)
        self.assertFalse(Signup.objects.exists())

    def test_custom_fields_are_checked_by_their_type_and_named(self) -> None:
        create_field(self.project, "age", "Age", FieldType.NUMBER)
        create_field(self.project, "born", "Born", FieldType.DATE)
        form = self.make_form(fields=["data.age", "data.born"])
        r = self.post_form(form, {"email": "ann@example.com", "data.age": "old", "data.born": "x"})
        self.assertEqual(r.status_code, 400)
        self.assertEqual(
            r.context["errors"],
            {
                "data.age": "Expected a number, got 'old'.",
                "data.born": "Expected a date as YYYY-MM-DD, got 'x'.",
            },
        )
        self.assertContains(r, "Age: Expected a number", status_code=400)
        self.assertFalse(Signup.objects.exists())

    def test_required_fields_must_be_filled_in(self) -> None:
        create_field(self.project, "terms", "I accept the terms", FieldType.BOOLEAN)
        form = self.make_form(
            fields=["first_name", "data.terms"], required=["first_name", "data.terms"]
        )
        r = self.post_form(form, {"email": "", "first_name": "  "})
        self.assertEqual(
            set(r.context["errors"]), {"email", "first_name", "data.terms"}, r.context["errors"]
        )
        r = self.post_form(
            form, {"email": "ann@example.com", "first_name": "Ann", "data.terms": "yes"}
        )
        self.assertEqual(r.status_code, 200)
        self.assertIs(Signup.objects.get().submitted["data"]["terms"], True)

    def test_a_name_never_keeps_a_line_break(self) -> None:
        form = self.make_form(fields=["first_name"])
        self.post_form(form, {"email": "ann@example.com", "first_name": "Ann\r\nBcc: x@y.z"})
        self.assertEqual(Signup.objects.get().submitted["first_name"], "Ann Bcc: x@y.z")

    def test_a_field_the_form_does_not_ask_is_ignored(self) -> None:
        create_field(self.project, "plan", "Plan", FieldType.TEXT)
        form = self.make_form()
        self.post_form(form, {"email": "ann@example.com", "data.plan": "pro", "last_name": "L"})
        self.assertEqual(
            Signup.objects.get().submitted, {"first_name": "", "last_name": "", "data": {}}
        )


class BotsTestCase(SignupTestCase):
    def test_a_filled_honeypot_is_answered_like_a_person_and_nothing_is_kept(self) -> None:
        form = self.make_form()
        person = self.post_form(form, {"email": "ann@example.com"})
        bot = self.post_form(form, {"email": "bot@example.com", "website": "http://spam"})
        self.assertEqual(bot.content, person.content)
        self.assertEqual(list(Signup.objects.values_list("email", flat=True)), ["ann@example.com"])

    def test_too_many_posts_from_one_address_are_refused_with_retry_after(self) -> None:
        form = self.make_form()
        with mock.patch.object(actions, "SUBMISSIONS_PER_WINDOW", 2):
            for i in range(2):
                self.assertEqual(
                    self.post_form(form, {"email": f"p{i}@example.com"}).status_code, 200
                )
            r = self.post_form(form, {"email": "p3@example.com"})
        self.assertContains(r, "Too many signups", status_code=429)
        self.assertGreater(int(r["Retry-After"]), 0)
        self.assertEqual(Signup.objects.count(), 2)

    def test_the_limit_is_per_form_and_client_address(self) -> None:
        form, other = self.make_form(), self.make_form(name="Other")
        with mock.patch.object(actions, "SUBMISSIONS_PER_WINDOW", 1):
            self.assertEqual(self.post_form(form, {"email": "a@example.com"}).status_code, 200)
            self.assertEqual(self.post_form(other, {"email": "b@example.com"}).status_code, 200)
            elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
            r = self.post_form(form, {"email": "c@example.com"}, **elsewhere)
            self.assertEqual(r.status_code, 200)
            self.assertEqual(self.post_form(form, {"email": "d@example.com"}).status_code, 429)


class SingleOptInTestCase(SignupTestCase):
    def test_a_new_address_is_subscribed_at_once_with_consent_tags_and_the_event(self) -> None:
        form = self.make_form(double_opt_in=False, fields=["first_name"])
        r = self.post_form(form, {"email": "ann@example.com", "first_name": "Ann"})
        self.assertContains(r, "you are subscribed")
        contact = Contact.objects.get()
        self.assertEqual((contact.first_name, contact.status), ("Ann", Status.SUBSCRIBED))
        self.assertEqual((contact.consent_source, contact.consent_ip), ("form", "127.0.0.1"))
        self.assertEqual(list(contact.tags.values_list("name", flat=True)), ["newsletter"])
        signup = Signup.objects.get()
        self.assertEqual((signup.state, signup.contact), (Signup.State.CONFIRMED, contact))
        self.assertIsNone(signup.message)
        event = Event.objects.get()
        self.assertEqual(
            (event.kind, event.name, event.contact), ("custom", "signup confirmed", contact)
        )
        self.assertFalse(Message.objects.exists())

    def test_an_address_that_opted_out_must_confirm_by_email(self) -> None:
        form = self.make_form(double_opt_in=False)
        self.make_contact("ann@example.com", status=Status.UNSUBSCRIBED)
        stranger = self.post_form(form, {"email": "bob@example.com"})
        r = self.post_form(form, {"email": "ann@example.com"})
        self.assertEqual(r.content, stranger.content)
        self.assertEqual(Contact.objects.get(email="ann@example.com").status, Status.UNSUBSCRIBED)
        self.assertEqual(Signup.objects.get(email="ann@example.com").state, Signup.State.PENDING)
        self.assertEqual(self.confirmation().contact.email, "ann@example.com")

    def test_an_existing_subscriber_keeps_their_consent_and_data(self) -> None:
        form = self.make_form(double_opt_in=False, fields=["first_name"])
        ann = self.make_contact("ann@example.com", first_name="Ann", consent_ip="192.0.2.1")
        self.post_form(form, {"email": "ann@example.com", "first_name": "Mallory"})
        ann.refresh_from_db()
        self.assertEqual(
            (ann.first_name, ann.consent_ip, ann.consent_source), ("Ann", "192.0.2.1", "manual")
        )
        self.assertEqual(list(ann.tags.values_list("name", flat=True)), ["newsletter"])
