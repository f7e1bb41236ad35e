"""The SMTP client against a strict relay (tests/relay.py): pipelining, the pool, and every
way a relay can refuse or hang up, each message with its own outcome."""

from __future__ import annotations

import email
import time
from unittest import mock

from postroom.delivery.mime import MimeTemplate
from postroom.delivery.models import Email, Message, Sender
from postroom.delivery.tests.relay import Relay
from postroom.delivery.transports import open_transports
from postroom.delivery.transports.smtp import data_block
from postroom.test import BaseTestCase, drain


class SmtpTransportTestCase(BaseTestCase):
    def sender(self, relay: Relay, pool_size: int = 1, **kw) -> Sender:
        return Sender.objects.create(
            project=self.project,
            name="Relay",
            kind=Sender.Kind.SMTP,
            host="127.0.0.1",
            port=relay.port,
            security=Sender.Security.NONE,
            from_email="news@example.com",
            timeout=3,
            pool_size=pool_size,
            **kw,
        )

    def queue(self, sender: Sender, *recipients: str, text: str = "Plain body") -> list[Message]:
        em = Email.objects.create(
            project=self.project,
            kind=Email.Kind.CAMPAIGN,
            sender=sender,
            from_email=sender.from_email,
            subject="Hello",
            text=text,
        )
        return [
            Message.objects.create(project=self.project, email=em, sender=sender, to_email=r)
            for r in recipients
        ]

    def states(self, messages: list[Message]) -> list[str]:
        for m in messages:
            m.refresh_from_db()
        return [m.state for m in messages]

    def test_it_pipelines_mail_rcpt_and_data(self) -> None:
        # The strict relay answers no MAIL before the RCPT and DATA behind it have arrived:
        # a client that waits for each reply would time out here.
        with Relay(strict_pipelining=True) as relay:
            messages = self.queue(self.sender(relay), *[f"r{i}@example.org" for i in range(5)])
            drain()
        self.assertEqual(self.states(messages), ["sent"] * 5)
        self.assertEqual([r.rcpt for r in relay.received], [m.to_email for m in messages])
        self.assertEqual([m.provider_id for m in messages], ["R1", "R2", "R3", "R4", "R5"])
        self.assertEqual(relay.connections, 1)

    def test_a_relay_without_pipelining_gets_one_command_at_a_time(self) -> None:
        with Relay(extensions=("8BITMIME",), strict_pipelining=False) as relay:
            messages = self.queue(self.sender(relay), "a@example.org", "b@example.org")
            drain()
        self.assertEqual(self.states(messages), ["sent", "sent"])

    def test_every_refusal_is_the_recipients_own_and_the_rest_go_through(self) -> None:
        recipients = [
            "ok1@example.org",
            "reject@example.org",
            "ok2@example.org",
            "defer@example.org",
            "baddata@example.org",  # DATA refused: the transaction stays open, RSET needed
            "ok3@example.org",
            "toobig@example.org",
            "ok4@example.org",
        ]
        with Relay() as relay:
            messages = self.queue(self.sender(relay), *recipients)
            drain()
        by_rcpt = {m.to_email: m for m in messages}
        self.states(messages)
        self.assertEqual(
            {r: m.state for r, m in by_rcpt.items()},
            {
                "ok1@example.org": "sent",
                "reject@example.org": "failed",
                "ok2@example.org": "sent",
                "defer@example.org": "deferred",
                "baddata@example.org": "failed",
                "ok3@example.org": "sent",
                "toobig@example.org": "failed",
                "ok4@example.org": "sent",
            },
        )
        self.assertIn("550 5.1.1", by_rcpt["reject@example.org"].last_response)
        self.assertIn("451 4.3.0", by_rcpt["defer@example.org"].last_response)
        self.assertIn("554 5.7.1 Not today", by_rcpt["baddata@example.org"].last_response)
        self.assertIn("552 5.3.4", by_rcpt["toobig@example.org"].last_response)
        self.assertEqual(
            [r.rcpt for r in relay.received],
            ["ok1@example.org", "ok2@example.org", "ok3@example.org", "ok4@example.org"],
        )
        self.assertNotIn("503", " ".join(m.last_response for m in messages))
        self.assertIn("RSET", relay.commands)
        self.assertEqual(relay.connections, 1)

    def test_a_hangup_after_the_body_defers_that_message_only(self) -> None:
        with Relay() as relay:
            messages = self.queue(
                self.sender(relay), "ok1@example.org", "drop@example.org", "ok2@example.org"
            )
            drain()
        ok1, drop, ok2 = messages
        self.assertEqual(self.states(messages), ["sent", "deferred", "sent"])
        self.assertIn("connection lost", drop.last_response)
        self.assertEqual(drop.attempts, 1)
        # Tried once more on a new connection, then deferred; ok2, pipelined behind it,
        # went through without blame.
        self.assertEqual(relay.commands.count("RCPT TO:<drop@example.org>"), 2)
        self.assertEqual(relay.connections, 3)

    def test_a_421_after_the_body_is_a_lost_connection_too(self) -> None:
        with Relay() as relay:
            messages = self.queue(self.sender(relay), "bye@example.org", "ok@example.org")
            drain()
        bye, ok = messages
        self.assertEqual(self.states(messages), ["deferred", "sent"])
        self.assertIn("421 4.3.2 Shutting down", bye.last_response)

    def test_connections_stay_open_between_batches(self) -> None:
        with Relay() as relay:
            sender = self.sender(relay)
            first = self.queue(sender, "a@example.org")
            drain()
            second = self.queue(sender, "b@example.org")
            drain()
        self.assertEqual(self.states(first + second), ["sent", "sent"])
        self.assertEqual(relay.connections, 1)

    def test_a_connection_the_relay_dropped_while_idle_is_replaced_without_a_failure(self):
        with Relay(idle_close=0.2) as relay:
            sender = self.sender(relay)
            first = self.queue(sender, "a@example.org")
            drain()
            time.sleep(0.5)  # the relay says 421 and hangs up on the idle connection
            second = self.queue(sender, "b@example.org")
            drain()
        self.assertEqual(self.states(first + second), ["sent", "sent"])
        self.assertEqual(second[0].attempts, 1)
        self.assertEqual(relay.connections, 2)

    def test_a_pool_shares_a_batch_and_sends_each_message_once(self) -> None:
        with Relay() as relay:
            messages = self.queue(
                self.sender(relay, pool_size=3), *[f"r{i}@example.org" for i in range(60)]
            )
            drain()
        self.assertEqual(self.states(messages), ["sent"] * 60)
        self.assertEqual(
            sorted(r.rcpt for r in relay.received), sorted(m.to_email for m in messages)
        )
        self.assertEqual(relay.connections, 3)

    def test_a_relay_limiting_connections_gets_the_batch_over_the_ones_it_takes(self) -> None:
        with Relay(max_connections=1) as relay:
            sender = self.sender(relay, pool_size=4)
            messages = self.queue(sender, *[f"r{i}@example.org" for i in range(40)])
            drain()
        self.assertEqual(self.states(messages), ["sent"] * 40)
        sender.refresh_from_db()
        self.assertEqual(sender.paused_reason, "")

    def test_lines_starting_with_a_dot_arrive_intact(self) -> None:
        text = ".hidden\n..two dots\nlast line\n."
        with Relay() as relay:
            (m,) = self.queue(self.sender(relay), "a@example.org", text=text)
            drain()
        body = email.message_from_bytes(relay.received[0].data).get_payload(decode=True)
        self.assertEqual(body, b".hidden\r\n..two dots\r\nlast line\r\n.\r\n")

    def test_an_idn_domain_goes_out_in_ascii(self) -> None:
        with Relay() as relay:
            (m,) = self.queue(self.sender(relay), "ann@bücher.de")
            drain()
        m.refresh_from_db()
        self.assertEqual(m.state, "sent")
        self.assertEqual(relay.received[0].rcpt, "ann@xn--bcher-kva.de")
        self.assertIn(b"To: ann@xn--bcher-kva.de\r\n", relay.received[0].data)

    def test_a_non_ascii_local_part_needs_smtputf8(self) -> None:
        with Relay() as relay:
            plain = self.queue(self.sender(relay), "jörg@example.org", "ann@example.org")
            drain()
        self.assertEqual(self.states(plain), ["failed", "sent"])
        self.assertIn("needs SMTPUTF8", plain[0].last_response)

        with Relay(extensions=("PIPELINING", "8BITMIME", "SMTPUTF8")) as relay:
            (m,) = self.queue(self.sender(relay), "jörg@example.org")
            drain()
        self.assertEqual(self.states([m]), ["sent"])
        self.assertEqual(relay.received[0].rcpt, "jörg@example.org")
        self.assertIn("SMTPUTF8", relay.received[0].mail_params)
        self.assertIn("To: jörg@example.org\r\n".encode(), relay.received[0].data)

    def test_8bit_bodies_are_declared_to_a_relay_that_takes_them(self) -> None:
        with Relay() as relay:
            sender = self.sender(relay)
            self.queue(sender, "a@example.org", text="Grüße aus Köln")
            self.queue(sender, "b@example.org", text="Plain ASCII")
            drain()
        params = {r.rcpt: r.mail_params for r in relay.received}
        self.assertEqual(params, {"a@example.org": "BODY=8BITMIME", "b@example.org": ""})

    def test_what_arrives_is_the_message_as_built(self) -> None:
        with Relay() as relay:
            (m,) = self.queue(self.sender(relay), "a@example.org", text="Hi\n.\nthere")
            drain()
        m.refresh_from_db()
        built = MimeTemplate(m.email).render(m)
        strip_date = b"".join(line for line in built.splitlines(True) if b"Date:" not in line)
        got = b"".join(
            line for line in relay.received[0].data.splitlines(True) if b"Date:" not in line
        )
        self.assertEqual(got, strip_date)

    def test_a_refused_rset_leaves_no_message_behind(self) -> None:
        with Relay(refuse_rset=True) as relay:
            messages = self.queue(self.sender(relay), "baddata@example.org", "ok@example.org")
            drain()
        self.assertEqual(self.states(messages), ["failed", "sent"])
        self.assertEqual([r.rcpt for r in relay.received], ["ok@example.org"])

    def test_a_relay_that_will_not_greet_pauses_the_sender(self) -> None:
        with Relay(greeting="554 5.7.1 No SMTP service here") as relay:
            sender = self.sender(relay)
            messages = self.queue(sender, "a@example.org")
            drain()
        sender.refresh_from_db()
        self.assertIn("554 5.7.1 No SMTP service here", sender.paused_reason)
        self.assertEqual(self.states(messages), ["queued"])
        self.assertEqual(messages[0].attempts, 0)

    def test_a_relay_without_esmtp_gets_helo(self) -> None:
        with Relay(esmtp=False, strict_pipelining=False) as relay:
            messages = self.queue(self.sender(relay), "a@example.org")
            drain()
        self.assertEqual(self.states(messages), ["sent"])
        self.assertIn("HELO [127.0.0.1]", " ".join(relay.commands).replace("helo", "HELO"))

    def test_a_message_handed_over_then_cut_off_is_sent_again_and_marked(self) -> None:
        with Relay() as relay:
            m, other = self.queue(self.sender(relay), "dropfirst@example.org", "ok@example.org")
            drain()
        self.assertEqual(self.states([m, other]), ["sent", "sent"])
        # The relay may have queued the first copy before it hung up: the ledger says so.
        self.assertTrue(m.maybe_duplicate)
        self.assertFalse(other.maybe_duplicate)

    def test_a_sender_may_hold_a_message_whose_fate_is_unknown(self) -> None:
        with Relay() as relay:
            sender = self.sender(relay, on_unknown=Sender.Unknown.HOLD)
            m, other = self.queue(sender, "dropfirst@example.org", "ok@example.org")
            drain()
        self.assertEqual(self.states([m, other]), ["failed", "sent"])
        self.assertIn("held for review", m.last_response)
        self.assertEqual(relay.commands.count("RCPT TO:<dropfirst@example.org>"), 1)

    def test_the_claim_is_renewed_while_a_slow_relay_answers(self) -> None:
        from postroom.delivery import sending
        from postroom.delivery.transports import smtp

        with (
            Relay(slow_end_of_data=0.3) as relay,
            mock.patch.object(smtp, "HEARTBEAT_SECONDS", 0.05),
            mock.patch.object(sending, "renew_lease", wraps=sending.renew_lease) as renew,
        ):
            messages = self.queue(self.sender(relay), "a@example.org")
            drain()
        self.assertEqual(self.states(messages), ["sent"])
        self.assertGreaterEqual(renew.call_count, 2)

    def test_a_reply_to_with_an_idn_domain_goes_out_in_ascii(self) -> None:
        with Relay() as relay:
            sender = self.sender(relay)
            (m,) = self.queue(sender, "a@example.org")
            Email.objects.filter(pk=m.email_id).update(reply_to="help@bücher.de")
            drain()
        self.assertIn(b"Reply-To: help@xn--bcher-kva.de\r\n", relay.received[0].data)

    def tearDown(self) -> None:
        open_transports.close_all()
        super().tearDown()


class DataBlockTestCase(BaseTestCase):
    def test_it_doubles_leading_dots_and_ends_with_a_lone_dot(self) -> None:
        self.assertEqual(data_block(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n")

    def test_it_mends_bare_line_ends(self) -> None:
        self.assertEqual(data_block(b"a\nb\rc"), b"a\r\nb\r\nc\r\n.\r\n")
