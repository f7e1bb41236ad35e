"""Email services' tracking webhooks (tracking.esp), with payloads as the services post them."""

from __future__ import annotations

import base64
import datetime as dt
import json
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from postroom.contacts.models import Contact, Status, Suppression
from postroom.delivery.models import Email, Message, Sender
from postroom.test import BaseTestCase
from postroom.tracking import esp
from postroom.tracking.models import Event

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0"


class EspWebhookTestCase(BaseTestCase):
    kind = Sender.Kind.POSTMARK

    def setUp(self) -> None:
        super().setUp()
        self.sender = Sender.objects.create(
            project=self.project, name="ESP", kind=self.kind, from_email="news@example.com"
        )
        email = Email.objects.create(
            project=self.project,
            kind=Email.Kind.TRANSACTIONAL,
            sender=self.sender,
            from_email="news@example.com",
            subject="S",
            text="B",
        )
        self.contact = self.make_contact("ann@example.com")
        self.message = Message.objects.create(
            project=self.project,
            email=email,
            sender=self.sender,
            contact=self.contact,
            to_email="ann@example.com",
            state=Message.State.SENT,
            provider_id="pm-123",
            sent_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )

    def post(self, payload, sender: Sender | None = None, **headers):
        body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        path = esp.webhook_path(sender or self.sender)
        return self.client.post(path, body, content_type="application/json", **headers)


class PostmarkTest(EspWebhookTestCase):
    def test_a_delivery_is_recorded(self) -> None:
        r = self.post(
            {
                "RecordType": "Delivery",
                "MessageID": "pm-123",
                "Recipient": "ann@example.com",
                "DeliveredAt": "2026-01-01T10:00:00Z",
                "Details": "Test delivery",
            }
        )
        self.assertEqual(r.json(), {"recorded": 1})
        event = Event.objects.get(kind=Event.Kind.DELIVERED)
        self.assertEqual((event.message_id, event.contact_id), (self.message.id, self.contact.id))
        self.message.refresh_from_db()
        self.assertEqual(self.message.outcome, ("delivered", "Delivered"))

    def test_a_hard_bounce_suppresses(self) -> None:
        self.post(
            {
                "RecordType": "Bounce",
                "MessageID": "pm-123",
                "Type": "HardBounce",
                "TypeCode": 1,
                "Email": "ann@example.com",
                "BouncedAt": "2026-01-01T10:00:00Z",
                "Description": "The server was unable to deliver your message",
                "Details": "smtp;550 5.1.1 The email account does not exist",
            }
        )
        self.assertEqual(Event.objects.get(kind=Event.Kind.BOUNCED).data["status"], "5.1.1")
        self.assertTrue(Suppression.objects.filter(email="ann@example.com").exists())
        self.assertEqual(Contact.objects.get(pk=self.contact.pk).status, Status.BOUNCED)

    def test_a_spam_complaint_unsubscribes_and_suppresses(self) -> None:
        self.post(
            {
                "RecordType": "SpamComplaint",
                "MessageID": "pm-123",
                "Type": "SpamComplaint",
                "Email": "ann@example.com",
                "BouncedAt": "2026-01-01T10:00:00Z",
            }
        )
        self.assertEqual(Contact.objects.get(pk=self.contact.pk).status, Status.COMPLAINED)
        self.assertTrue(Event.objects.filter(kind=Event.Kind.COMPLAINED).exists())

    def test_an_open_by_a_person_marks_the_message(self) -> None:
        self.post(
            {
                "RecordType": "Open",
                "MessageID": "pm-123",
                "Recipient": "ann@example.com",
                "ReceivedAt": "2026-01-01T11:00:00Z",
                "UserAgent": BROWSER,
            }
        )
        event = Event.objects.get(kind=Event.Kind.OPENED)
        self.assertFalse(event.machine)
        self.message.refresh_from_db()
        self.assertIsNotNone(self.message.opened_at)

    def test_a_wrong_signature_or_another_sender_is_a_404(self) -> None:
        path = esp.webhook_path(self.sender)
        bad = path.replace(esp.signature(self.sender), "0" * 32)
        r = self.client.post(bad, "{}", content_type="application/json")
        self.assertEqual(r.status_code, 404)
        mailbox = Sender.objects.get(project=self.project, kind=Sender.Kind.MAILBOX)
        self.assertEqual(self.post({}, sender=mailbox).status_code, 404)

    def test_an_unknown_message_records_nothing(self) -> None:
        r = self.post(
            {
                "RecordType": "Delivery",
                "MessageID": "someone-elses",
                "Recipient": "x@example.com",
                "DeliveredAt": "2026-01-01T10:00:00Z",
            }
        )
        self.assertEqual(r.json(), {"recorded": 0})
        self.assertFalse(Event.objects.exists())

    def test_a_malformed_post_is_a_400(self) -> None:
        r = self.post("not json")
        self.assertEqual(r.status_code, 400)
        self.assertIn("message", r.json())


