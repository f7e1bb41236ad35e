"""Email service senders through django-anymail, with the HTTP layer mocked as anymail's own
tests do (requests.Session.request), and boto3's client mocked for Amazon SES."""

from __future__ import annotations

import json
from contextlib import contextmanager
from unittest import mock

import pytest
import requests
from botocore.exceptions import ClientError

from postroom.delivery.models import Email, Message, Sender
from postroom.delivery.sending import handle_one_send_batch
from postroom.delivery.transports import open_transports
from postroom.test import BaseTestCase

# Anymail 13.0.1 stopped testing SendGrid (anymail/django-anymail#432); it still works.
pytestmark = pytest.mark.filterwarnings("ignore:django-anymail has dropped official support")

INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: gone@example.org. Inactive recipients are ones that have generated a hard "
    "bounce, a spam complaint, or a manual suppression."
)


def response(status: int = 200, body: object = None, text: str = "") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = {200: "OK", 202: "Accepted", 401: "Unauthorized", 500: "Server Error"}.get(
        status, ""
    )
    r._content = json.dumps(body).encode() if body is not None else text.encode()
    if body is not None:
        r.headers["Content-Type"] = "application/json"
    r.encoding = "utf-8"
    return r


@contextmanager
def answers(*responses: requests.Response | Exception):
    """Every HTTP request anymail or the connection test makes gets the next answer."""
    with mock.patch("requests.Session.request", side_effect=list(responses)) as request:
        yield request


class EspTestCase(BaseTestCase):
    def esp_sender(self, kind: str, key: str = "key-123", **options) -> Sender:
        sender = Sender(
            project=self.project,
            name=kind,
            kind=kind,
            from_email="news@example.com",
            from_name="News",
            esp_options=options,
        )
        sender.api_key = key
        sender.save()
        return sender

    def queue(self, sender: Sender, *recipients: str) -> list[Message]:
        em = Email.objects.create(
            project=self.project,
            kind=Email.Kind.CAMPAIGN,
            sender=sender,
            from_email=sender.from_email,
            from_name=sender.from_name,
            reply_to="help@example.com",
            subject="Hello\r\nBcc: evil@example.com",
            text="Plain body",
            html="<p>HTML body</p>",
            headers={"List-Unsubscribe": "<https://example.com/u/1>", "Bcc": "evil@example.com"},
        )
        return [
            Message.objects.create(project=self.project, email=em, sender=sender, to_email=r)
            for r in recipients
        ]

    def send(self, *messages: Message) -> list[Message]:
        handle_one_send_batch()
        for m in messages:
            m.refresh_from_db()
        return list(messages)

    def assert_paused(self, sender: Sender, words: str, *messages: Message) -> None:
        sender.refresh_from_db()
        self.assertIn(words, sender.paused_reason)
        for m in messages:
            m.refresh_from_db()
            # Nobody failed: back in the queue, the attempt not counted.
            self.assertEqual((m.state, m.attempts), (Message.State.QUEUED, 0))


