from __future__ import annotations

import email
from datetime import timedelta as td
from unittest import mock

from django.utils import timezone

from postroom.delivery import sending
from postroom.delivery.actions import default_sender, send_test_email
from postroom.delivery.models import Email, MailboxMessage, Message, Sender
from postroom.delivery.sending import claim_batch, handle_one_send_batch, requeue_due
from postroom.delivery.tests.smtpserver import SmtpServer
from postroom.test import BaseTestCase, drain
from postroom.tracking.models import Event


class SendingTestCase(BaseTestCase):
    def smtp_sender(self, port: int, **kw) -> Sender:
        return Sender.objects.create(
            project=self.project,
            name="Relay",
            kind=Sender.Kind.SMTP,
            host="127.0.0.1",
            port=port,
            security=Sender.Security.NONE,
            from_email="news@example.com",
            timeout=5,
            **kw,
        )

    def queue(
        self, sender: Sender, *recipients: str, priority=Message.Priority.CAMPAIGN
    ) -> list[Message]:
        em = Email.objects.create(
            project=self.project,
            kind=Email.Kind.CAMPAIGN,
            sender=sender,
            from_email=sender.from_email,
            subject="Hello\r\nBcc: evil@example.com",
            text="Plain body",
            html="<p>HTML body</p>",
        )
        return [
            Message.objects.create(
                project=self.project, email=em, sender=sender, to_email=r, priority=priority
            )
            for r in recipients
        ]

    def test_every_project_starts_with_a_mailbox_that_sends(self) -> None:
        sender = default_sender(self.project)
        self.assertEqual(sender.kind, Sender.Kind.MAILBOX)
        message = send_test_email(self.project, sender, "Ann@Example.com", self.alice)
        drain()
        message.refresh_from_db()
        self.assertEqual(message.state, Message.State.SENT)
        parsed = email.message_from_bytes(bytes(MailboxMessage.objects.get(message=message).raw))
        self.assertEqual(parsed["To"], "ann@example.com")
        self.assertIn("test email", parsed.get_payload(decode=True).decode())

    def test_smtp_outcomes_per_recipient(self) -> None:
        with SmtpServer() as server:
            sender = self.smtp_sender(server.port)
            ok, defer, reject = self.queue(
                sender, "ok@example.org", "defer@example.org", "reject@example.org"
            )
            drain()
        for m in (ok, defer, reject):
            m.refresh_from_db()
        self.assertEqual((ok.state, ok.provider_id), (Message.State.SENT, "Q1"))
        self.assertIn("250 2.0.0 Ok: queued as Q1", ok.last_response)
        self.assertEqual(defer.state, Message.State.DEFERRED)
        self.assertIn("451", defer.last_response)
        self.assertGreater(defer.next_attempt_at, timezone.now())
        self.assertEqual(reject.state, Message.State.FAILED)
        self.assertIn("550 5.1.1 No such user", reject.last_response)
        self.assertEqual([r for r, _ in server.received], ["ok@example.org"])

    def test_headers_never_carry_injected_lines(self) -> None:
        with SmtpServer() as server:
            self.queue(self.smtp_sender(server.port), "ok@example.org")
            drain()
        parsed = email.message_from_bytes(server.received[0][1])
        self.assertEqual(parsed["Subject"], "Hello Bcc: evil@example.com")
        self.assertIsNone(parsed["Bcc"])
        self.assertTrue(parsed["Message-ID"].endswith("@example.com>"))
        parts = {
            p.get_content_type(): p.get_payload(decode=True).decode()
            for p in parsed.walk()
            if not p.is_multipart()
        }
        self.assertIn("Plain body", parts["text/plain"])
        self.assertIn("<p>HTML body</p>", parts["text/html"])

    def test_a_dropped_connection_defers_and_the_next_message_reconnects(self) -> None:
        with SmtpServer() as server:
            hang, ok = self.queue(
                self.smtp_sender(server.port), "hangup@example.org", "ok@example.org"
            )
            drain()
        hang.refresh_from_db()
        ok.refresh_from_db()
        self.assertEqual(hang.state, Message.State.DEFERRED)
        self.assertEqual(ok.state, Message.State.SENT)
        self.assertGreaterEqual(server.handler.sessions, 2)

    def test_a_refused_login_pauses_the_sender_and_fails_nobody(self) -> None:
        with SmtpServer(require_auth=True) as server:
            sender = self.smtp_sender(server.port, username="u")
            sender.password = "wrong"
            sender.save()
            (m,) = self.queue(sender, "ok@example.org")
            drain()
            m.refresh_from_db()
            sender.refresh_from_db()
            self.assertEqual((m.state, m.attempts), (Message.State.QUEUED, 0))
            self.assertIn("login refused", sender.paused_reason)
            # Fixed password; once the pause has run out, sending resumes by itself.
            sender.password = "right"
            sender.paused_at = timezone.now() - td(hours=1)
            sender.save()
            drain()
        m.refresh_from_db()
        sender.refresh_from_db()
        self.assertEqual(m.state, Message.State.SENT)
        self.assertEqual(sender.paused_reason, "")

    def test_an_unreachable_host_pauses_too(self) -> None:
        from postroom.delivery.tests.smtpserver import free_port

        sender = self.smtp_sender(free_port())
        (m,) = self.queue(sender, "ok@example.org")
        drain()
        sender.refresh_from_db()
        m.refresh_from_db()
        self.assertIn("cannot connect", sender.paused_reason)
        self.assertEqual(m.state, Message.State.QUEUED)

    def test_transactional_mail_goes_first(self) -> None:
        sender = default_sender(self.project)
        campaign = self.queue(sender, *[f"c{i}@example.org" for i in range(3)])
        (urgent,) = self.queue(sender, "t@example.org", priority=Message.Priority.TRANSACTIONAL)
        _, batch = claim_batch(sender, 2)
        self.assertEqual([m.id for m in batch], [urgent.id, campaign[0].id])

    def test_deferred_messages_back_off_then_give_up(self) -> None:
        with SmtpServer() as server:
            sender = self.smtp_sender(server.port)
            (m,) = self.queue(sender, "defer@example.org")
            delays = []
            for _ in range(sending.MAX_ATTEMPTS):
                Message.objects.filter(pk=m.pk).update(
                    next_attempt_at=timezone.now() - td(seconds=1)
                )
                requeue_due()
                drain()
                m.refresh_from_db()
                if m.state == Message.State.DEFERRED:
                    delays.append(round((m.next_attempt_at - m.updated_at).total_seconds() / 60))
        self.assertEqual(delays[:4], [1, 2, 4, 8])
        self.assertEqual(max(delays), 256)
        self.assertEqual((m.state, m.attempts), (Message.State.FAILED, sending.MAX_ATTEMPTS))
        self.assertIn("Gave up after 10 attempts", m.last_response)

    def test_a_stale_claim_is_resent_and_marked(self) -> None:
        sender = default_sender(self.project)
        (m,) = self.queue(sender, "a@example.org")
        claim_batch(sender, 10)  # a worker claims, then dies
        Message.objects.filter(pk=m.pk).update(lease_until=timezone.now() - td(seconds=1))
        self.assertTrue(requeue_due())
        drain()
        m.refresh_from_db()
        self.assertEqual(m.state, Message.State.SENT)
        self.assertTrue(m.maybe_duplicate)

    def test_a_sender_may_hold_stale_claims_for_review(self) -> None:
        sender = default_sender(self.project)
        Sender.objects.filter(pk=sender.pk).update(on_unknown=Sender.Unknown.HOLD)
        (m,) = self.queue(sender, "a@example.org")
        claim_batch(sender, 10)
        Message.objects.filter(pk=m.pk).update(lease_until=timezone.now() - td(seconds=1))
        requeue_due()
        m.refresh_from_db()
        self.assertEqual(m.state, Message.State.FAILED)
        self.assertIn("held for review", m.last_response)

    def test_a_worker_that_lost_its_claim_records_nothing(self) -> None:
        sender = default_sender(self.project)
        (m,) = self.queue(sender, "a@example.org")
        token, batch = claim_batch(sender, 10)
        # Its lease runs out; another worker requeues and sends the message.
        Message.objects.filter(pk=m.pk).update(lease_until=timezone.now() - td(seconds=1))
        requeue_due()
        drain()
        from postroom.delivery.transports.base import DEFERRED, Outcome

        sending.record_outcomes(token, batch, {m.id: Outcome(DEFERRED, "451 late answer")})
        m.refresh_from_db()
        self.assertEqual(m.state, Message.State.SENT)
        self.assertNotIn("late answer", m.last_response)

    def test_a_message_that_cannot_be_built_fails_alone(self) -> None:
        # Written past the address check (an old import, a direct write): the batch goes on.
        sender = default_sender(self.project)
        bad, ok = self.queue(sender, "ann@bü_cher.de", "bob@example.org")
        drain()
        bad.refresh_from_db()
        ok.refresh_from_db()
        self.assertEqual((bad.state, ok.state), (Message.State.FAILED, Message.State.SENT))
        self.assertIn("Cannot build the message", bad.last_response)

    def test_a_fault_mid_batch_keeps_what_was_sent_and_defers_the_rest(self) -> None:
        from postroom.delivery.transports.base import SENT, Outcome
        from postroom.delivery.transports.mailbox import MailboxTransport

        def send_one_then_break(transport, parcels, size, outcomes, heartbeat=None):
            outcomes[next(parcels).message.id] = Outcome(SENT, "250 ok")
            raise RuntimeError("a bug")

        sender = default_sender(self.project)
        first, second, third = self.queue(sender, "a@x.org", "b@x.org", "c@x.org")
        with (
            mock.patch.object(MailboxTransport, "send_many", send_one_then_break),
            self.assertLogs("postroom.delivery.sending", "ERROR"),
        ):
            drain()
        states = [Message.objects.get(pk=m.pk).state for m in (first, second, third)]
        self.assertEqual(states, ["sent", "deferred", "deferred"])
        second.refresh_from_db()
        self.assertEqual(second.last_response, "Not sent: internal error.")

    def test_results_of_a_big_batch_are_written_in_one_statement(self) -> None:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        sender = default_sender(self.project)
        messages = self.queue(sender, *[f"r{i}@example.org" for i in range(50)])
        token, batch = claim_batch(sender, 100)
        from postroom.delivery.transports.base import DEFERRED, SENT, Outcome

        outcomes = {m.id: Outcome(SENT, f"250 queued as Q{m.id}", f"Q{m.id}") for m in batch}
        outcomes[batch[0].id] = Outcome(DEFERRED, "451 later")
        with CaptureQueriesContext(connection) as queries:
            sending.record_outcomes(token, batch, outcomes)
        # One UPDATE for the results, one INSERT for the "sent" events.
        self.assertEqual(len(queries), 2)
        self.assertEqual(Event.objects.filter(kind="sent").count(), 49)
        rows = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
        first = rows[batch[0].id]
        self.assertEqual((first.state, first.last_response), ("deferred", "451 later"))
        self.assertIsNotNone(first.next_attempt_at)
        self.assertIsNone(first.sent_at)
        last = rows[batch[-1].id]
        self.assertEqual((last.state, last.provider_id), ("sent", f"Q{last.pk}"))
        self.assertIsNotNone(last.sent_at)
        self.assertTrue(all(m.claim is None and m.lease_until is None for m in rows.values()))

    def test_rate_limits_count_the_ledger(self) -> None:
        sender = default_sender(self.project)
        Sender.objects.filter(pk=sender.pk).update(per_minute=3)
        self.queue(sender, *[f"r{i}@example.org" for i in range(5)])
        drain()
        self.assertEqual(Message.objects.filter(state=Message.State.SENT).count(), 3)
        # A restart forgets nothing: the ledger still says 3 were sent this minute.
        self.assertFalse(handle_one_send_batch())
        Message.objects.filter(state=Message.State.SENT).update(
            sent_at=timezone.now() - td(minutes=2)
        )
        drain()
        self.assertEqual(Message.objects.filter(state=Message.State.SENT).count(), 5)


