"""Multi-step writes for senders and messages."""

from __future__ import annotations

import binascii
import json
import mimetypes
import re
from base64 import b64decode, b64encode
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from postroom.accounts.models import Project, User
from postroom.contacts.actions import Upsert, upsert_contact
from postroom.content.actions import check_content
from postroom.content.models import Template
from postroom.content.render import HTML, Source, prepare
from postroom.content.sandbox import TemplateProblem
from postroom.delivery import dkim, dnscheck
from postroom.delivery.mime import HEADER_NAME
from postroom.delivery.models import DkimKey, Email, Message, Sender
from postroom.delivery.transports import transport_for
from postroom.delivery.transports.base import SenderUnavailable
from postroom.lib.crypto import encrypt
from postroom.lib.emails import (
    InvalidEmail,
    ascii_domain,
    normalise_email,
    normalise_sender_email,
    one_line,
)


class DeliveryError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def mailbox_from_address() -> str:
    host = settings.SITE_URL.split("://", 1)[-1].split("/")[0].split(":")[0] or "localhost"
    return f"postroom@{host if '.' in host else host + '.localdomain'}"


def create_default_sender(project: Project) -> Sender:
    """Every project starts with the Mailbox as its default sender: sending works at once."""
    return Sender.objects.create(
        project=project,
        name="Mailbox",
        kind=Sender.Kind.MAILBOX,
        is_default=True,
        from_email=mailbox_from_address(),
        from_name=one_line(project.name)[:100],
    )


def default_sender(project: Project) -> Sender:
    sender = Sender.objects.filter(project=project, is_default=True).first()
    return sender or create_default_sender(project)


@transaction.atomic
def make_default(sender: Sender) -> None:
    Sender.objects.filter(project=sender.project, is_default=True).update(is_default=False)
    Sender.objects.filter(pk=sender.pk).update(is_default=True)


def check_from(sender: Sender, from_email: str) -> str:
    try:
        address = normalise_sender_email(from_email)
    except InvalidEmail as e:
        raise DeliveryError("from_email", str(e)) from None
    if address.rsplit("@", 1)[-1] not in sender.allowed_domains():
        allowed = ", ".join(sorted(sender.allowed_domains()))
        raise DeliveryError("from_email", f"{sender.name} may send from {allowed} only.")
    return address


@transaction.atomic
def send_test_email(project: Project, sender: Sender, to: str, user: User | None) -> Message:
    """Queue a short test message through `sender`, ahead of campaign mail."""
    try:
        to_email = normalise_email(to)
    except InvalidEmail as e:
        raise DeliveryError("to", str(e)) from None
    who = f" by {user.email}" if user else ""
    email = Email.objects.create(
        project=project,
        kind=Email.Kind.TEST,
        sender=sender,
        from_email=sender.from_email,
        from_name=sender.from_name,
        subject=f"Postroom test email from {one_line(project.name)}",
        text=(
            f"This is a test email sent{who} through the sender “{sender.name}” of the "
            f"project “{project.name}”.\n\nIf you can read this, the sender works.\n"
        ),
    )
    return Message.objects.create(
        project=project,
        email=email,
        sender=sender,
        to_email=to_email,
        priority=Message.Priority.TRANSACTIONAL,
    )


@transaction.atomic
def queue_system_email(
    project: Project, contact, subject: str, text: str, to_email: str | None = None
) -> Message:
    """A short transactional message from the project to one of its contacts, or to an
    address that is no contact yet (`to_email`, contact None: a signup's confirmation
    link), through the project's default sender, ahead of campaign mail."""
    sender = default_sender(project)
    email = Email.objects.create(
        project=project,
        kind=Email.Kind.TRANSACTIONAL,
        sender=sender,
        from_email=sender.from_email,
        from_name=sender.from_name,
        subject=one_line(subject),
        text=text,
    )
    return Message.objects.create(
        project=project,
        email=email,
        sender=sender,
        contact=contact,
        to_email=to_email or contact.email,
        priority=Message.Priority.TRANSACTIONAL,
    )


def test_connection(sender: Sender) -> tuple[bool, list[str]]:
    """Connect as the worker would and return the server's own answers."""
    try:
        return True, transport_for(sender).test_connection()
    except SenderUnavailable as e:
        return False, [str(e)]


def resume_sender(sender: Sender) -> None:
    Sender.objects.filter(pk=sender.pk).update(paused_reason="", paused_at=None)


@transaction.atomic
def retry_message(message: Message) -> bool:
    """Send a failed or deferred message again now. False if it is in another state."""
    return bool(
        Message.objects.filter(
            pk=message.pk, state__in=[Message.State.FAILED, Message.State.DEFERRED]
        ).update(state=Message.State.QUEUED, next_attempt_at=None, updated_at=timezone.now())
    )


