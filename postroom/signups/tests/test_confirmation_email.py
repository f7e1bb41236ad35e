"""The confirmation email: the form's templates over plain data, the link always in it, sent
through the project's default sender (the Mailbox)."""

from __future__ import annotations

import email
from email import policy

from postroom.delivery.actions import default_sender
from postroom.delivery.models import MailboxMessage, Message, Sender
from postroom.signups.models import Signup
from postroom.signups.tests.base import SignupTestCase
from postroom.test import drain


class ConfirmationEmailTestCase(SignupTestCase):
    def test_it_reaches_the_mailbox_with_the_link_in_its_text(self) -> None:
        form = self.make_form()
        self.post_form(form, {"email": "ann@example.com"})
        drain()
        message = self.confirmation()
        self.assertEqual(message.state, Message.State.SENT)
        kept = MailboxMessage.objects.get(message=message)
        parsed = email.message_from_bytes(bytes(kept.raw), policy=policy.default)
        self.assertEqual(parsed["To"], "ann@example.com")
        self.assertEqual(parsed["Subject"], "Please confirm your subscription to Alice's project")
        text = parsed.get_body(preferencelist=("plain",)).get_content()
        token = Signup.objects.get().code
        self.assertIn("http://localhost:8000/f/confirm/", text)
        self.assertIn("ann@example.com", text)
        self.assertNotIn(str(token), text)  # the code goes out signed, never bare
        self.assertIsNone(parsed["List-Unsubscribe"])  # asked for: not a newsletter

    def test_the_forms_templates_read_plain_data(self) -> None:
        form = self.make_form(
            fields=["first_name"],
            confirm_subject="{{ form.title }} for {{ contact.first_name }}",
            confirm_text="Hi {{ contact.first_name | default('there') }}: {{ confirm_url }}",
            title="Weekly",
        )
        self.post_form(form, {"email": "ann@example.com", "first_name": "Ann"})
        sent = self.confirmation().email
        self.assertEqual(sent.subject, "Weekly for Ann")
        self.assertRegex(sent.text, r"^Hi Ann: http://localhost:8000/f/confirm/[\w-]+$")
        self.assertFalse(sent.personalised)  # rendered once, here: goes out as written

    def test_a_visitors_line_breaks_never_reach_the_subject(self) -> None:
        form = self.make_form(fields=["first_name"], confirm_subject="Hi {{ contact.first_name }}")
        self.post_form(form, {"email": "ann@example.com", "first_name": "Ann\nBcc: x@y.z"})
        self.assertEqual(self.confirmation().email.subject, "Hi Ann Bcc: x@y.z")

    def test_a_template_cannot_reach_python_objects(self) -> None:
        form = self.make_form(confirm_text="{{ contact.__class__.__mro__ }}{{ confirm_url }}")
        self.post_form(form, {"email": "ann@example.com"})
        self.assertRegex(self.confirmation().email.text, r"^http://\S+/f/confirm/[\w-]+$")

    def test_a_template_that_fails_on_a_visitors_values_falls_back_to_the_default(self) -> None:
        form = self.make_form(confirm_text="{{ 1 / contact.data.n }} {{ confirm_url }}")
        self.post_form(form, {"email": "ann@example.com"})
        text = self.confirmation().email.text
        self.assertIn("please confirm that you want to receive email", text)
        self.assertRegex(text, r"http://\S+/f/confirm/[\w-]+")

    def test_the_link_is_added_when_a_template_leaves_it_out(self) -> None:
        form = self.make_form(confirm_text="{% if false %}{{ confirm_url }}{% endif %}Welcome!")
        self.post_form(form, {"email": "ann@example.com"})
        self.assertRegex(self.confirmation().email.text, r"^Welcome!\n\nhttp://\S+/f/confirm/")

    def test_it_goes_through_the_default_sender(self) -> None:
        other = Sender.objects.create(
            project=self.project,
            name="Relay",
            kind=Sender.Kind.MAILBOX,
            from_email="news@example.org",
        )
        self.assertNotEqual(default_sender(self.project), other)
        self.post_form(self.make_form(), {"email": "ann@example.com"})
        message = self.confirmation()
        self.assertEqual(message.sender, default_sender(self.project))
        self.assertEqual(message.email.from_email, default_sender(self.project).from_email)
