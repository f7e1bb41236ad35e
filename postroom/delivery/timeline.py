"""The contact page's timeline: the messages sent to a contact."""

from __future__ import annotations

from collections.abc import Iterable

from postroom.contacts.models import Contact
from postroom.contacts.timeline import TimelineEntry, register
from postroom.delivery.models import Message


@register
def messages_to_contact(contact: Contact, limit: int) -> Iterable[TimelineEntry]:
    messages = Message.objects.filter(contact=contact).select_related("email").order_by("-id")
    for m in messages[:limit]:
        text = f"“{m.email.subject}”: {m.get_state_display().lower()}"
        if m.state == Message.State.FAILED and m.last_response:
            text += f" ({m.last_response})"
        yield TimelineEntry(m.sent_at or m.updated_at, "message", text)