# --- DKIM ----------------------------------------------------------------------------------


def create_dkim_key(project: Project, domain: str, algorithm: str) -> DkimKey:
    """A new key for `domain`, inactive until its DNS record is found. The selector names
    the month, so that a rotation gets a new one: postroom-202611."""
    try:
        domain = ascii_domain(f"x@{domain.strip().lower()}").split("@", 1)[1]
    except InvalidEmail as e:
        raise DeliveryError("domain", str(e)) from None
    base = f"postroom-{timezone.now():%Y%m}"
    selector, n = base, 1
    while DkimKey.objects.filter(project=project, domain=domain, selector=selector).exists():
        n += 1
        selector = f"{base}-{n}"
    pem, public = dkim.generate(algorithm)
    return DkimKey.objects.create(
        project=project,
        domain=domain,
        selector=selector,
        algorithm=algorithm,
        private_key_encrypted=encrypt(pem.decode("ascii")),
        public_key=public,
    )


def check_dkim_dns(key: DkimKey) -> list[dict]:
    """Look the domain's records up; a key whose record is found becomes active."""
    results = dnscheck.check_domain(key)
    key.check_result, key.checked_at = results, timezone.now()
    if results[0]["status"] == dnscheck.OK:
        key.active = True
    key.save(update_fields=["check_result", "checked_at", "active"])
    return results


def signers_for(project_id: int, domains: set[str]) -> dict[str, dkim.Signer]:
    """The newest active key of each domain, as signers (cached: loading a key costs)."""
    keys = DkimKey.objects.filter(project_id=project_id, domain__in=domains, active=True)
    signers = {}
    for key in keys.order_by("domain", "-created_at"):
        if key.domain not in signers:
            cache_key = (key.pk, key.private_key_encrypted[-16:])
            if cache_key not in SIGNERS:
                SIGNERS[cache_key] = dkim.Signer(
                    key.domain, key.selector, key.algorithm, key.private_pem
                )
            signers[key.domain] = SIGNERS[cache_key]
    return signers


SIGNERS: dict[tuple, dkim.Signer] = {}


# --- transactional sends (the send API, Plunk's body) ------------------------------------------

MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # all of a send's files together, decoded
MAX_DATA_BYTES = 32_768
MAX_HEADERS = 20
CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
# Headers Postroom writes itself: a caller may not set or repeat them.
OUR_HEADERS = {
    "bcc",
    "cc",
    "content-disposition",
    "content-transfer-encoding",
    "content-type",
    "date",
    "dkim-signature",
    "from",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "message-id",
    "mime-version",
    "received",
    "reply-to",
    "return-path",
    "sender",
    "subject",
    "to",
}


@dataclass
class Recipient:
    email: str
    name: str = ""


@dataclass
class Transactional:
    """One send: what the API's POST /send asks for, in our terms."""

    to: list[Recipient]
    subject: str
    body: str = ""
    format: str = HTML  # html, markdown or text
    template: Template | None = None
    sender: Sender | None = None
    from_email: str = ""
    from_name: str | None = None
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[dict] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    subscribed: bool = False
    skip_unsubscribed: bool = False
    track_opens: bool = True
    track_links: bool = True


def clean_recipients(recipients: list[Recipient]) -> list[Recipient]:
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise DeliveryError("to", f"name 1 to {MAX_RECIPIENTS} recipients.")
    cleaned: dict[str, Recipient] = {}
    for i, recipient in enumerate(recipients):
        where = "to" if len(recipients) == 1 else f"to.{i}"
        try:
            address = normalise_email(recipient.email)
        except InvalidEmail as e:
            raise DeliveryError(where, str(e)) from None
        if any(c in recipient.name for c in "\r\n") or len(recipient.name) > 100:
            raise DeliveryError(where, "a name is one line of at most 100 characters.")
        cleaned.setdefault(address, Recipient(address, recipient.name.strip()))
    return list(cleaned.values())


def clean_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise DeliveryError("headers", f"at most {MAX_HEADERS} headers.")
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise DeliveryError(f"headers.{name}", "a header name is letters, digits and -.")
        if name.lower() in OUR_HEADERS:
            raise DeliveryError(f"headers.{name}", "Postroom sets this header itself.")
        if any(c in value for c in "\r\n\0") or len(value) > 900:
            raise DeliveryError(f"headers.{name}", "a value is one line, at most 900 characters.")
    return dict(headers)


