from __future__ import annotations

import base64
import email
from email.message import EmailMessage
from email.policy import default

from postroom.contacts.actions import suppress
from postroom.contacts.models import Contact, Status, Suppression
from postroom.content.models import Template
from postroom.delivery.models import Email, MailboxMessage, Message, Sender
from postroom.test import BaseTestCase, drain


class SendApiTestCase(BaseTestCase):
    def send(self, key: str | None = None, **body):
        body = {"to": "ann@example.com", "subject": "Hi", "body": "<p>Hello</p>", **body}
        return self.api("POST", "send", body, key=key)

    def delivered(self, message_id: str) -> EmailMessage:
        drain()
        message = Message.objects.get(code=message_id)
        self.assertEqual(message.state, Message.State.SENT, message.last_response)
        raw = bytes(MailboxMessage.objects.get(message=message).raw)
        return email.message_from_bytes(raw, policy=default)

    def test_it_queues_a_personalised_email_and_answers_as_plunk_does(self) -> None:
        r = self.send(
            to={"name": "Ann Lee", "email": "Ann@Example.com"},
            subject="Order {{ data.order }}",
            body="<p>Hi {{ name }}, order {{ data.order }} ships.</p>",
            data={"order": "A-17", "name": "Ann"},
        )
        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual(set(body), {"success", "emails", "timestamp"})
        (sent,) = body["emails"]
        contact = Contact.objects.get(project=self.project, email="ann@example.com")
        self.assertEqual(sent["contact"], {"id": str(contact.code), "email": "ann@example.com"})
        message = Message.objects.get(code=sent["email"])
        self.assertEqual(message.priority, Message.Priority.TRANSACTIONAL)
        self.assertEqual(message.email.kind, Email.Kind.TRANSACTIONAL)
        parsed = self.delivered(sent["email"])
        self.assertEqual(parsed["Subject"], "Order A-17")
        self.assertEqual(parsed["To"], "Ann Lee <ann@example.com>")
        html = parsed.get_body(("html",)).get_content()
        self.assertIn("Hi Ann, order A-17 ships.", html)
        self.assertIn("Hi Ann, order A-17 ships.", parsed.get_body(("plain",)).get_content())
        self.assertNotIn("List-Unsubscribe", parsed)

    def test_a_new_recipient_becomes_a_contact_not_subscribed_to_marketing(self) -> None:
        self.send()
        contact = Contact.objects.get()
        self.assertEqual(contact.status, Status.UNSUBSCRIBED)
        self.assertIn("transactional", contact.status_reason)
        self.send(to="bea@example.com", subscribed=True)
        self.assertEqual(Contact.objects.get(email="bea@example.com").status, Status.SUBSCRIBED)

    def test_an_existing_contact_keeps_its_status_and_its_data_personalises(self) -> None:
        self.make_contact("ann@example.com", first_name="Ann", status=Status.SUBSCRIBED)
        r = self.send(body="Hello {{ contact.first_name }}", type="markdown")
        self.assertEqual(Contact.objects.get().status, Status.SUBSCRIBED)
        parsed = self.delivered(r.json()["emails"][0]["email"])
        self.assertIn("<p>Hello Ann</p>", parsed.get_body(("html",)).get_content())

    def test_it_sends_to_several_recipients_once_each(self) -> None:
        to = ["ann@example.com", {"email": "bea@example.com"}, "ANN@example.com"]
        r = self.send(to=to)
        self.assertEqual(len(r.json()["emails"]), 2)
        self.assertEqual(Message.objects.count(), 2)
        self.assertEqual(Email.objects.count(), 1)

    def test_from_name_reply_and_headers(self) -> None:
        sender = Sender.objects.get(project=self.project)
        r = self.send(
            **{"from": sender.from_email, "name": "Shop", "reply": "help@example.com"},
            headers={"X-Order": "A-17"},
        )
        parsed = self.delivered(r.json()["emails"][0]["email"])
        self.assertEqual(parsed["From"], f"Shop <{sender.from_email}>")
        self.assertEqual(parsed["Reply-To"], "help@example.com")
        self.assertEqual(parsed["X-Order"], "A-17")

    def test_attachments_go_with_the_mail(self) -> None:
        pdf = b"%PDF-1.4 receipt"
        attachments = [
            {"filename": "receipt.pdf", "content": base64.b64encode(pdf).decode()},
            {"filename": "a.txt", "content": "aGk=", "contentType": "text/plain"},
        ]
        r = self.send(attachments=attachments)
        parsed = self.delivered(r.json()["emails"][0]["email"])
        self.assertEqual(parsed.get_content_type(), "multipart/mixed")
        files = {a.get_filename(): a for a in parsed.iter_attachments()}
        self.assertEqual(files["receipt.pdf"].get_content_type(), "application/pdf")
        self.assertEqual(files["receipt.pdf"].get_content(), pdf)
        self.assertEqual(files["a.txt"].get_content().strip(), "hi")
        self.assertIn("Hello", parsed.get_body(("html",)).get_content())

    def test_a_template_is_the_email_or_its_layout(self) -> None:
        whole = Template.objects.create(
            project=self.project, name="Reset", format="markdown", source="Reset: {{ data.link }}"
        )
        layout = Template.objects.create(
            project=self.project, name="Frame", source="<div class=f>{{ content }}</div>"
        )
        r = self.send(body="", template=str(whole.code), data={"link": "L1"})
        parsed = self.delivered(r.json()["emails"][0]["email"])
        self.assertIn("Reset: L1", parsed.get_body(("html",)).get_content())
        r = self.send(body="<p>Inside</p>", template=str(layout.code))
        html = self.delivered(r.json()["emails"][0]["email"]).get_body(("html",)).get_content()
        self.assertIn('<div class="f"><p>Inside</p></div>', html.replace("\n", ""))
        self.assert_error(self.send(template=str(whole.code)), 422, "template")

    def test_suppressed_addresses_are_skipped_but_unsubscribes_are_not(self) -> None:
        self.make_contact("uns@example.com", status=Status.UNSUBSCRIBED)
        suppress(self.project, "bounced@example.com", Suppression.Reason.HARD_BOUNCE)
        suppress(self.project, "complained@example.com", Suppression.Reason.COMPLAINT)
        to = ["uns@example.com", "bounced@example.com", "complained@example.com"]
        self.send(to=to)
        drain()
        states = dict(Message.objects.values_list("to_email", "state"))
        self.assertEqual(states["uns@example.com"], "sent")
        self.assertEqual(states["bounced@example.com"], "skipped")
        self.assertEqual(states["complained@example.com"], "skipped")

    def test_it_may_be_asked_to_leave_unsubscribed_contacts_out(self) -> None:
        self.make_contact("uns@example.com", status=Status.UNSUBSCRIBED)
        self.send(to="uns@example.com", skip_unsubscribed=True)
        drain()
        self.assertEqual(Message.objects.get().state, Message.State.SKIPPED)

    def test_bad_input_is_a_422_naming_the_field_and_queues_nothing(self) -> None:
        cases = [
            ({"to": "a@b.com;Ann;Lee"}, "to"),
            ({"to": ["ann@example.com", "nope"]}, "to.1"),
            ({"to": []}, "to"),
            ({"to": [f"u{i}@example.com" for i in range(101)]}, "to"),
            ({"to": {"email": "ann@example.com", "name": "A\nBcc: x@y.z"}}, "to"),
            ({"subject": ""}, "subject"),
            ({"subject": "a\r\nBcc: x@example.com"}, "subject"),
            ({"body": ""}, "body"),
            ({"body": "{% if %}"}, "body"),
            ({"subject": "{{ x"}, "subject"),
            ({"subject": "{{ 1 / 0 }}"}, "subject"),
            ({"body": "{{ 1 / 0 }}"}, "body"),
            ({"type": "pdf"}, "type"),
            ({"from": "me@elsewhere.example"}, "from_email"),
            ({"reply": "not an address"}, "reply"),
            ({"headers": {"Bcc": "x@example.com"}}, "headers.Bcc"),
            ({"headers": {"X-A": "1\r\nBcc: x@example.com"}}, "headers.X-A"),
            ({"headers": {"Bad Name": "1"}}, "headers.Bad Name"),
            ({"attachments": [{"filename": "a.pdf", "content": "%%%"}]}, "attachments.0.content"),
            ({"attachments": [{"filename": "../a", "content": "aGk="}]}, "attachments.0.filename"),
            (
                {"attachments": [{"filename": "a", "content": "aGk=", "content_type": "x"}]},
                "attachments.0.content_type",
            ),
            ({"data": {"big": "x" * 40_000}}, "data"),
            ({"data": "nope"}, "data"),
        ]
        for body, field in cases:
            self.assert_error(self.send(**body), 422, field)
        self.assertFalse(Message.objects.exists())
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Contact.objects.exists())

    def test_the_from_field_is_checked_against_the_sender(self) -> None:
        r = self.send(**{"from": "me@elsewhere.example"})
        self.assertIn("may send from", r.json()["message"])

    def test_another_projects_template_or_sender_is_a_404(self) -> None:
        theirs = Template.objects.create(project=self.charlies_project, name="T", source="x")
        self.assertEqual(self.send(template=str(theirs.code)).status_code, 404)
        their_sender = Sender.objects.get(project=self.charlies_project)
        self.assertEqual(self.send(sender=str(their_sender.code)).status_code, 404)
        self.assertEqual(self.send(template="not-a-uuid").status_code, 404)

    def test_it_needs_the_secret_key(self) -> None:
        r = self.send(key=self.project.public_key)
        self.assertEqual(r.status_code, 403)
        self.assertFalse(Message.objects.exists())

    def test_text_no_database_can_hold_is_a_422_naming_the_field(self) -> None:
        # NUL went on to PostgreSQL, a lone surrogate to any database: a 500 either way.
        for field, body in [
            ("subject", {"subject": "Hi\x00"}),
            ("name", {"name": "Ann\x00"}),
            ("to", {"to": {"email": "ann@example.com", "name": "Ann\x00"}}),
            ("body", {"type": "text", "body": "Hello\x00"}),
            ("data", {"data": {"plan": "pro\x00"}}),
            ("data", {"data": {"plan": "\ud800"}}),
        ]:
            with self.subTest(body=body):
                r = self.send(**body)
                self.assert_error(r, 422, field)
                self.assertIn("U+", r.json()["message"])
        self.assertFalse(Message.objects.exists())


