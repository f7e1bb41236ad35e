"""Multi-step writes for senders and messages."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from postroom.accounts.models import Project, User, one_line
from postroom.delivery.models import Email, Message, Sender
from postroom.delivery.transports import transport_for
from postroom.delivery.transports.base import SenderUnavailable
from postroom.lib.emails import InvalidEmail, normalise_email, normalise_sender_email


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
