"""Bounces and complaints by mail (tracking.bounces), from the real-world samples in
fixtures/bounces/: Postfix and Exim delivery status notifications, a qmail bounce with no
status part, a delay notice, an ARF abuse report, an out-of-office reply."""

from __future__ import annotations

import io
import sys
from email import message_from_bytes, policy
from pathlib import Path
from unittest import mock

from django.core.management import call_command
from django.test import override_settings

from postroom.contacts.models import Contact, Status, Suppression
from postroom.delivery.models import Message
from postroom.delivery.sending import parcels
from postroom.lib.signing import sign
from postroom.test import BaseTestCase, drain
from postroom.tracking import bounces
from postroom.tracking.links import BOUNCE, UNSUBSCRIBE, bounce_address
from postroom.tracking.models import Event

SAMPLES = Path(__file__).parent / "fixtures" / "bounces"


class BounceTestCase(BaseTestCase):
    def sent(self, to: str = "ann@example.com") -> Message:
        r = self.api("POST", "send", {"to": to, "subject": "S", "body": "B"})
        drain()
        return Message.objects.get(code=r.json()["emails"][0]["email"])

    def sample(self, name: str, message: Message, verp: bool = True) -> bytes:
        text = (SAMPLES / name).read_text()
        token = sign(BOUNCE, message.code) if verp else "not-a-token"
        text = text.replace("{TOKEN}", token).replace("{UNSUB}", sign(UNSUBSCRIBE, message.code))
        return text.encode()

    def handle(self, name: str, message: Message, verp: bool = True) -> str | None:
        mail = message_from_bytes(self.sample(name, message, verp), policy=policy.default)
        return bounces.handle_mail(mail, [])


class ReadingTest(BounceTestCase):
    def read(self, name: str):
        mail = message_from_bytes((SAMPLES / name).read_bytes(), policy=policy.default)
        return bounces.read_report(mail)

    def test_a_postfix_user_unknown_is_a_hard_bounce(self) -> None:
        report = self.read("postfix_user_unknown.eml")
        self.assertEqual((report.kind, report.status), ("hard", "5.1.1"))
        self.assertIn("User unknown in virtual mailbox table", report.diagnostic)
        self.assertEqual(report.recipient, "nobody@example.net")

    def test_a_mailbox_full_that_gave_up_is_a_soft_bounce(self) -> None:
        report = self.read("exim_mailbox_full.eml")
        self.assertEqual((report.kind, report.status), ("soft", "4.2.2"))
        self.assertIn("Mailbox full", report.diagnostic)

    def test_a_bounce_without_a_status_part_is_read_from_its_text(self) -> None:
        report = self.read("qmail_no_status_part.eml")
        self.assertEqual((report.kind, report.status), ("hard", "5.1.1"))
        self.assertIn("User unknown", report.diagnostic)

    def test_an_abuse_report_is_a_complaint(self) -> None:
        report = self.read("arf_complaint.eml")
        self.assertEqual((report.kind, report.feedback_type), ("complaint", "abuse"))

    def test_delay_notices_and_auto_replies_are_not_acted_on(self) -> None:
        self.assertIsNone(self.read("delayed_notice.eml"))
        self.assertIsNone(self.read("out_of_office.eml"))


