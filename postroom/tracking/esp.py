"""Tracking webhooks from email services: deliveries, bounces, complaints, opens, clicks and
unsubscribes, for senders that go through an ESP's API (delivery.transports.anymail).

Each sender has its own webhook URL, /hooks/<sender code>/<signature>/, signed with the site's
secret: the URL is the credential (the services that sign their posts are checked as well:
Mailgun with the sender's webhook signing key, Resend with its signing secret, and Amazon SNS
notifications with Amazon's certificate, which django-anymail leaves unchecked). django-anymail
parses each service's payload into its normalised AnymailTrackingEvent; this module maps those
onto the ledger's message (by the service's message id) and onto our events and suppressions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import warnings
from functools import lru_cache
from importlib import import_module
from urllib.parse import urlsplit

import requests
from anymail.exceptions import AnymailInsecureWebhookWarning
from anymail.signals import AnymailTrackingEvent
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from postroom.delivery.models import Message, Sender
from postroom.tracking import actions, hits
from postroom.tracking.bounces import COMPLAINT, HARD, Report, apply_report
from postroom.tracking.models import Event

log = logging.getLogger(__name__)

TRACKING_VIEWS = {
    Sender.Kind.SES: "anymail.webhooks.amazon_ses.AmazonSESTrackingWebhookView",
    Sender.Kind.POSTMARK: "anymail.webhooks.postmark.PostmarkTrackingWebhookView",
    Sender.Kind.SENDGRID: "anymail.webhooks.sendgrid.SendGridTrackingWebhookView",
    Sender.Kind.MAILGUN: "anymail.webhooks.mailgun.MailgunTrackingWebhookView",
    Sender.Kind.BREVO: "anymail.webhooks.brevo.BrevoTrackingWebhookView",
    Sender.Kind.RESEND: "anymail.webhooks.resend.ResendTrackingWebhookView",
}
# Keys of Sender.esp_options the services that sign their webhooks need. Resend's signature
# (Svix) is checked here (check_svix): django-anymail would need the svix SDK for it.
SIGNING_OPTIONS = {Sender.Kind.MAILGUN: "webhook_signing_key"}
SVIX_OPTION = "signing_secret"
SVIX_TOLERANCE_SECONDS = 300


class WebhookRefused(Exception):
    """The post is not from the service (or not for this sender): answered with a 4xx."""


def signature(sender: Sender) -> str:
    return salted_hmac("postroom.esp-webhook", str(sender.code)).hexdigest()[:32]


def webhook_path(sender: Sender) -> str:
    return f"/hooks/{sender.code}/{signature(sender)}/"


def webhook_url(sender: Sender) -> str:
    return settings.SITE_URL + webhook_path(sender)


def check_signature(sender: Sender, given: str) -> bool:
    return constant_time_compare(signature(sender), given)


def tracking_view(sender: Sender):
    """django-anymail's tracking view for the sender's service, set up with its keys."""
    module, _, name = TRACKING_VIEWS[sender.kind].rpartition(".")
    view_class = getattr(import_module(module), name)
    options = {"webhook_secret": []}  # our signed URL is the credential
    option = SIGNING_OPTIONS.get(sender.kind)
    if option:
        key = (sender.esp_options or {}).get(option, "")
        if not key:
            raise WebhookRefused(f"set the sender's {option} to receive its webhooks")
        options[option] = key
    if sender.kind == Sender.Kind.SES:
        options["auto_confirm_sns_subscriptions"] = False  # confirmed below, once verified
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnymailInsecureWebhookWarning)
        return view_class(**options)


def receive(sender: Sender, request) -> int:
    """Check and parse one webhook post and act on its events; how many were recorded."""
    # Amazon: only a verified notification goes on; a subscription confirmation stops here.
    if sender.kind == Sender.Kind.SES and confirm_subscription(verify_sns(request.body)):
        return 0
    if sender.kind == Sender.Kind.RESEND:
        check_svix(sender, request)
    view = tracking_view(sender)
    try:
        view.run_validators(request)
        events = view.parse_events(request)
    except Exception as e:  # anymail raises its own validation and parse errors
        raise WebhookRefused(str(e)[:300]) from None
    return sum(1 for event in events if handle_event(sender, event))


def handle_event(sender: Sender, event: AnymailTrackingEvent) -> bool:
    """One normalised event onto the ledger's message; False when it is not ours to record
    (an unknown message, or a step we do not record: queued, sent, deferred)."""
    if not event.message_id:
        return False
    message = (
        Message.objects.select_related("contact")
        .filter(sender=sender, provider_id=str(event.message_id)[:255])
        .first()
    )
    if message is None:
        return False
    kind = event.event_type
    if kind == "delivered":
        actions.record(message, Event.Kind.DELIVERED, None, data={"via": sender.kind})
        actions.mark_first(message, "delivered_at")
    elif kind == "bounced":
        diagnostic = event.mta_response or event.description or ""
        apply_report(message, Report(kind=HARD, status=_status(diagnostic), diagnostic=diagnostic))
    elif kind == "complained":
        apply_report(message, Report(kind=COMPLAINT, feedback_type="abuse"))
    elif kind in ("opened", "clicked"):
        hit = Event.Kind.OPENED if kind == "opened" else Event.Kind.CLICKED
        hits.write_hit(
            hits.HitTarget.of(message), hit, event.user_agent or "", event.click_url or ""
        )
    elif kind == "unsubscribed":
        actions.unsubscribe(message, None, sender.get_kind_display())
    elif kind in ("rejected", "failed"):
        reason = event.reject_reason or event.description or kind
        actions.record(message, Event.Kind.FAILED, None, data={"reason": str(reason)[:300]})
    else:
        return False
    return True


STATUS = re.compile(r"\b[45]\.\d{1,3}\.\d{1,3}\b")


def _status(text: str) -> str:
    found = STATUS.search(text or "")
    return found.group(0) if found else ""


# --- Svix (Resend) -----------------------------------------------------------------------------


def check_svix(sender: Sender, request) -> None:
    """Resend signs each post the Svix way: base64 HMAC-SHA256 over "id.timestamp.body" with the
    endpoint's secret (whsec_<base64 key>), in svix-signature as one or more "v1,<sig>"; the
    timestamp must be within five minutes (replays are refused)."""
    secret = (sender.esp_options or {}).get(SVIX_OPTION, "")
    if not secret:
        raise WebhookRefused(f"set the sender's {SVIX_OPTION} to receive its webhooks")
    message_id = request.headers.get("svix-id", "")
    stamp = request.headers.get("svix-timestamp", "")
    given = request.headers.get("svix-signature", "")
    try:
        sent_at = int(stamp)
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except ValueError:
        raise WebhookRefused("the Svix signature headers are missing or malformed") from None
    if abs(time.time() - sent_at) > SVIX_TOLERANCE_SECONDS:
        raise WebhookRefused("the Svix timestamp is too old or in the future")
    signed = f"{message_id}.{stamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = [part.partition(",") for part in given.split()]
    if not any(v == "v1" and constant_time_compare(sig, expected) for v, _, sig in versions):
        raise WebhookRefused("the Svix signature does not verify")


# --- Amazon SNS -------------------------------------------------------------------------------

SNS_CERT_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# The fields each SNS message type signs, in this order (Amazon's "Verifying the signatures
# of Amazon SNS messages").
SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SNS_SIGNED["UnsubscribeConfirmation"] = SNS_SIGNED["SubscriptionConfirmation"]


def verify_sns(body: bytes) -> dict:
    """The SNS message if Amazon signed it; else WebhookRefused."""
    try:
        message = json.loads(body)
    except ValueError:
        raise WebhookRefused("not an SNS message") from None
    if not isinstance(message, dict) or message.get("Type") not in SNS_SIGNED:
        raise WebhookRefused("not an SNS message")
    cert_url = message.get("SigningCertURL", "")
    parts = urlsplit(cert_url)
    if parts.scheme != "https" or not SNS_CERT_HOST.match(parts.hostname or ""):
        raise WebhookRefused("the signing certificate is not Amazon SNS's")
    canonical = "".join(
        f"{key}\n{message[key]}\n" for key in SNS_SIGNED[message["Type"]] if key in message
    ).encode()
    # SignatureVersion 1 is SHA1 with RSA: Amazon's choice for old topics, not ours.
    version_2 = message.get("SignatureVersion") == "2"
    algorithm = hashes.SHA256() if version_2 else hashes.SHA1()  # noqa: S303
    try:
        signature_bytes = base64.b64decode(message.get("Signature", ""))
        certificate = x509.load_pem_x509_certificate(fetch_certificate(cert_url))
        certificate.public_key().verify(signature_bytes, canonical, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError) as e:
        raise WebhookRefused(
            f"the SNS signature does not verify ({e.__class__.__name__})"
        ) from None
    return message


@lru_cache(maxsize=16)
def fetch_certificate(url: str) -> bytes:
    """Amazon's signing certificate (kept: SNS signs with one for months)."""
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.content


def confirm_subscription(message: dict) -> bool:
    """A verified SubscriptionConfirmation: visit its SubscribeURL (Amazon's own, checked)."""
    if message.get("Type") != "SubscriptionConfirmation":
        return False
    url = message.get("SubscribeURL", "")
    if urlsplit(url).scheme == "https" and SNS_CERT_HOST.match(urlsplit(url).hostname or ""):
        requests.get(url, timeout=10)
    return True
