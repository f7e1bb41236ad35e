"""Email services' APIs (Amazon SES, Postmark, SendGrid, Mailgun, Brevo, Resend) through
django-anymail, one backend connection kept open between batches.

Each message goes out as its own API call with one recipient, and the service's answer is
sorted like an SMTP reply: accepted -> SENT with the service's message id; the recipient or
the message refused -> FAILED with the service's words; rate limited, down or unreachable ->
DEFERRED; the key refused or the account or sending domain unusable -> SenderUnavailable,
which pauses the sender and fails nobody.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

import requests
from anymail.exceptions import AnymailAPIError, AnymailError
from anymail.message import AnymailStatus
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from postroom.delivery.mime import HEADER_NAME, id_domain
from postroom.delivery.models import Message, Sender
from postroom.delivery.transports.base import (
    DEFERRED,
    FAILED,
    SENT,
    Outcome,
    Parcel,
    SenderUnavailable,
    Transport,
)
from postroom.lib.crypto import SecretUnreadable
from postroom.lib.emails import one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Esp:
    name: str
    backend: str  # the anymail backend's dotted path
    api_url: str  # its default API URL (the connection test asks it too)
    required: tuple[str, ...] = ()  # keys of Sender.esp_options a sender must have
    optional: tuple[str, ...] = ()


ESPS: dict[str, Esp] = {
    Sender.Kind.SES: Esp(
        "Amazon SES",
        "anymail.backends.amazon_ses.EmailBackend",
        "",
        required=("region", "access_key_id"),
        optional=("configuration_set",),
    ),
    Sender.Kind.POSTMARK: Esp(
        "Postmark",
        "anymail.backends.postmark.EmailBackend",
        "https://api.postmarkapp.com/",
        optional=("message_stream",),
    ),
    Sender.Kind.SENDGRID: Esp(
        "SendGrid",
        "anymail.backends.sendgrid.EmailBackend",
        "https://api.sendgrid.com/v3/",
        optional=("api_url",),
    ),
    Sender.Kind.MAILGUN: Esp(
        "Mailgun",
        "anymail.backends.mailgun.EmailBackend",
        "https://api.mailgun.net/v3/",
        required=("sender_domain",),
        optional=("api_url",),
    ),
    Sender.Kind.BREVO: Esp(
        "Brevo", "anymail.backends.brevo.EmailBackend", "https://api.brevo.com/v3/"
    ),
    Sender.Kind.RESEND: Esp(
        "Resend", "anymail.backends.resend.EmailBackend", "https://api.resend.com/"
    ),
}

# Headers the message's own fields set; a copy in Email.headers would contradict them.
OWN_HEADERS = {
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "reply-to",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}
# Refusals that concern the whole sender, not one message: the key, the account, the domain.
# 404: the API does not know the sending domain or the URL is wrong (Mailgun "Domain not found").
SENDER_WIDE_HTTP = {401, 403, 404}
# Postmark answers 422 with these: no or unconfirmed sender signature, not allowed to send
# (no credits), account pending approval.
POSTMARK_SENDER_WIDE = {10, 400, 401, 405, 412}
SES_SENDER_WIDE = {
    "AccessDeniedException",
    "AccountSuspendedException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
    "SendingPausedException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}
SES_SLOW_DOWN = {
    "LimitExceededException",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
}


def clip(text: str) -> str:
    return " ".join(str(text).split())[:500]


def esp_words(body: Any) -> str:
    """What the service said, from the error or success bodies the six services send."""
    if isinstance(body, requests.Response):
        try:
            body = body.json()
        except ValueError:
            return clip(body.text)
    if isinstance(body, dict):
        if isinstance(body.get("Error"), dict):  # boto3's ClientError.response
            error = body["Error"]
            return clip(f"{error.get('Code', '')}: {error.get('Message', '')}")
        errors = body.get("errors")  # SendGrid
        if isinstance(errors, list) and errors:
            return clip(
                "; ".join(str(e.get("message", e) if isinstance(e, dict) else e) for e in errors)
            )
        for key in ("Message", "message", "error"):
            if body.get(key):
                return clip(body[key])
        return ""
    return clip(body) if body else ""


def http_status(response: Any) -> int | None:
    if isinstance(response, requests.Response):
        return response.status_code
    if isinstance(response, dict):  # boto3
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def backend_kwargs(sender: Sender, esp: Esp) -> dict[str, Any]:
    """The anymail backend's settings, given as get_connection() keyword arguments."""
    options = sender.esp_options or {}
    key = sender.api_key
    if not key:
        raise SenderUnavailable(f"No {esp.name} API key is stored: edit the sender.")
    # We read every recipient's status ourselves instead of having anymail raise.
    kwargs: dict[str, Any] = {"ignore_recipient_status": True}
    if sender.kind == Sender.Kind.SES:
        kwargs["session_params"] = ses_session_params(sender)
        kwargs["client_params"] = {"config": ses_config(sender)}
        kwargs["configuration_set_name"] = options.get("configuration_set") or None
        return kwargs
    kwargs["timeout"] = sender.timeout
    if sender.kind == Sender.Kind.POSTMARK:
        kwargs["server_token"] = key
        kwargs["message_stream"] = options.get("message_stream") or None
    else:
        kwargs["api_key"] = key
    if sender.kind == Sender.Kind.MAILGUN:
        kwargs["sender_domain"] = options.get("sender_domain")
    if options.get("api_url"):
        kwargs["api_url"] = options["api_url"]
    return kwargs