class PostmarkTestCase(EspTestCase):
    def test_it_records_sent_and_postmarks_message_id(self) -> None:
        sender = self.esp_sender(Sender.Kind.POSTMARK, message_stream="broadcast")
        (m,) = self.queue(sender, "ann@example.org")
        ok = {"To": "ann@example.org", "MessageID": "pm-1", "ErrorCode": 0, "Message": "OK"}
        with answers(response(200, ok)) as request:
            self.send(m)
        call = request.call_args.kwargs
        self.assertEqual(call["url"], "https://api.postmarkapp.com/email")
        self.assertEqual(call["headers"]["X-Postmark-Server-Token"], "key-123")
        self.assertEqual(call["timeout"], 30)
        sent = json.loads(call["data"])
        self.assertEqual(sent["From"], "News <news@example.com>")
        self.assertEqual(sent["To"], "ann@example.org")
        self.assertEqual(sent["ReplyTo"], "help@example.com")
        self.assertEqual(sent["Subject"], "Hello Bcc: evil@example.com")
        self.assertEqual(sent["TextBody"], "Plain body")
        self.assertEqual(sent["HtmlBody"], "<p>HTML body</p>")
        self.assertEqual(sent["MessageStream"], "broadcast")
        self.assertNotIn("Bcc", sent)
        headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
        self.assertEqual(headers["Message-ID"], m.message_id("example.com"))
        self.assertEqual(headers["List-Unsubscribe"], "<https://example.com/u/1>")
        self.assertEqual((m.state, m.provider_id), (Message.State.SENT, "pm-1"))
        self.assertEqual(m.last_response, "200 Postmark: OK")

    def test_an_inactive_recipient_fails_with_postmarks_reason(self) -> None:
        sender = self.esp_sender(Sender.Kind.POSTMARK)
        gone, ann = self.queue(sender, "gone@example.org", "ann@example.org")
        ok = {"To": "ann@example.org", "MessageID": "pm-2", "ErrorCode": 0, "Message": "OK"}
        with answers(response(422, {"ErrorCode": 406, "Message": INACTIVE}), response(200, ok)):
            self.send(gone, ann)
        self.assertEqual(gone.state, Message.State.FAILED)
        self.assertIn("422 Postmark: You tried to send to recipient(s)", gone.last_response)
        self.assertIn("marked as inactive", gone.last_response)
        self.assertEqual((ann.state, ann.provider_id), (Message.State.SENT, "pm-2"))

    def test_a_bad_token_pauses_the_sender_and_fails_nobody(self) -> None:
        sender = self.esp_sender(Sender.Kind.POSTMARK)
        messages = self.queue(sender, "ann@example.org", "bob@example.org")
        bad = {"ErrorCode": 10, "Message": "The Server Token you provided was invalid."}
        with answers(response(401, bad)) as request:
            handle_one_send_batch()
        self.assertEqual(request.call_count, 1)
        self.assert_paused(sender, "401 Postmark: The Server Token you provided", *messages)

    def test_an_unconfirmed_sender_signature_pauses_the_sender(self) -> None:
        sender = self.esp_sender(Sender.Kind.POSTMARK)
        messages = self.queue(sender, "ann@example.org")
        words = "The 'From' address you supplied (news@example.com) is not a Sender Signature"
        with answers(response(422, {"ErrorCode": 400, "Message": words})):
            handle_one_send_batch()
        self.assert_paused(sender, "is not a Sender Signature", *messages)

    def test_a_server_error_defers(self) -> None:
        sender = self.esp_sender(Sender.Kind.POSTMARK)
        (m,) = self.queue(sender, "ann@example.org")
        with answers(response(500, {"ErrorCode": 1, "Message": "Internal error"})):
            self.send(m)
        self.assertEqual(m.state, Message.State.DEFERRED)
        self.assertEqual(m.last_response, "500 Postmark: Internal error")
        self.assertIsNotNone(m.next_attempt_at)


class SendGridTestCase(EspTestCase):
    def test_it_records_sent_with_the_id_anymail_gave_the_message(self) -> None:
        sender = self.esp_sender(Sender.Kind.SENDGRID, api_url="https://api.eu.sendgrid.com/v3")
        (m,) = self.queue(sender, "ann@example.org")
        with answers(response(202)) as request:
            self.send(m)
        call = request.call_args.kwargs
        self.assertEqual(call["url"], "https://api.eu.sendgrid.com/v3/mail/send")
        self.assertEqual(call["headers"]["Authorization"], "Bearer key-123")
        sent = json.loads(call["data"])
        self.assertEqual(sent["headers"]["Message-ID"], m.message_id("example.com"))
        self.assertEqual(m.state, Message.State.SENT)
        # SendGrid answers with no id: anymail makes one and sends it as a custom arg,
        # which SendGrid's events carry back.
        self.assertEqual(m.provider_id, sent["personalizations"][0]["custom_args"]["anymail_id"])
        self.assertEqual(m.last_response, "202 SendGrid: queued")

    def test_an_invalid_recipient_fails_with_sendgrids_reason(self) -> None:
        sender = self.esp_sender(Sender.Kind.SENDGRID)
        (m,) = self.queue(sender, "ann@example.org")
        body = {"errors": [{"message": "Does not contain a valid address.", "field": "to"}]}
        with answers(response(400, body)):
            self.send(m)
        self.assertEqual(m.state, Message.State.FAILED)
        self.assertEqual(m.last_response, "400 SendGrid: Does not contain a valid address.")

    def test_a_revoked_key_pauses_the_sender_and_fails_nobody(self) -> None:
        sender = self.esp_sender(Sender.Kind.SENDGRID)
        messages = self.queue(sender, "ann@example.org", "bob@example.org")
        body = {"errors": [{"message": "The provided authorization grant is invalid"}]}
        with answers(response(401, body)):
            handle_one_send_batch()
        self.assert_paused(sender, "authorization grant is invalid", *messages)

    def test_rate_limited_defers_the_rest_of_the_batch_without_trying(self) -> None:
        sender = self.esp_sender(Sender.Kind.SENDGRID)
        ann, bob = self.queue(sender, "ann@example.org", "bob@example.org")
        with answers(response(429, {"errors": [{"message": "too many requests"}]})) as request:
            self.send(ann, bob)
        self.assertEqual(request.call_count, 1)
        self.assertEqual(ann.state, Message.State.DEFERRED)
        self.assertEqual(ann.last_response, "429 SendGrid: too many requests")
        self.assertEqual(bob.state, Message.State.DEFERRED)
        self.assertIn("Not tried: 429 SendGrid", bob.last_response)