class MessagesApiTestCase(BaseTestCase):
    def test_a_message_shows_its_state_and_events(self) -> None:
        r = self.api("POST", "send", {"to": "ann@example.com", "subject": "S", "body": "B"})
        message_id = r.json()["emails"][0]["email"]
        body = self.api("GET", f"messages/{message_id}").json()
        self.assertEqual(
            (body["state"], body["kind"], body["to"]),
            ("queued", "transactional", "ann@example.com"),
        )
        drain()
        body = self.api("GET", f"messages/{message_id}").json()
        self.assertEqual(body["state"], "sent")
        self.assertIsNotNone(body["sent_at"])
        self.assertEqual([e["kind"] for e in body["events"]], ["sent"])

    def test_messages_list_in_pages_with_filters(self) -> None:
        for i in range(3):
            self.api("POST", "send", {"to": f"u{i}@example.com", "subject": "S", "body": "B"})
        page = self.api("GET", "messages", {"limit": 2}).json()
        self.assertEqual([m["to"] for m in page["items"]], ["u2@example.com", "u1@example.com"])
        rest = self.api("GET", "messages", {"limit": 2, "cursor": page["next_cursor"]}).json()
        self.assertEqual([m["to"] for m in rest["items"]], ["u0@example.com"])
        self.assertIsNone(rest["next_cursor"])
        only = self.api("GET", "messages", {"to": "U1@example.com"}).json()["items"]
        self.assertEqual([m["to"] for m in only], ["u1@example.com"])
        self.assertEqual(self.api("GET", "messages", {"state": "sent"}).json()["items"], [])
        self.assertEqual(self.api("GET", "messages", {"state": "nope"}).status_code, 422)
        self.assertEqual(self.api("GET", "messages", {"limit": 0}).status_code, 422)

    def test_another_projects_message_is_a_404(self) -> None:
        r = self.api("POST", "send", {"to": "ann@example.com", "subject": "S", "body": "B"})
        message_id = r.json()["emails"][0]["email"]
        theirs = self.api("GET", f"messages/{message_id}", key=self.charlies_secret_key)
        self.assertEqual(theirs.status_code, 404)
        self.assertEqual(
            self.api("GET", "messages", key=self.charlies_secret_key).json()["items"], []
        )
        self.assertEqual(self.api("GET", "messages/nope").status_code, 404)

    def test_a_nul_in_a_filter_is_a_422(self) -> None:
        # It went on to PostgreSQL: a 500 there.
        r = self.api("GET", "messages", {"to": "ann@example.com\x00"})
        self.assertEqual(r.status_code, 422, r.content)
        self.assertEqual(r.json()["errors"][0]["field"], "to")