class SkipAtSendTimeTestCase(SendingTestCase):
    def test_unsubscribed_and_suppressed_recipients_are_skipped(self) -> None:
        from postroom.contacts.actions import suppress
        from postroom.contacts.models import Contact

        sender = default_sender(self.project)
        gone = self.make_contact("gone@example.org")
        messages = self.queue(sender, "gone@example.org", "blocked@example.org", "ok@example.org")
        Message.objects.filter(pk=messages[0].pk).update(contact=gone)
        Contact.objects.filter(pk=gone.pk).update(status="unsubscribed")  # after the snapshot
        suppress(self.project, "blocked@example.org", reason="hard_bounce")
        drain()
        states = {m.to_email: (m.state, m.last_response) for m in Message.objects.all()}
        self.assertEqual(
            states["gone@example.org"], ("skipped", "Skipped: the contact is unsubscribed.")
        )
        self.assertEqual(states["blocked@example.org"][0], "skipped")
        self.assertIn("hard bounce", states["blocked@example.org"][1])
        self.assertEqual(states["ok@example.org"][0], "sent")

    def test_transactional_mail_ignores_marketing_unsubscribes_only(self) -> None:
        from postroom.contacts.actions import suppress

        sender = default_sender(self.project)
        suppress(self.project, "unsub@example.org", reason="unsubscribed")
        suppress(self.project, "bounced@example.org", reason="hard_bounce")
        self.queue(
            sender,
            "unsub@example.org",
            "bounced@example.org",
            priority=Message.Priority.TRANSACTIONAL,
        )
        drain()
        states = dict(Message.objects.values_list("to_email", "state"))
        self.assertEqual(states, {"unsub@example.org": "sent", "bounced@example.org": "skipped"})