class HandlingTest(BounceTestCase):
    def test_a_hard_bounce_suppresses_and_marks_the_contact(self) -> None:
        message = self.sent("nobody@example.net")
        done = self.handle("postfix_user_unknown.eml", message)
        self.assertIn("suppressed", done)
        event = Event.objects.get(kind=Event.Kind.BOUNCED)
        self.assertEqual((event.message_id, event.contact_id), (message.id, message.contact_id))
        self.assertEqual(event.data["type"], "hard")
        self.assertEqual(event.data["status"], "5.1.1")
        suppression = Suppression.objects.get(project=self.project, email="nobody@example.net")
        self.assertEqual(suppression.reason, Suppression.Reason.HARD_BOUNCE)
        contact = Contact.objects.get(pk=message.contact_id)
        self.assertEqual(contact.status, Status.BOUNCED)
        self.assertIn("5.1.1", contact.status_reason)
        message.refresh_from_db()
        self.assertEqual(message.outcome, ("bounced", "Bounced"))  # on the ledger too

    def test_the_next_send_skips_a_bounced_address(self) -> None:
        self.handle("postfix_user_unknown.eml", self.sent("nobody@example.net"))
        again = self.sent("nobody@example.net")
        self.assertEqual(again.state, Message.State.SKIPPED)

    def test_soft_bounces_suppress_only_after_the_limit(self) -> None:
        with override_settings(SOFT_BOUNCE_LIMIT=3):
            for attempt in range(1, 4):
                done = self.handle("exim_mailbox_full.eml", self.sent("full@example.org"))
                suppressed = Suppression.objects.filter(email="full@example.org").exists()
                self.assertEqual(suppressed, attempt == 3, done)
        self.assertEqual(Event.objects.filter(kind=Event.Kind.BOUNCED).count(), 3)
        self.assertIn("3 soft bounces", Suppression.objects.get(email="full@example.org").note)

    def test_a_complaint_found_by_the_quoted_unsubscribe_link(self) -> None:
        message = self.sent("angry@example.net")
        # Feedback loops write to a fixed address: no VERP token among the recipients.
        done = self.handle("arf_complaint.eml", message, verp=False)
        self.assertIn("complained", done)
        contact = Contact.objects.get(pk=message.contact_id)
        self.assertEqual(contact.status, Status.COMPLAINED)
        self.assertEqual(
            Suppression.objects.get(email="angry@example.net").reason,
            Suppression.Reason.COMPLAINT,
        )
        self.assertTrue(Event.objects.filter(kind=Event.Kind.COMPLAINED).exists())

    def test_a_report_about_no_message_of_ours_changes_nothing(self) -> None:
        message = self.sent()
        text = (SAMPLES / "postfix_user_unknown.eml").read_text()
        mail = message_from_bytes(text.replace("{TOKEN}", "forged").encode(), policy=policy.default)
        self.assertIsNone(bounces.handle_mail(mail, []))
        self.assertFalse(Suppression.objects.exists())
        self.assertEqual(Event.objects.filter(kind=Event.Kind.BOUNCED).count(), 0)
        self.assertTrue(message)  # the message itself stays as it was

    def test_the_bounce_command_reads_standard_input(self) -> None:
        message = self.sent("nobody@example.net")
        stdin = io.TextIOWrapper(io.BytesIO(self.sample("postfix_user_unknown.eml", message)))
        out = io.StringIO()
        with mock.patch.object(sys, "stdin", stdin):
            call_command("bounce", stdout=out)
        self.assertIn("suppressed", out.getvalue())

    def test_the_bounce_command_refuses_what_is_not_a_bounce(self) -> None:
        message = self.sent()
        stdin = io.TextIOWrapper(io.BytesIO(self.sample("out_of_office.eml", message)))
        with mock.patch.object(sys, "stdin", stdin), self.assertRaises(SystemExit) as exit:
            call_command("bounce", stdout=io.StringIO(), stderr=io.StringIO())
        self.assertEqual(exit.exception.code, 65)


class ReturnPathTest(BounceTestCase):
    @override_settings(BOUNCE_DOMAIN="bounces.example.com")
    def test_smtp_mail_leaves_with_its_own_return_path(self) -> None:
        message = self.sent()
        address = bounce_address(message.code)
        local = address.partition("@")[0]
        self.assertTrue(local.startswith("bounce+"))
        self.assertLessEqual(len(local), 64)
        message = Message.objects.select_related("email").get(pk=message.pk)
        (parcel,) = list(parcels([message], {}, {}, verp=True))
        self.assertEqual(parcel.envelope_from, address)
        (plain,) = list(parcels([message], {}, {}, verp=False))
        self.assertEqual(plain.envelope_from, message.email.from_email)

    @override_settings(BOUNCE_DOMAIN="")
    def test_without_a_bounce_domain_the_from_address_is_the_return_path(self) -> None:
        message = Message.objects.select_related("email").get(pk=self.sent().pk)
        (parcel,) = list(parcels([message], {}, {}, verp=True))
        self.assertEqual(parcel.envelope_from, message.email.from_email)