class MailgunTestCase(EspTestCase):
    def test_it_records_sent_with_mailguns_id(self) -> None:
        sender = self.esp_sender(
            Sender.Kind.MAILGUN,
            sender_domain="mg.example.com",
            api_url="https://api.eu.mailgun.net/v3",
        )
        (m,) = self.queue(sender, "ann@example.org")
        queued = {"id": "<20260101.1@mg.example.com>", "message": "Queued. Thank you."}
        with answers(response(200, queued)) as request:
            self.send(m)
        call = request.call_args.kwargs
        self.assertEqual(call["url"], "https://api.eu.mailgun.net/v3/mg.example.com/messages")
        self.assertEqual(call["auth"], ("api", "key-123"))
        fields = dict(call["data"])
        self.assertEqual(fields["h:Message-Id"], m.message_id("example.com"))
        self.assertEqual(fields["html"], "<p>HTML body</p>")
        self.assertEqual(m.state, Message.State.SENT)
        self.assertEqual(m.provider_id, "<20260101.1@mg.example.com>")
        self.assertEqual(m.last_response, "200 Mailgun: Queued. Thank you.")

    def test_a_refused_recipient_fails_with_mailguns_reason(self) -> None:
        sender = self.esp_sender(Sender.Kind.MAILGUN, sender_domain="mg.example.com")
        (m,) = self.queue(sender, "ann@example.org")
        with answers(response(400, {"message": "to parameter is not a valid address"})):
            self.send(m)
        self.assertEqual(m.state, Message.State.FAILED)
        self.assertEqual(m.last_response, "400 Mailgun: to parameter is not a valid address")

    def test_forbidden_pauses_the_sender_and_fails_nobody(self) -> None:
        sender = self.esp_sender(Sender.Kind.MAILGUN, sender_domain="mg.example.com")
        messages = self.queue(sender, "ann@example.org")
        with answers(response(401, text="Forbidden")):
            handle_one_send_batch()
        self.assert_paused(sender, "401 Mailgun: Forbidden", *messages)

    def test_an_unknown_domain_pauses_the_sender(self) -> None:
        sender = self.esp_sender(Sender.Kind.MAILGUN, sender_domain="mg.example.com")
        messages = self.queue(sender, "ann@example.org")
        with answers(response(404, {"message": "Domain not found: mg.example.com"})):
            handle_one_send_batch()
        self.assert_paused(sender, "Domain not found", *messages)

    def test_server_errors_and_rate_limits_defer(self) -> None:
        sender = self.esp_sender(Sender.Kind.MAILGUN, sender_domain="mg.example.com")
        for status in (500, 503, 429):
            with self.subTest(status=status):
                (m,) = self.queue(sender, "ann@example.org")
                with answers(response(status, {"message": "try later"})):
                    self.send(m)
                self.assertEqual(m.state, Message.State.DEFERRED)
                self.assertEqual(m.last_response, f"{status} Mailgun: try later")

    def test_an_unreachable_api_defers_the_batch_after_one_try(self) -> None:
        sender = self.esp_sender(Sender.Kind.MAILGUN, sender_domain="mg.example.com")
        ann, bob = self.queue(sender, "ann@example.org", "bob@example.org")
        with answers(requests.ConnectionError("Name or service not known")) as request:
            self.send(ann, bob)
        self.assertEqual(request.call_count, 1)
        self.assertEqual((ann.state, bob.state), (Message.State.DEFERRED,) * 2)
        self.assertIn("Mailgun: cannot reach the API", ann.last_response)
        self.assertIn("Name or service not known", ann.last_response)
        self.assertIn("Not tried", bob.last_response)


