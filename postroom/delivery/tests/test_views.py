from __future__ import annotations

from postroom.delivery.actions import default_sender, send_test_email
from postroom.delivery.models import MailboxMessage, Message, Sender
from postroom.delivery.sending import handle_one_send_batch
from postroom.delivery.tests.smtpserver import SmtpServer
from postroom.test import BaseTestCase

SMTP_FORM = {
    "name": "Relay",
    "kind": "smtp",
    "from_email": "News@Example.com",
    "from_name": "News",
    "from_domains": "example.org",
    "host": "127.0.0.1",
    "port": "",
    "security": "none",
    "username": "",
    "password": "s3cret-pass",
    "timeout": "5",
    "per_hour": "35",
    "on_unknown": "resend",
}


class SenderViewsTestCase(BaseTestCase):
    def test_the_list_shows_the_default_mailbox(self) -> None:
        self.login()
        r = self.client.get(self.url("senders/"))
        self.assertContains(r, "Mailbox")
        self.assertContains(r, "default")

    def test_it_creates_an_smtp_sender_with_the_password_encrypted(self) -> None:
        self.login()
        r = self.client.post(self.url("senders/new/"), SMTP_FORM)
        sender = Sender.objects.get(name="Relay")
        self.assertRedirects(r, self.url(f"senders/{sender.code}/"))
        self.assertEqual(sender.from_email, "news@example.com")
        self.assertEqual(sender.password, "s3cret-pass")
        self.assertNotIn("s3cret-pass", sender.password_encrypted)
        self.assertEqual(sender.per_hour, 35)
        # Editing without a password keeps the stored one.
        self.client.post(self.url(f"senders/{sender.code}/edit/"), {**SMTP_FORM, "password": ""})
        sender.refresh_from_db()
        self.assertEqual(sender.password, "s3cret-pass")
        self.assertNotContains(
            self.client.get(self.url(f"senders/{sender.code}/edit/")), "s3cret-pass"
        )

    def test_smtp_needs_a_host(self) -> None:
        self.login()
        r = self.client.post(self.url("senders/new/"), {**SMTP_FORM, "host": ""})
        self.assertContains(r, "needs the relay")

    def test_test_connection_shows_the_servers_answer(self) -> None:
        self.login()
        with SmtpServer() as server:
            self.client.post(self.url("senders/new/"), {**SMTP_FORM, "port": str(server.port)})
            sender = Sender.objects.get(name="Relay")
            r = self.client.post(self.url(f"senders/{sender.code}/test-connection/"), follow=True)
        self.assertContains(r, "Connected")
        self.assertContains(r, "250")
        self.assertContains(r, "The relay offers PIPELINING.")

    def test_connections_per_worker_default_to_four_and_stay_within_bounds(self) -> None:
        self.login()
        self.client.post(self.url("senders/new/"), SMTP_FORM)
        sender = Sender.objects.get(name="Relay")
        self.assertEqual((sender.pool_size, sender.batch_size()), (4, 400))
        self.assertContains(self.client.get(self.url(f"senders/{sender.code}/")), "4 connections")
        for bad in ("0", "33"):
            r = self.client.post(
                self.url(f"senders/{sender.code}/edit/"), {**SMTP_FORM, "pool_size": bad}
            )
            self.assertContains(r, "Ensure this value is")
        self.client.post(self.url(f"senders/{sender.code}/edit/"), {**SMTP_FORM, "pool_size": "1"})
        sender.refresh_from_db()
        self.assertEqual((sender.pool_size, sender.batch_size()), (1, 100))

    def test_a_failed_connection_test_says_why(self) -> None:
        from postroom.delivery.tests.smtpserver import free_port

        self.login()
        self.client.post(self.url("senders/new/"), {**SMTP_FORM, "port": str(free_port())})
        sender = Sender.objects.get(name="Relay")
        r = self.client.post(self.url(f"senders/{sender.code}/test-connection/"), follow=True)
        self.assertContains(r, "Failed")
        self.assertContains(r, "cannot connect to 127.0.0.1")

    def test_a_test_email_lands_in_the_mailbox(self) -> None:
        self.login()
        sender = default_sender(self.project)
        r = self.client.post(
            self.url(f"senders/{sender.code}/send-test/"), {"to": "ann@example.com"}
        )
        message = Message.objects.get()
        self.assertRedirects(r, self.url(f"messages/{message.code}/"))
        self.assertContains(
            self.client.get(self.url(f"messages/{message.code}/")), "Waiting for the worker"
        )
        handle_one_send_batch()
        r = self.client.get(self.url(f"messages/{message.code}/"))
        self.assertContains(r, "Kept in the Postroom mailbox")
        kept = MailboxMessage.objects.get()
        r = self.client.get(self.url("mailbox/"))
        self.assertContains(r, "Postroom test email")
        r = self.client.get(self.url(f"mailbox/{kept.code}/"))
        self.assertContains(r, "If you can read this, the sender works.")
        self.assertContains(r, "Message-ID")

    def test_mailbox_html_is_shown_sandboxed_and_escaped(self) -> None:
        from postroom.delivery.models import Email

        sender = default_sender(self.project)
        em = Email.objects.create(
            project=self.project,
            kind="test",
            sender=sender,
            from_email=sender.from_email,
            subject="x",
            text="t",
            html="<p>hi</p><script>alert(1)</script>",
        )
        Message.objects.create(
            project=self.project, email=em, sender=sender, to_email="a@example.com"
        )
        handle_one_send_batch()
        self.login()
        r = self.client.get(self.url(f"mailbox/{MailboxMessage.objects.get().code}/"))
        self.assertContains(
            r, 'iframe sandbox title="HTML part" srcdoc="&lt;p&gt;hi&lt;/p&gt;&lt;script&gt;'
        )
        self.assertNotContains(r, "<script>alert(1)</script>")

    def test_the_empty_mailbox_offers_a_test_email(self) -> None:
        self.login()
        self.assertContains(self.client.get(self.url("mailbox/")), "Send a test email")

    def test_a_bad_test_address_is_an_error(self) -> None:
        self.login()
        sender = default_sender(self.project)
        r = self.client.post(
            self.url(f"senders/{sender.code}/send-test/"), {"to": "a@b.com;x"}, follow=True
        )
        self.assertContains(r, "to: ")
        self.assertFalse(Message.objects.exists())

    def test_members_may_test_but_not_configure(self) -> None:
        self.login(self.bob)
        sender = default_sender(self.project)
        self.assertEqual(self.client.post(self.url("senders/new/"), SMTP_FORM).status_code, 403)
        r = self.client.post(
            self.url(f"senders/{sender.code}/send-test/"), {"to": "bob@example.org"}
        )
        self.assertEqual(r.status_code, 302)

    def test_the_default_sender_cannot_be_deleted(self) -> None:
        self.login()
        sender = default_sender(self.project)
        self.client.post(self.url(f"senders/{sender.code}/delete/"))
        self.assertTrue(Sender.objects.filter(pk=sender.pk).exists())

    def test_retry_requeues_a_failed_message(self) -> None:
        self.login()
        message = send_test_email(self.project, default_sender(self.project), "a@example.com", None)
        Message.objects.filter(pk=message.pk).update(state="failed", last_response="550 no")
        self.client.post(self.url(f"messages/{message.code}/retry/"))
        message.refresh_from_db()
        self.assertEqual(message.state, "queued")

    def test_another_projects_senders_and_messages_are_404(self) -> None:
        sender = default_sender(self.project)
        message = send_test_email(self.project, sender, "a@example.com", None)
        handle_one_send_batch()
        kept = MailboxMessage.objects.get()
        self.login(self.charlie)
        for path in (
            f"senders/{sender.code}/",
            f"senders/{sender.code}/edit/",
            f"messages/{message.code}/",
            f"mailbox/{kept.code}/",
        ):
            self.assertEqual(self.client.get(self.url(path)).status_code, 404, path)
            self.assertEqual(
                self.client.get(self.url(path, project=self.charlies_project)).status_code,
                404,
                path,
            )
        for path in (
            f"senders/{sender.code}/send-test/",
            f"senders/{sender.code}/delete/",
            f"messages/{message.code}/retry/",
        ):
            r = self.client.post(
                self.url(path, project=self.charlies_project), {"to": "x@example.com"}
            )
            self.assertEqual(r.status_code, 404, path)
        self.assertEqual(Message.objects.count(), 1)


class TimelineTestCase(BaseTestCase):
    def test_the_contact_page_lists_messages_sent_to_the_contact(self) -> None:
        contact = self.make_contact("ann@example.com")
        message = send_test_email(
            self.project, default_sender(self.project), "ann@example.com", None
        )
        Message.objects.filter(pk=message.pk).update(contact=contact)
        handle_one_send_batch()
        self.login()
        r = self.client.get(self.url(f"contacts/{contact.code}/"))
        self.assertContains(r, "“Postroom test email from Alice&#x27;s project”: sent")