class FakeImap:
    """imaplib.IMAP4_SSL as a bounce mailbox with a few unread messages."""

    def __init__(self, messages: list[bytes]):
        self.messages = messages
        self.seen: list[bytes] = []
        self.logged_in = None

    def __call__(self, host, port, timeout=None):
        self.address = (host, port)
        return self

    def login(self, user, password):
        self.logged_in = (user, password)

    def select(self, folder):
        self.folder = folder

    def search(self, charset, criterion):
        return "OK", [b" ".join(str(i + 1).encode() for i in range(len(self.messages)))]

    def fetch(self, number, parts):
        return "OK", [(b"1 (RFC822 {n}", self.messages[int(number) - 1]), b")"]

    def store(self, number, command, flags):
        self.seen.append(number)

    def logout(self):
        pass


class FakePop3:
    def __init__(self, messages: list[bytes]):
        self.messages = messages
        self.deleted: list[int] = []

    def __call__(self, host, port, timeout=None):
        return self

    def user(self, name):
        pass

    def pass_(self, password):
        pass

    def stat(self):
        return len(self.messages), 0

    def retr(self, number):
        return b"+OK", self.messages[number - 1].split(b"\n"), 0

    def dele(self, number):
        self.deleted.append(number)

    def quit(self):
        pass


class MailboxTest(BounceTestCase):
    def test_imap_bounces_are_handled_and_marked_read(self) -> None:
        from postroom.tracking.mailbox import poll_bounce_mailbox

        bounced = self.sent("nobody@example.net")
        other = self.sent("ann@example.com")
        server = FakeImap(
            [
                self.sample("postfix_user_unknown.eml", bounced),
                self.sample("out_of_office.eml", other),
            ]
        )
        url = "imaps://bounces%40example.com:p%40ss@imap.example.com/Bounces"
        with override_settings(BOUNCE_MAILBOX=url), mock.patch("imaplib.IMAP4_SSL", server):
            self.assertEqual(poll_bounce_mailbox(), 1)
        self.assertEqual(server.logged_in, ("bounces@example.com", "p@ss"))
        self.assertEqual((server.address, server.folder), (("imap.example.com", 993), "Bounces"))
        self.assertEqual(server.seen, [b"1", b"2"])
        self.assertTrue(Suppression.objects.filter(email="nobody@example.net").exists())

    def test_pop3_bounces_are_handled_and_deleted(self) -> None:
        from postroom.tracking.mailbox import poll_bounce_mailbox

        server = FakePop3([self.sample("arf_complaint.eml", self.sent("angry@example.net"), False)])
        with (
            override_settings(BOUNCE_MAILBOX="pop3s://u:p@pop.example.com"),
            mock.patch("poplib.POP3_SSL", server),
        ):
            self.assertEqual(poll_bounce_mailbox(), 1)
        self.assertEqual(server.deleted, [1])
        self.assertEqual(Contact.objects.get(email="angry@example.net").status, Status.COMPLAINED)

    def test_an_unreachable_mailbox_is_logged_not_raised(self) -> None:
        from postroom.tracking.mailbox import poll_bounce_mailbox

        with (
            override_settings(BOUNCE_MAILBOX="imaps://u:p@imap.example.com"),
            mock.patch("imaplib.IMAP4_SSL", side_effect=OSError("connection refused")),
        ):
            self.assertEqual(poll_bounce_mailbox(), 0)
        with override_settings(BOUNCE_MAILBOX="ftp://nope"):
            self.assertEqual(poll_bounce_mailbox(), 0)