class BrevoAndResendTestCase(EspTestCase):
    def test_they_record_sent_with_their_ids(self) -> None:
        cases = [
            (Sender.Kind.BREVO, "https://api.brevo.com/v3/smtp/email", {"messageId": "<b-1>"}),
            (Sender.Kind.RESEND, "https://api.resend.com/emails", {"id": "r-1"}),
        ]
        for kind, url, body in cases:
            with self.subTest(kind=kind):
                sender = self.esp_sender(kind)
                (m,) = self.queue(sender, "ann@example.org")
                with answers(response(201, body)) as request:
                    self.send(m)
                self.assertEqual(request.call_args.kwargs["url"], url)
                self.assertEqual(m.state, Message.State.SENT)
                self.assertEqual(m.provider_id, next(iter(body.values())))

    def test_an_unverified_resend_domain_pauses_the_sender(self) -> None:
        sender = self.esp_sender(Sender.Kind.RESEND)
        messages = self.queue(sender, "ann@example.org")
        body = {"statusCode": 403, "message": "The example.com domain is not verified."}
        with answers(response(403, body)):
            handle_one_send_batch()
        self.assert_paused(sender, "403 Resend: The example.com domain is not verified", *messages)


def ses_error(code: str, message: str, status: int = 400) -> ClientError:
    body = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}
    body["ResponseMetadata"]["HTTPStatusCode"] = status
    return ClientError(body, "SendEmail")


class SesTestCase(EspTestCase):
    def ses_sender(self) -> Sender:
        return self.esp_sender(
            Sender.Kind.SES, key="secret/key", region="eu-west-1", access_key_id="AKIAEXAMPLE123456"
        )

    @contextmanager
    def ses(self, *results):
        # The SES client is made when the transport opens, and the send loop keeps it open
        # between batches: a new mock needs a new transport.
        open_transports.close_all()
        with mock.patch("boto3.session.Session") as session:
            client = session.return_value.client.return_value
            client.send_email.side_effect = list(results)
            client.get_account.side_effect = list(results)
            yield session

    def test_it_records_sent_with_the_ses_message_id(self) -> None:
        sender = self.ses_sender()
        (m,) = self.queue(sender, "ann@example.org")
        with self.ses({"MessageId": "0102-ses"}) as session:
            self.send(m)
        session.assert_called_with(
            aws_access_key_id="AKIAEXAMPLE123456",
            aws_secret_access_key="secret/key",
            region_name="eu-west-1",
        )
        raw = session.return_value.client.return_value.send_email.call_args.kwargs["Content"]
        self.assertIn(m.message_id("example.com").encode(), raw["Raw"]["Data"])
        self.assertEqual((m.state, m.provider_id), (Message.State.SENT, "0102-ses"))

    def test_a_rejected_recipient_fails_and_a_bad_key_pauses(self) -> None:
        sender = self.ses_sender()
        (m,) = self.queue(sender, "ann@example.org")
        with self.ses(ses_error("MessageRejected", "Email address is not verified: ann@x.org")):
            self.send(m)
        self.assertEqual(m.state, Message.State.FAILED)
        self.assertIn("400 Amazon SES: MessageRejected: Email address is not", m.last_response)
        messages = self.queue(sender, "bob@example.org")
        with self.ses(ses_error("UnrecognizedClientException", "The token is invalid", 403)):
            handle_one_send_batch()
        self.assert_paused(sender, "The token is invalid", *messages)

    def test_an_unverified_from_address_pauses_the_sender(self) -> None:
        sender = self.ses_sender()
        messages = self.queue(sender, "ann@example.org")
        words = (
            "Email address is not verified. The following identities failed the check in "
            "region EU-WEST-1: news@example.com, ann@example.org"
        )
        with self.ses(ses_error("MessageRejected", words)):
            handle_one_send_batch()
        self.assert_paused(sender, "identities failed the check", *messages)

    def test_throttling_defers(self) -> None:
        sender = self.ses_sender()
        (m,) = self.queue(sender, "ann@example.org")
        with self.ses(ses_error("TooManyRequestsException", "Maximum sending rate", 429)):
            self.send(m)
        self.assertEqual(m.state, Message.State.DEFERRED)