def ses_session_params(sender: Sender) -> dict[str, str]:
    options = sender.esp_options or {}
    return {
        "aws_access_key_id": options.get("access_key_id", ""),
        "aws_secret_access_key": sender.api_key,
        "region_name": options.get("region", ""),
    }


def ses_config(sender: Sender) -> dict[str, Any]:
    # One retry at most: a batch must finish well inside its lease (Message.LEASE).
    t = sender.timeout
    return {"connect_timeout": t, "read_timeout": t, "retries": {"total_max_attempts": 2}}


class AnymailTransport(Transport):
    conn: BaseEmailBackend | None = None
    # Set once the service is rate limiting us or cannot be reached: the rest of the batch
    # is deferred without trying, so one batch never waits out a timeout per message.
    halted: str = ""

    def __init__(self, sender: Sender):
        super().__init__(sender)
        self.esp = ESPS[sender.kind]

    def connect(self) -> BaseEmailBackend:
        try:
            conn = get_connection(self.esp.backend, **backend_kwargs(self.sender, self.esp))
            conn.open()
        except SecretUnreadable as e:
            raise SenderUnavailable(f"{e}: enter the {self.esp.name} API key again.") from e
        except (ImportError, ImproperlyConfigured, AnymailError) as e:
            raise SenderUnavailable(f"{self.esp.name} is not set up: {clip(e)}") from e
        except SenderUnavailable:
            raise
        except Exception as e:  # boto3 refusing a region name, and the like
            raise SenderUnavailable(f"{self.esp.name} client: {clip(e)}") from e
        return conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing an HTTP session; nothing is lost
                log.exception("closing the %s connection", self.esp.name)
            self.conn = None

    def open(self) -> None:
        if self.conn is None:
            self.conn = self.connect()

    def send_many(self, parcels, size, outcomes, heartbeat=None) -> None:
        self.halted = ""  # a new batch tries the service again
        super().send_many(parcels, size, outcomes, heartbeat)

    def send(self, parcel: Parcel) -> Outcome:
        # The parcel's envelope sender and bytes are for SMTP: the services set their own
        # Return-Path and build the MIME from the fields.
        message = parcel.message
        if self.halted:
            return Outcome(DEFERRED, f"Not tried: {self.halted}"[:500])
        self.open()
        try:
            mail = self.build(message)
            self.conn.send_messages([mail])
        except AnymailAPIError as e:
            return self.refused(message, e)
        except AnymailError as e:  # an address or feature this service cannot take
            return Outcome(FAILED, clip(f"{self.esp.name}: {' '.join(map(str, e.args))}"))
        except (ValueError, HeaderParseError) as e:  # from Address(): a malformed address
            return Outcome(FAILED, clip(f"Cannot address the message: {e}"))
        except Exception as e:
            log.exception("%s send of message %s", self.esp.name, message.pk)
            return Outcome(DEFERRED, clip(f"{self.esp.name}: unexpected error: {e!r}"))
        return self.accepted(mail.anymail_status)

    def build(self, message: Message) -> EmailMultiAlternatives:
        email = message.email
        headers = {"Message-ID": message.message_id(id_domain(email))}
        for name, value in (email.headers or {}).items():
            if HEADER_NAME.match(name) and name.lower() not in OWN_HEADERS:
                headers[name] = one_line(str(value))
        mail = EmailMultiAlternatives(
            subject=one_line(email.subject),
            body=email.text or "",
            from_email=str(Address(one_line(email.from_name), addr_spec=email.from_email)),
            to=[str(Address(one_line(message.to_name), addr_spec=message.to_email))],
            reply_to=[one_line(email.reply_to)] if email.reply_to else [],
            headers=headers,
        )
        if email.html:
            mail.attach_alternative(email.html, "text/html")
        return mail

    def answer(self, status: int | None, words: str) -> str:
        return clip(f"{status} {self.esp.name}: {words}" if status else f"{self.esp.name}: {words}")

    def accepted(self, status: AnymailStatus) -> Outcome:
        recipient = next(iter(status.recipients.values()), None)
        code = http_status(status.esp_response) or 200
        state = recipient.status if recipient else "unknown"
        response = self.answer(code, esp_words(status.esp_response) or state)
        if state in ("rejected", "failed", "invalid") or not 200 <= code < 300:
            return Outcome(FAILED, response)
        return Outcome(SENT, response, provider_id=str(recipient.message_id or ""))

    def refused(self, message: Message, e: AnymailAPIError) -> Outcome:
        code = http_status(e.response)
        if e.response is None:  # never reached the service: DNS, refused, timed out
            self.halted = self.answer(None, f"cannot reach the API: {clip(e.__cause__ or e)}")
            return Outcome(DEFERRED, self.halted)
        words = esp_words(e.response)
        response = self.answer(code, words)
        if self.is_sender_wide(message, e, code, words):
            raise SenderUnavailable(response)
        if code is not None and 200 <= code < 300:
            # The service took it but its answer was unreadable: do not send it twice.
            return Outcome(SENT, response)
        if code == 429 or self.ses_error_code(e) in SES_SLOW_DOWN:
            self.halted = response
            return Outcome(DEFERRED, response)
        if code is None or code == 408 or code >= 500:
            return Outcome(DEFERRED, response)
        return Outcome(FAILED, response)

    def is_sender_wide(self, message: Message, e: AnymailAPIError, code, words: str) -> bool:
        if code in SENDER_WIDE_HTTP:
            return True
        if self.sender.kind == Sender.Kind.POSTMARK and isinstance(e.response, requests.Response):
            try:
                return e.response.json().get("ErrorCode") in POSTMARK_SENDER_WIDE
            except (ValueError, AttributeError):
                return False
        if self.sender.kind == Sender.Kind.SES:
            error = self.ses_error_code(e)
            if error in SES_SENDER_WIDE:
                return True
            # In the sandbox an unverified From is refused like an unverified recipient:
            # "Email address is not verified. The following identities failed the check in
            # region EU-WEST-1: news@example.com, ann@example.org"
            if error == "MessageRejected" and "not verified" in words:
                identities = {i.strip().lower() for i in words.rsplit(":", 1)[-1].split(",")}
                from_email = message.email.from_email.lower()
                return bool(identities & {from_email, from_email.rsplit("@", 1)[-1]})
        return False

    @staticmethod
    def ses_error_code(e: AnymailAPIError) -> str:
        if isinstance(e.response, dict):
            return e.response.get("Error", {}).get("Code", "")
        return ""

    def test_connection(self) -> list[str]:
        try:
            key = self.sender.api_key
        except SecretUnreadable as e:
            raise SenderUnavailable(f"{e}: enter the {self.esp.name} API key again.") from e
        if not key:
            raise SenderUnavailable(f"No {self.esp.name} API key is stored: edit the sender.")
        if self.sender.kind == Sender.Kind.SES:
            return self.test_ses()
        return self.test_http(key)

    def probe(self, key: str) -> tuple[str, dict[str, Any]]:
        """A cheap authenticated GET: the path under the API URL and the request's auth."""
        options = self.sender.esp_options or {}
        bearer = {"Authorization": f"Bearer {key}"}
        match self.sender.kind:
            case Sender.Kind.POSTMARK:
                return "server", {"headers": {"X-Postmark-Server-Token": key}}
            case Sender.Kind.SENDGRID:
                return "scopes", {"headers": bearer}
            case Sender.Kind.MAILGUN:
                return f"domains/{options.get('sender_domain', '')}", {"auth": ("api", key)}
            case Sender.Kind.BREVO:
                return "account", {"headers": {"api-key": key}}
            case _:
                return "domains", {"headers": bearer}

    def test_http(self, key: str) -> list[str]:
        base = (self.sender.esp_options or {}).get("api_url") or self.esp.api_url
        path, auth = self.probe(key)
        url = base.rstrip("/") + "/" + path
        lines = [f"GET {url}"]
        headers = {"Accept": "application/json", **auth.pop("headers", {})}
        try:
            r = requests.request("GET", url, headers=headers, timeout=self.sender.timeout, **auth)
        except requests.RequestException as e:
            raise SenderUnavailable(f"cannot reach {url}: {clip(e)}") from e
        words = esp_words(r)
        restricted = self.sender.kind == Sender.Kind.RESEND and "restricted_api_key" in r.text
        if r.status_code == 401 and restricted:
            # A sending-only Resend key may not list domains; that it was recognised is enough.
            return [*lines, clip(f"401 {words}"), "The key is restricted to sending: it works."]
        if r.status_code in (401, 403):
            raise SenderUnavailable(f"{self.esp.name} refused the key: {r.status_code} {words}")
        if not 200 <= r.status_code < 300:
            raise SenderUnavailable(f"{self.esp.name} answered {r.status_code} {r.reason}: {words}")
        return [*lines, f"{r.status_code} {r.reason}", clip(r.text)[:300]]

    def test_ses(self) -> list[str]:
        region = (self.sender.esp_options or {}).get("region", "")
        try:
            import boto3
            from botocore.client import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            return [
                "boto3 is not installed: only the settings were checked (a key, an access "
                f"key id and the region {region or '(none)'} are stored)."
            ]
        lines = [f"Amazon SES (API v2) GetAccount in {region}"]
        try:
            session = boto3.session.Session(**ses_session_params(self.sender))
            client = session.client("sesv2", config=Config(**ses_config(self.sender)))
            account = client.get_account()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "AccessDeniedException":
                # The key was recognised; it may only be allowed to send, which is enough.
                return [*lines, clip(f"{esp_words(e.response)}"), "The key is valid."]
            raise SenderUnavailable(f"Amazon SES refused: {esp_words(e.response)}") from e
        except (BotoCoreError, ValueError) as e:
            raise SenderUnavailable(f"Amazon SES in {region}: {clip(e)}") from e
        quota = account.get("SendQuota", {})
        sandbox = "" if account.get("ProductionAccessEnabled") else " (sandbox: verified only)"
        return [
            *lines,
            f"Sending enabled: {'yes' if account.get('SendingEnabled') else 'no'}{sandbox}",
            f"Quota: {quota.get('Max24HourSend', 0):.0f} a day, "
            f"{quota.get('SentLast24Hours', 0):.0f} sent in the last 24 hours, "
            f"{quota.get('MaxSendRate', 0):.0f} a second",
        ]