class SendersApiTestCase(BaseTestCase):
    def test_it_lists_senders_without_secrets(self) -> None:
        relay = Sender.objects.create(
            project=self.project, name="Relay", kind="smtp", from_email="a@example.com"
        )
        relay.password = "hunter2"
        relay.api_key = "key-123"
        relay.save()
        r = self.api("GET", "senders")
        self.assertEqual(r.status_code, 200)
        self.assertEqual({s["name"] for s in r.json()}, {"Mailbox", "Relay"})
        self.assertNotIn(b"hunter2", r.content)
        self.assertNotIn(b"key-123", r.content)
        self.assertNotIn("password", r.json()[0])
        one = self.api("GET", f"senders/{relay.code}").json()
        self.assertEqual(one["kind"], "smtp")

    def test_another_projects_sender_is_a_404(self) -> None:
        theirs = Sender.objects.get(project=self.charlies_project)
        self.assertEqual(self.api("GET", f"senders/{theirs.code}").status_code, 404)


class BouncedContactsTestCase(BaseTestCase):
    def test_transactional_mail_skips_bounced_and_complained_contacts(self) -> None:
        self.make_contact("b@example.com", status=Status.BOUNCED)
        self.make_contact("c@example.com", status=Status.COMPLAINED)
        body = {"to": ["b@example.com", "c@example.com"], "subject": "S", "body": "B"}
        self.assertEqual(self.api("POST", "send", body).status_code, 200)
        drain()
        self.assertEqual(
            set(Message.objects.values_list("state", flat=True)), {Message.State.SKIPPED}
        )