class StoredKeyTestCase(EspTestCase):
    def test_the_api_key_is_stored_encrypted(self) -> None:
        sender = self.esp_sender(Sender.Kind.BREVO, key="xkeysib-very-secret")
        sender.refresh_from_db()
        self.assertEqual(sender.api_key, "xkeysib-very-secret")
        self.assertNotIn("very-secret", sender.api_key_encrypted)

    def test_a_sender_without_a_key_pauses(self) -> None:
        sender = self.esp_sender(Sender.Kind.RESEND, key="")
        messages = self.queue(sender, "ann@example.org")
        with answers() as request:
            handle_one_send_batch()
        request.assert_not_called()
        self.assert_paused(sender, "No Resend API key is stored", *messages)


POSTMARK_FORM = {
    "name": "Postmark",
    "kind": "postmark",
    "from_email": "News@Example.com",
    "from_name": "News",
    "from_domains": "",
    "security": "starttls",
    "timeout": "20",
    "on_unknown": "resend",
    "api_key": "pm-server-token",
    "message_stream": "broadcast",
}


class SenderFormTestCase(EspTestCase):
    def test_it_creates_a_postmark_sender_with_the_key_encrypted(self) -> None:
        self.login()
        r = self.client.post(self.url("senders/new/"), POSTMARK_FORM)
        sender = Sender.objects.get(name="Postmark")
        self.assertRedirects(r, self.url(f"senders/{sender.code}/"))
        self.assertEqual(sender.api_key, "pm-server-token")
        self.assertNotIn("pm-server-token", sender.api_key_encrypted)
        self.assertEqual(sender.esp_options, {"message_stream": "broadcast"})
        r = self.client.get(self.url(f"senders/{sender.code}/"))
        self.assertContains(r, "key stored (encrypted)")
        self.assertContains(r, "stream broadcast")
        # Editing without a key keeps the stored one, and the page never shows it.
        r = self.client.post(
            self.url(f"senders/{sender.code}/edit/"), {**POSTMARK_FORM, "api_key": ""}
        )
        sender.refresh_from_db()
        self.assertEqual(sender.api_key, "pm-server-token")
        r = self.client.get(self.url(f"senders/{sender.code}/edit/"))
        self.assertNotContains(r, "pm-server-token")
        self.assertContains(r, 'value="broadcast"')

    def test_errors_name_the_missing_fields(self) -> None:
        self.login()
        cases = [
            ({"api_key": ""}, "api_key", "Postmark needs the server token."),
            ({"kind": "sendgrid", "api_key": ""}, "api_key", "SendGrid needs the API key."),
            ({"kind": "mailgun"}, "sender_domain", "Mailgun needs the sending domain."),
            ({"kind": "ses"}, "region", "Amazon SES needs the AWS region."),
            ({"kind": "ses"}, "access_key_id", "Amazon SES needs the access key ID."),
            ({"kind": "ses", "api_key": ""}, "api_key", "Amazon SES needs the secret access key."),
            ({"kind": "ses", "region": "Ireland"}, "region", "is not an AWS region"),
            ({"kind": "mailgun", "api_url": "http://x.org"}, "api_url", "must start with https"),
        ]
        for change, field, error in cases:
            with self.subTest(change=change):
                r = self.client.post(self.url("senders/new/"), {**POSTMARK_FORM, **change})
                self.assertEqual(r.status_code, 200)
                self.assertIn(error, " ".join(r.context["form"].errors[field]))
        self.assertFalse(Sender.objects.filter(name="Postmark").exists())

    def test_another_service_needs_its_own_key(self) -> None:
        self.login()
        self.client.post(self.url("senders/new/"), POSTMARK_FORM)
        sender = Sender.objects.get(name="Postmark")
        change = {**POSTMARK_FORM, "kind": "resend", "api_key": ""}
        r = self.client.post(self.url(f"senders/{sender.code}/edit/"), change)
        self.assertContains(r, "Resend needs the API key.")
        r = self.client.post(
            self.url(f"senders/{sender.code}/edit/"), {**change, "api_key": "re_1"}
        )
        sender.refresh_from_db()
        self.assertEqual((sender.kind, sender.api_key, sender.esp_options), ("resend", "re_1", {}))

    def test_a_mailgun_sender_keeps_its_domain_and_region(self) -> None:
        self.login()
        form = {
            **POSTMARK_FORM,
            "kind": "mailgun",
            "sender_domain": "MG.example.com",
            "api_url": "https://api.eu.mailgun.net/v3",
            "region": "eu-west-1",  # not Mailgun's: dropped
        }
        self.client.post(self.url("senders/new/"), form)
        sender = Sender.objects.get(name="Postmark")
        self.assertEqual(
            sender.esp_options,
            {"sender_domain": "mg.example.com", "api_url": "https://api.eu.mailgun.net/v3"},
        )