class WarmupTestCase(SendingTestCase):
    def test_the_ramp_grows_each_day_and_limits_sending(self) -> None:
        import datetime as dt

        sender = default_sender(self.project)
        today = timezone.localdate()
        sender.warmup_started_on, sender.warmup_first_day = today, 3
        sender.warmup_growth_percent = 100
        sender.save()
        self.assertEqual(sender.warmup_limit(today), 3)
        self.assertEqual(sender.warmup_limit(today + dt.timedelta(days=2)), 12)
        self.queue(sender, *[f"w{i}@example.org" for i in range(5)])
        drain()
        self.assertEqual(Message.objects.filter(state=Message.State.SENT).count(), 3)
        # Two days into the ramp the same sender may send 12 a day.
        Sender.objects.filter(pk=sender.pk).update(warmup_started_on=today - dt.timedelta(days=2))
        drain()
        self.assertEqual(Message.objects.filter(state=Message.State.SENT).count(), 5)

    def test_the_form_needs_both_warmup_fields(self) -> None:
        from postroom.delivery.tests.test_views import SMTP_FORM

        self.login()
        r = self.client.post(
            self.url("senders/new/"), {**SMTP_FORM, "warmup_started_on": "2026-01-01"}
        )
        self.assertContains(r, "needs both its start date")
        r = self.client.post(
            self.url("senders/new/"),
            {
                **SMTP_FORM,
                "warmup_started_on": "2026-01-01",
                "warmup_first_day": "50",
                "warmup_growth_percent": "50",
            },
        )
        self.assertEqual(r.status_code, 302)
        self.assertContains(self.client.get(self.url("senders/")), "warm-up")