class SendGridTest(EspWebhookTestCase):
    kind = Sender.Kind.SENDGRID

    def test_a_batch_of_events(self) -> None:
        self.message.provider_id = "sg-1"
        self.message.save()
        r = self.post(
            [
                {
                    "email": "ann@example.com",
                    "timestamp": 1767261600,
                    "event": "delivered",
                    "anymail_id": "sg-1",
                    "response": "250 OK",
                },
                {
                    "email": "ann@example.com",
                    "timestamp": 1767265200,
                    "event": "click",
                    "anymail_id": "sg-1",
                    "url": "https://example.com/a",
                    "useragent": BROWSER,
                },
                {
                    "email": "ann@example.com",
                    "timestamp": 1767265300,
                    "event": "unsubscribe",
                    "anymail_id": "sg-1",
                },
            ]
        )
        self.assertEqual(r.json(), {"recorded": 3})
        self.assertEqual(Event.objects.get(kind=Event.Kind.CLICKED).url, "https://example.com/a")
        self.assertEqual(Contact.objects.get(pk=self.contact.pk).status, Status.UNSUBSCRIBED)


def make_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class AmazonSesTest(EspWebhookTestCase):
    kind = Sender.Kind.SES
    CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"

    def setUp(self) -> None:
        super().setUp()
        self.message.provider_id = "0102018c-ses-id"
        self.message.save()
        self.key, pem = make_certificate()
        patcher = mock.patch.object(esp, "fetch_certificate", return_value=pem)
        patcher.start()
        self.addCleanup(patcher.stop)

    def notification(self, ses_event: dict, **changes) -> dict:
        message = {
            "Type": "Notification",
            "MessageId": "sns-1",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
            "Message": json.dumps(ses_event),
            "Timestamp": "2026-01-01T10:00:00.000Z",
            "SignatureVersion": "2",
            "SigningCertURL": self.CERT_URL,
        }
        canonical = "".join(
            f"{k}\n{message[k]}\n" for k in esp.SNS_SIGNED["Notification"] if k in message
        ).encode()
        signature = self.key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
        message["Signature"] = base64.b64encode(signature).decode()
        message.update(changes)
        return message

    def post_sns(self, message: dict):
        return self.post(
            message,
            HTTP_X_AMZ_SNS_MESSAGE_TYPE=message["Type"],
            HTTP_X_AMZ_SNS_MESSAGE_ID=message["MessageId"],
        )

    BOUNCE = {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "ann@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-01-01T10:00:00.000Z",
            "feedbackId": "f-1",
        },
        "mail": {
            "timestamp": "2026-01-01T09:59:59.000Z",
            "messageId": "0102018c-ses-id",
            "destination": ["ann@example.com"],
        },
    }

    def test_a_signed_bounce_notification_is_recorded(self) -> None:
        r = self.post_sns(self.notification(self.BOUNCE))
        self.assertEqual(r.json(), {"recorded": 1})
        self.assertTrue(Suppression.objects.filter(email="ann@example.com").exists())

    def test_a_tampered_notification_is_refused(self) -> None:
        message = self.notification(self.BOUNCE)
        message["Message"] = message["Message"].replace("ann@", "bob@")
        r = self.post_sns(message)
        self.assertEqual(r.status_code, 400)
        self.assertIn("does not verify", r.json()["message"])
        self.assertFalse(Event.objects.exists())

    def test_a_certificate_from_elsewhere_is_refused(self) -> None:
        message = self.notification(self.BOUNCE, SigningCertURL="https://evil.example.net/cert.pem")
        r = self.post_sns(message)
        self.assertEqual(r.status_code, 400)
        self.assertIn("not Amazon SNS", r.json()["message"])


class SenderPageTest(EspWebhookTestCase):
    def test_the_sender_page_shows_its_webhook_address(self) -> None:
        self.login()
        r = self.client.get(self.url(f"senders/{self.sender.code}/"))
        self.assertContains(r, esp.webhook_url(self.sender))


