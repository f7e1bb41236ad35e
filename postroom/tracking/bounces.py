"""Bounces and complaints that come back by mail: delivery status notifications (RFC 3464)
for mail sent through SMTP senders, and abuse reports (ARF, RFC 5965) from feedback loops.

Which message a report is about: the signed token in the envelope recipient, bounce+<token>@
(VERP: every message leaves with its own Return-Path, tracking.links.bounce_address); failing
that, the unsubscribe token in the List-Unsubscribe header of the original message that most
reports quote (feedback loops send to a fixed address, not to the Return-Path).

What a report says: read with the standard library's email parser, which understands
multipart/report with its message/delivery-status and message/feedback-report parts (flufl.bounce
was considered: it scans for addresses in many non-standard formats, but does not say whether a
bounce is permanent, which is what we act on). A bounce with no status part (some old mail
servers) is read by its enhanced status code (RFC 3463) in the text; one with neither is not a
bounce we can act on.

What follows: a hard bounce (5.x.x) suppresses the address and marks the contact bounced; a soft
one (4.x.x) is recorded, and SOFT_BOUNCE_LIMIT of them within SOFT_BOUNCE_DAYS suppress as a hard
one would; a complaint unsubscribes the contact, marks it complained and suppresses the address.
Each is an event on the events page and in the contact's timeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta as td
from email.message import EmailMessage
from email.message import Message as MailMessage
from email.utils import getaddresses

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from postroom.contacts.actions import suppress_address
from postroom.contacts.models import Contact, Status, Suppression
from postroom.delivery.models import Message
from postroom.lib.signing import unsign
from postroom.tracking.actions import mark_first
from postroom.tracking.links import BOUNCE, BOUNCE_PREFIX, UNSUBSCRIBE
from postroom.tracking.models import Event

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
STATUS_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
UNSUBSCRIBE_TOKEN = re.compile(r"/u/([A-Za-z0-9_-]{30,60})")


@dataclass
class Report:
    kind: str  # HARD, SOFT or COMPLAINT
    status: str = ""  # the enhanced status code, 5.1.1
    diagnostic: str = ""  # the remote server's words
    recipient: str = ""  # as the report names it
    feedback_type: str = ""  # ARF: abuse, fraud, …

    def as_data(self) -> dict[str, str]:
        data = {"type": self.kind, "status": self.status, "diagnostic": self.diagnostic[:500]}
        if self.feedback_type:
            data["feedback_type"] = self.feedback_type
        return {k: v for k, v in data.items() if v}


# --- reading -----------------------------------------------------------------------------------


def read_report(mail: MailMessage) -> Report | None:
    """What the mail reports, or None when it is no bounce or complaint (an auto-reply, a
    delivery confirmation, a delay we need not act on twice, or anything else)."""
    for part in mail.walk():
        content_type = part.get_content_type()
        if content_type == "message/feedback-report":
            return complaint(part)
        if content_type == "message/delivery-status":
            return delivery_status(part)
    if looks_like_bounce(mail):
        return bounce_from_text(mail)
    return None


def _fields(part: MailMessage) -> list[MailMessage]:
    """The header blocks of a status part (the parser gives them as sub-messages)."""
    payload = part.get_payload()
    return payload if isinstance(payload, list) else []


def delivery_status(part: MailMessage) -> Report | None:
    """RFC 3464: the first failed recipient's Status and Diagnostic. A permanent status (5.x.x)
    is a hard bounce, a transient one (4.x.x: the remote server gave up retrying) a soft one.
    "delayed" notices are not acted on: the mail is still being retried."""
    for fields in _fields(part)[1:]:
        if (fields.get("Action") or "").strip().lower() == "failed":
            status = STATUS_CODE.search(fields.get("Status") or "")
            code = status.group(0) if status else "5.0.0"
            kind = HARD if code.startswith("5") else SOFT
            return Report(
                kind=kind,
                status=code,
                diagnostic=_one_line(_after_type(fields.get("Diagnostic-Code") or "")),
                recipient=_after_type(
                    fields.get("Final-Recipient") or fields.get("Original-Recipient") or ""
                ),
            )
    return None


def complaint(part: MailMessage) -> Report:
    fields = _fields(part)
    block = fields[0] if fields else part
    return Report(
        kind=COMPLAINT,
        feedback_type=(block.get("Feedback-Type") or "abuse").strip().lower()[:40],
        recipient=(block.get("Original-Rcpt-To") or "").strip(),
    )


def looks_like_bounce(mail: MailMessage) -> bool:
    """A bounce without a status part: from a mailer daemon, with an empty Return-Path."""
    sender = str(mail.get("From") or "").lower()
    return_path = str(mail.get("Return-Path") or "").strip()
    return return_path in ("<>", "") and any(
        word in sender for word in ("mailer-daemon", "postmaster", "mail delivery")
    )


def bounce_from_text(mail: MailMessage) -> Report | None:
    text = _text_of(mail)
    status = STATUS_CODE.search(text)
    if status is None or status.group(1) == "2":
        return None
    kind = HARD if status.group(1) == "5" else SOFT
    line = next((ln for ln in text.splitlines() if status.group(0) in ln), "")
    return Report(kind=kind, status=status.group(0), diagnostic=_one_line(line))


def _text_of(mail: MailMessage) -> str:
    parts = []
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True) or b""
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts)[:20000]


def _after_type(value: str) -> str:
    """'rfc822; ann@example.com' -> 'ann@example.com'; 'smtp; 550 …' -> '550 …'."""
    return value.partition(";")[2].strip() if ";" in value else value.strip()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


# --- which message ------------------------------------------------------------------------------


def message_for(mail: MailMessage, recipients: list[str]) -> Message | None:
    """The message the report is about: by the VERP token it was sent back to, else by the
    unsubscribe link in the quoted original."""
    headers = [mail.get_all(name, []) for name in ("Delivered-To", "X-Original-To", "To")]
    found = [address for _, address in getaddresses([str(h) for hs in headers for h in hs])]
    for address in [*recipients, *found]:
        local = address.rpartition("@")[0]
        if local.lower().startswith(BOUNCE_PREFIX):
            code = unsign(BOUNCE, local[len(BOUNCE_PREFIX) :])
            if code is not None:
                return _message(code)
    for part in mail.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            original = str(part.get_payload()[0] if part.is_multipart() else part.get_payload())
            for token in UNSUBSCRIBE_TOKEN.findall(original):
                code = unsign(UNSUBSCRIBE, token)
                if code is not None:
                    return _message(code)
    return None


def _message(code) -> Message | None:
    return Message.objects.select_related("project", "contact").filter(code=code).first()


# --- acting -----------------------------------------------------------------------------------


@transaction.atomic
def apply_report(message: Message, report: Report) -> str:
    """Record the report as an event and act on it; a sentence saying what was done."""
    kind = Event.Kind.COMPLAINED if report.kind == COMPLAINT else Event.Kind.BOUNCED
    Event.objects.create(
        project_id=message.project_id,
        kind=kind,
        contact_id=message.contact_id,
        message=message,
        email_id=message.email_id,
        data=report.as_data(),
    )
    # The ledger's first bounce or complaint (a soft bounce is one too: the events say which).
    mark_first(message, f"{kind}_at")
    address = message.to_email
    if report.kind == COMPLAINT:
        suppress(message, Suppression.Reason.COMPLAINT, "Complained (feedback loop report)")
        set_status(message.contact, Status.COMPLAINED, "Marked the email as spam")
        return f"{address} complained: unsubscribed and suppressed"
    if report.kind == SOFT and soft_bounces(message) < settings.SOFT_BOUNCE_LIMIT:
        return f"{address} bounced softly ({report.status}); recorded"
    why = f"Bounced: {report.status} {report.diagnostic}".strip()[:200]
    if report.kind == SOFT:
        why = f"{settings.SOFT_BOUNCE_LIMIT} soft bounces in {settings.SOFT_BOUNCE_DAYS} days"
    suppress(message, Suppression.Reason.HARD_BOUNCE, why)
    set_status(message.contact, Status.BOUNCED, why)
    return f"{address} bounced ({report.status or report.kind}): suppressed"


def soft_bounces(message: Message) -> int:
    since = timezone.now() - td(days=settings.SOFT_BOUNCE_DAYS)
    recent = Event.objects.filter(
        project_id=message.project_id, kind=Event.Kind.BOUNCED, created_at__gte=since
    )
    if message.contact_id:
        recent = recent.filter(contact_id=message.contact_id)
    else:
        recent = recent.filter(message__to_email=message.to_email)
    return sum(1 for data in recent.values_list("data", flat=True) if data.get("type") == SOFT)


def suppress(message: Message, reason: str, note: str) -> None:
    # A message whose address was erased since suppresses nothing: the address is unknown.
    suppress_address(message.project_id, message.to_email, reason, note)


def set_status(contact: Contact | None, status: str, reason: str) -> None:
    if contact is None or contact.status == status:
        return
    contact.set_status(status, reason)
    contact.updated_at = timezone.now()
    contact.save(update_fields=["status", "status_changed_at", "status_reason", "updated_at"])


def handle_mail(mail: EmailMessage, recipients: list[str]) -> str | None:
    """Read one piped mail and act on it; what was done, or None when it is not for us."""
    report = read_report(mail)
    if report is None:
        return None
    message = message_for(mail, recipients)
    if message is None:
        return None
    return apply_report(message, report)
