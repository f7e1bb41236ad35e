"""Multi-step writes for senders and messages."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from postroom.accounts.models import Project, User
from postroom.delivery import dkim, dnscheck
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
def queue_system_email(project: Project, contact, subject: str, text: str) -> Message:
    """A short transactional message from the project to one of its contacts (a
    confirmation link), through the project's default sender, ahead of campaign mail."""
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
        to_email=contact.email,
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