class MailgunTest(EspWebhookTestCase):
    kind = Sender.Kind.MAILGUN
    KEY = "key-mailgun-signing"

    def setUp(self) -> None:
        super().setUp()
        self.sender.esp_options = {"webhook_signing_key": self.KEY}
        self.sender.save()
        self.message.provider_id = "<20260101.1@mg.example.com>"
        self.message.save()

    def payload(self, event: str, key: str | None = None, **data) -> dict:
        import hashlib
        import hmac

        timestamp, token = "1767261600", "a" * 50
        signature = hmac.new(
            (key or self.KEY).encode(), f"{timestamp}{token}".encode(), hashlib.sha256
        ).hexdigest()
        return {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {
                "event": event,
                "timestamp": 1767261600.5,
                "id": "ev-1",
                "recipient": "ann@example.com",
                "message": {"headers": {"message-id": "20260101.1@mg.example.com"}},
                **data,
            },
        }

    def test_a_signed_delivery_is_recorded(self) -> None:
        r = self.post(self.payload("delivered", **{"delivery-status": {"code": 250}}))
        self.assertEqual(r.json(), {"recorded": 1})
        self.assertTrue(Event.objects.filter(kind=Event.Kind.DELIVERED).exists())

    def test_a_permanent_failure_is_a_hard_bounce(self) -> None:
        failure = {
            "severity": "permanent",
            "reason": "bounce",
            "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
        }
        self.post(self.payload("failed", **failure))
        self.assertTrue(Suppression.objects.filter(email="ann@example.com").exists())

    def test_a_wrong_signature_is_refused(self) -> None:
        r = self.post(self.payload("delivered", key="someone-elses"))
        self.assertEqual(r.status_code, 400)
        self.assertFalse(Event.objects.exists())

    def test_without_a_signing_key_the_webhook_says_what_to_set(self) -> None:
        self.sender.esp_options = {}
        self.sender.save()
        r = self.post(self.payload("delivered"))
        self.assertEqual(r.status_code, 400)
        self.assertIn("webhook_signing_key", r.json()["message"])


class ResendTest(EspWebhookTestCase):
    kind = Sender.Kind.RESEND
    KEY = b"resend-endpoint-key-0123456789ab"

    def setUp(self) -> None:
        super().setUp()
        secret = "whsec_" + base64.b64encode(self.KEY).decode()
        self.sender.esp_options = {"signing_secret": secret}
        self.sender.save()
        self.message.provider_id = "re-1"
        self.message.save()

    def post_signed(self, payload: dict, key: bytes | None = None, stamp: int | None = None):
        import hashlib
        import hmac
        import time

        body = json.dumps(payload).encode()
        stamp = stamp if stamp is not None else int(time.time())
        signed = f"msg_1.{stamp}.".encode() + body
        sig = base64.b64encode(hmac.new(key or self.KEY, signed, hashlib.sha256).digest())
        return self.post(
            body,
            HTTP_SVIX_ID="msg_1",
            HTTP_SVIX_TIMESTAMP=str(stamp),
            HTTP_SVIX_SIGNATURE=f"v1,{sig.decode()}",
        )

    DELIVERED = {
        "type": "email.delivered",
        "created_at": "2026-01-01T10:00:00.000Z",
        "data": {
            "email_id": "re-1",
            "from": "news@example.com",
            "to": ["ann@example.com"],
            "subject": "S",
            "created_at": "2026-01-01T09:59:59.000Z",
        },
    }

    def test_a_signed_delivery_is_recorded(self) -> None:
        r = self.post_signed(self.DELIVERED)
        self.assertEqual(r.json(), {"recorded": 1})
        self.assertTrue(Event.objects.filter(kind=Event.Kind.DELIVERED).exists())

    def test_a_wrong_signature_or_an_old_timestamp_is_refused(self) -> None:
        r = self.post_signed(self.DELIVERED, key=b"another-key")
        self.assertEqual(r.status_code, 400)
        self.assertIn("does not verify", r.json()["message"])
        r = self.post_signed(self.DELIVERED, stamp=1_000_000_000)
        self.assertEqual(r.status_code, 400)
        self.assertIn("too old", r.json()["message"])
        self.assertFalse(Event.objects.exists())


class BrevoTest(EspWebhookTestCase):
    kind = Sender.Kind.BREVO

    def test_a_hard_bounce_suppresses(self) -> None:
        self.message.provider_id = "<202601011000.123@smtp-relay.mailin.fr>"
        self.message.save()
        r = self.post(
            {
                "event": "hard_bounce",
                "email": "ann@example.com",
                "id": 1,
                "date": "2026-01-01 10:00:00",
                "ts": 1767261600,
                "message-id": "<202601011000.123@smtp-relay.mailin.fr>",
                "ts_event": 1767261600,
                "subject": "S",
                "reason": "550 5.1.1 unknown user",
            }
        )
        self.assertEqual(r.json(), {"recorded": 1})
        self.assertTrue(Suppression.objects.filter(email="ann@example.com").exists())