class ConnectionTestTestCase(EspTestCase):
    def check_connection(self, sender: Sender, *results) -> object:
        self.login()
        with answers(*results) as request:
            r = self.client.post(self.url(f"senders/{sender.code}/test-connection/"), follow=True)
        self.request = request
        return r

    def test_postmark_answers_with_its_server(self) -> None:
        sender = self.esp_sender(Sender.Kind.POSTMARK)
        r = self.check_connection(sender, response(200, {"ID": 1, "Name": "Newsletters"}))
        self.assertContains(r, "Connected")
        self.assertContains(r, "GET https://api.postmarkapp.com/server")
        self.assertContains(r, "Newsletters")
        headers = self.request.call_args.kwargs["headers"]
        self.assertEqual(headers["X-Postmark-Server-Token"], "key-123")

    def test_a_refused_key_is_shown_in_the_services_words(self) -> None:
        sender = self.esp_sender(Sender.Kind.SENDGRID)
        body = {"errors": [{"message": "authorization required"}]}
        r = self.check_connection(sender, response(401, body))
        self.assertContains(r, "Failed")
        self.assertContains(r, "SendGrid refused the key: 401 authorization required")
        self.assertEqual(self.request.call_args.kwargs["url"], "https://api.sendgrid.com/v3/scopes")

    def test_mailgun_and_brevo_and_resend_ask_cheap_questions(self) -> None:
        cases = [
            (
                self.esp_sender(Sender.Kind.MAILGUN, sender_domain="mg.example.com"),
                "https://api.mailgun.net/v3/domains/mg.example.com",
            ),
            (self.esp_sender(Sender.Kind.BREVO), "https://api.brevo.com/v3/account"),
            (self.esp_sender(Sender.Kind.RESEND), "https://api.resend.com/domains"),
        ]
        for sender, url in cases:
            with self.subTest(kind=sender.kind):
                r = self.check_connection(sender, response(200, {"ok": True}))
                self.assertContains(r, "Connected")
                self.assertEqual(self.request.call_args.kwargs["url"], url)

    def test_a_sending_only_resend_key_passes(self) -> None:
        sender = self.esp_sender(Sender.Kind.RESEND)
        body = {"statusCode": 401, "name": "restricted_api_key", "message": "only send emails"}
        r = self.check_connection(sender, response(401, body))
        self.assertContains(r, "Connected")
        self.assertContains(r, "restricted to sending")

    def test_an_unreachable_api_fails(self) -> None:
        sender = self.esp_sender(Sender.Kind.BREVO)
        r = self.check_connection(sender, requests.ConnectionError("connection refused"))
        self.assertContains(r, "Failed")
        self.assertContains(r, "cannot reach https://api.brevo.com/v3/account")

    def test_ses_reads_the_account(self) -> None:
        sender = self.esp_sender(
            Sender.Kind.SES, region="eu-west-1", access_key_id="AKIAEXAMPLE123456"
        )
        account = {
            "SendingEnabled": True,
            "ProductionAccessEnabled": False,
            "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 3.0},
        }
        self.login()
        with mock.patch("boto3.session.Session") as session:
            session.return_value.client.return_value.get_account.return_value = account
            r = self.client.post(self.url(f"senders/{sender.code}/test-connection/"), follow=True)
        self.assertContains(r, "Connected")
        self.assertContains(r, "Sending enabled: yes (sandbox: verified only)")
        self.assertContains(r, "Quota: 200 a day, 3 sent in the last 24 hours, 1 a second")


class AddressTestCase(EspTestCase):
    def test_a_malformed_address_fails_without_a_request(self) -> None:
        sender = self.esp_sender(Sender.Kind.RESEND)
        (bad,) = self.queue(sender, "a@b@example.org")
        with answers() as request:
            self.send(bad)
        request.assert_not_called()
        self.assertEqual(bad.state, Message.State.FAILED)
        self.assertIn("Cannot address the message", bad.last_response)
