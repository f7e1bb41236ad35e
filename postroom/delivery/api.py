"""Delivery API (secret key).

POST /api/v1/send              Plunk's send: one personalised email to 1-100 recipients
GET  /api/v1/messages          keyset pages, newest first: ?limit=&cursor=&state=&kind=&to=
GET  /api/v1/messages/{id}     one message: its state, attempts, the relay's answer, events
GET  /api/v1/senders           the project's senders (no passwords or API keys)
GET  /api/v1/senders/{id}      one sender
"""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router

from postroom.accounts.auth import secret_key_auth
from postroom.contacts.actions import ContactError
from postroom.content.models import Template
from postroom.delivery import actions
from postroom.delivery.actions import DeliveryError, Recipient, Transactional
from postroom.delivery.models import Email, Message, Sender
from postroom.delivery.schemas import (
    MessageDetailOut,
    MessagePage,
    RecipientIn,
    SenderOut,
    SendIn,
    SendOut,
)
from postroom.lib.apierrors import ApiError
from postroom.lib.apiinput import InputSchema
from postroom.lib.emails import lookup_email
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404
from postroom.tracking.models import Event

router = Router(tags=["messages"], auth=secret_key_auth)
senders_router = Router(tags=["senders"], auth=secret_key_auth)


def recipients(to: str | RecipientIn | list[str | RecipientIn]) -> list[Recipient]:
    items = to if isinstance(to, list) else [to]
    return [
        Recipient(item) if isinstance(item, str) else Recipient(item.email, item.name)
        for item in items
    ]


def transactional(request: HttpRequest, body: SendIn) -> Transactional:
    project = request.auth
    template = sender = None
    if body.template:
        template = get_in_project_or_404(Template, project, body.template, "template")
    if body.sender:
        sender = get_in_project_or_404(Sender, project, body.sender, "sender")
    return Transactional(
        to=recipients(body.to),
        subject=body.subject,
        body=body.body,
        format=body.type,
        template=template,
        sender=sender,
        from_email=body.from_,
        from_name=body.name,
        reply_to=body.reply,
        headers=body.headers,
        attachments=[
            {
                "filename": a.filename,
                "content": a.content,
                "content_type": a.content_type or a.contentType,
            }
            for a in body.attachments
        ],
        data=body.data,
        subscribed=body.subscribed,
        skip_unsubscribed=body.skip_unsubscribed,
        track_opens=body.track_opens,
        track_links=body.track_links,
    )


@router.post("/send", response=SendOut)
def send_email(request: HttpRequest, body: SendIn) -> dict:
    """Queue an email to each recipient now, ahead of automation and campaign mail
    (Plunk's send). Suppressed addresses (hard bounces, complaints) are skipped when the
    worker sends; unsubscribes from marketing mail are not, unless skip_unsubscribed."""
    try:
        messages = actions.send_transactional(request.auth, transactional(request, body))
    except (DeliveryError, ContactError) as e:
        raise ApiError(422, e.message, e.field) from None
    return {
        "success": True,
        "emails": [
            {
                "contact": {"id": str(m.contact.code), "email": m.contact.email},
                "email": str(m.code),
            }
            for m in messages
        ],
        "timestamp": timezone.now(),
    }


def message_out(message: Message) -> dict:
    contact = message.contact
    return {
        "id": str(message.code),
        "kind": message.email.kind,
        "to": message.to_email,
        "to_name": message.to_name,
        "contact": {"id": str(contact.code), "email": contact.email} if contact else None,
        "subject": message.email.subject,
        "from_email": message.email.from_email,
        "state": message.state,
        "attempts": message.attempts,
        "last_response": message.last_response,
        "provider_id": message.provider_id,
        "maybe_duplicate": message.maybe_duplicate,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        **{field: getattr(message, field) for _, field, _ in Message.OUTCOMES},
        "next_attempt_at": message.next_attempt_at,
    }


class MessageQuery(InputSchema):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None
    state: str = ""
    kind: str = ""
    to: str = ""


@router.get("/messages", response=MessagePage)
def list_messages(request: HttpRequest, query: Query[MessageQuery]) -> dict:
    if query.state and query.state not in Message.State.values:
        raise ApiError(422, f"must be one of {Message.State.values}.", "state")
    if query.kind and query.kind not in Email.Kind.values:
        raise ApiError(422, f"must be one of {Email.Kind.values}.", "kind")
    messages = Message.objects.filter(project=request.auth)
    if query.state:
        messages = messages.filter(state=query.state)
    if query.kind:
        messages = messages.filter(email__kind=query.kind)
    if query.to:
        messages = messages.filter(to_email=lookup_email(query.to) or query.to.strip())
    messages = messages.select_related("email", "contact")
    page = keyset_page(messages, after=query.cursor, size=query.limit)
    return {"items": [message_out(m) for m in page.items], "next_cursor": page.next_cursor}


@router.get("/messages/{message_id}", response=MessageDetailOut)
def get_message(request: HttpRequest, message_id: str) -> dict:
    message = get_in_project_or_404(Message, request.auth, message_id, "message")
    events = Event.objects.filter(message=message).order_by("-id")[:100]
    return {
        **message_out(message),
        "events": [
            {"id": str(e.code), "kind": e.kind, "url": e.url, "created_at": e.created_at}
            for e in events
        ],
    }


def sender_out(sender: Sender) -> dict:
    return {
        "id": str(sender.code),
        "name": sender.name,
        "kind": sender.kind,
        "is_default": sender.is_default,
        "from_email": sender.from_email,
        "from_name": sender.from_name,
        "from_domains": sorted(sender.allowed_domains()),
        "host": sender.host,
        "port": sender.port,
        "security": sender.security,
        "username": sender.username,
        "pool_size": sender.pool_size,
        "per_second": sender.per_second,
        "per_minute": sender.per_minute,
        "per_hour": sender.per_hour,
        "per_day": sender.per_day,
        "paused_reason": sender.paused_reason,
        "paused_at": sender.paused_at,
        "created_at": sender.created_at,
    }


@senders_router.get("", response=list[SenderOut])
def list_senders(request: HttpRequest) -> list[dict]:
    return [sender_out(s) for s in Sender.objects.filter(project=request.auth)[:200]]


@senders_router.get("/{sender_id}", response=SenderOut)
def get_sender(request: HttpRequest, sender_id: str) -> dict:
    return sender_out(get_in_project_or_404(Sender, request.auth, sender_id, "sender"))