def clean_attachments(attachments: list[dict]) -> list[dict]:
    """Each {filename, content (base64), content_type}, checked and decoded once to count
    its size; kept as base64 on the Email."""
    if len(attachments) > MAX_ATTACHMENTS:
        raise DeliveryError("attachments", f"at most {MAX_ATTACHMENTS} files.")
    total, cleaned = 0, []
    for i, attachment in enumerate(attachments):
        where = f"attachments.{i}"
        filename = (attachment.get("filename") or "").strip()
        if not filename or len(filename) > 255 or not filename.isprintable() or "/" in filename:
            raise DeliveryError(f"{where}.filename", "a file name of 1 to 255 characters, no /.")
        try:
            content = b64decode(attachment.get("content") or "", validate=True)
        except (binascii.Error, ValueError):
            raise DeliveryError(f"{where}.content", "must be base64.") from None
        total += len(content)
        if total > MAX_ATTACHMENT_BYTES:
            raise DeliveryError("attachments", "at most 10 MB of files in all.")
        content_type = (attachment.get("content_type") or "").strip().lower()
        if not content_type:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if not CONTENT_TYPE.match(content_type):
            raise DeliveryError(f"{where}.content_type", "a MIME type such as application/pdf.")
        cleaned.append(
            {
                "filename": filename,
                "content_type": content_type,
                "content": b64encode(content).decode(),
            }
        )
    return cleaned


def transactional_source(send: Transactional) -> Source:
    """The body in the chosen template: the template alone when no body is given, the body
    in its {{ content }} slot when the template is a layout."""
    template, body, body_format, layout, layout_format, text = (
        send.template,
        send.body,
        send.format,
        "",
        HTML,
        "",
    )
    if template is not None and not body:
        body, body_format, text = template.source, template.format, template.text
    elif template is not None:
        if not template.is_layout:
            raise DeliveryError(
                "template", "this template has no {{ content }} slot: send no body with it."
            )
        layout, layout_format = template.source, template.format
    if not body.strip():
        raise DeliveryError("body", "write a body, or name a template.")
    return Source(
        body=body,
        format=body_format,
        layout=layout,
        layout_format=layout_format,
        text=text,
        subject=send.subject,
        track_links=send.track_links,
        track_opens=send.track_opens,
    )


def transactional_email(project: Project, send: Transactional) -> Email:
    sender = send.sender or default_sender(project)
    from_email = check_from(sender, send.from_email) if send.from_email else sender.from_email
    reply_to = ""
    if send.reply_to:
        try:
            reply_to = normalise_sender_email(send.reply_to)
        except InvalidEmail as e:
            raise DeliveryError("reply", str(e)) from None
    source = transactional_source(send)
    if not send.subject.strip() or any(c in send.subject for c in "\r\n"):
        raise DeliveryError("subject", "one line, not empty.")
    try:
        prepared = prepare(source)
        check_content(project, source, prepared)
    except TemplateProblem as e:
        # The request's field the problem is in: the template's source, or the body.
        written = "template" if send.template and not send.body else "body"
        part = (e.part or "body").lower().split()[0]
        where = {"subject": "subject", "layout": "template"}.get(part, written)
        raise DeliveryError(where, str(e)) from None
    if len(json.dumps(send.data, default=str)) > MAX_DATA_BYTES:
        raise DeliveryError("data", f"at most {MAX_DATA_BYTES // 1024} KB of JSON.")
    return Email(
        project=project,
        kind=Email.Kind.TRANSACTIONAL,
        sender=sender,
        from_email=from_email,
        from_name=one_line(sender.from_name if send.from_name is None else send.from_name)[:100],
        reply_to=reply_to,
        subject=send.subject.strip(),
        html=prepared.html,
        text=prepared.text,
        links=prepared.links,
        personalised=True,
        headers=clean_headers(send.headers),
        attachments=clean_attachments(send.attachments),
        skip_unsubscribed=send.skip_unsubscribed,
    )


def send_transactional(project: Project, send: Transactional) -> list[Message]:
    """Queue one personalised Email to each recipient, ahead of automation and campaign mail.
    Every recipient becomes a contact (not subscribed to marketing mail unless `subscribed`).
    Raises DeliveryError or ContactError naming the field; queues nothing then. The content
    is checked and prepared before the transaction: on SQLite the write lock is held for the
    writes alone."""
    recipients = clean_recipients(send.to)
    email = transactional_email(project, send)
    with transaction.atomic():
        return queue_transactional(project, send, email, recipients)


def queue_transactional(
    project: Project, send: Transactional, email: Email, recipients: list[Recipient]
) -> list[Message]:
    email.save()
    upsert = Upsert(
        subscribed=True if send.subscribed else None,
        subscribed_if_new=send.subscribed,
        how="a transactional send",
    )
    messages = []
    for recipient in recipients:
        contact, _ = upsert_contact(project, recipient.email, upsert)
        messages.append(
            Message(
                project=project,
                email=email,
                sender=email.sender,
                contact=contact,
                to_email=recipient.email,
                to_name=recipient.name or contact.full_name,
                data=send.data,
                priority=Message.Priority.TRANSACTIONAL,
            )
        )
    Message.objects.bulk_create(messages)
    return messages
