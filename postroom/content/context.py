"""What a template sees of its recipient: plain data only, since the sandbox would call the
methods of any object passed in. For a batch of messages: one query for the contacts, one
for their tags.

    contact  email, first_name, last_name, name, status, tags (names), data (custom fields), id
    data     the event's or the API call's data (Message.data); also each key by its bare
             name where it is free, as Plunk's templates read it
    project  name, postal_address
    unsubscribe_url, preferences_url  this message's own (signed) pages
    _message the message's code, which its tracked links and unsubscribe links are signed for
"""

from __future__ import annotations

from typing import Any

from postroom.accounts.models import Project
from postroom.contacts.models import Contact, ContactTag
from postroom.tracking.links import preferences_url, unsubscribe_url

CONTACT_FIELDS = ("id", "code", "email", "first_name", "last_name", "status", "data")


def contact_context(row: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """An empty name is left out rather than "": missing, so that
    `{{ contact.first_name | default("there") }}` says "there"."""
    first, last = row.get("first_name") or "", row.get("last_name") or ""
    context = {
        "id": str(row["code"]) if row.get("code") else "",
        "email": row.get("email", ""),
        "first_name": first,
        "last_name": last,
        "name": " ".join(p for p in (first, last) if p),
        "status": row.get("status", ""),
        "tags": sorted(tags),
        "data": dict(row.get("data") or {}),
    }
    return {k: v for k, v in context.items() if v != "" or k == "email"}


def contacts_by_id(contact_ids: set[int]) -> dict[int, dict[str, Any]]:
    if not contact_ids:
        return {}
    rows = Contact.objects.filter(id__in=contact_ids).values(*CONTACT_FIELDS)
    tags: dict[int, list[str]] = {}
    pairs = ContactTag.objects.filter(contact_id__in=contact_ids).values_list(
        "contact_id", "tag__name"
    )
    for contact_id, name in pairs:
        tags.setdefault(contact_id, []).append(name)
    return {row["id"]: contact_context(row, tags.get(row["id"], [])) for row in rows}


def recipient_contexts(
    project_id: int, messages: list, contacts: dict[int, dict[str, Any]] | None = None
) -> dict[int, dict[str, Any]]:
    """Each message's context, by message id (`contacts`: read already, by contacts_by_id).
    A message with no contact (a test send, a transactional send to an address) gets its
    own address and name."""
    if contacts is None:
        contacts = contacts_by_id({m.contact_id for m in messages if m.contact_id})
    project = project_context(Project.objects.get(pk=project_id))
    contexts = {}
    for m in messages:
        contact = contacts.get(m.contact_id) or contact_context(
            {"email": m.to_email, "first_name": m.to_name}, []
        )
        data = dict(m.data or {})
        contexts[m.id] = {
            **top_level(data),
            "contact": contact,
            "data": data,
            "project": project,
            "unsubscribe_url": unsubscribe_url(m.code),
            "preferences_url": preferences_url(m.code),
            # For the tracked links and the pixel (content.sandbox.tracked, open_pixel).
            "_message": m.code.hex,
        }
    return contexts


def top_level(data: dict[str, Any]) -> dict[str, Any]:
    """The send API's data also by bare name, as Plunk's templates read it ({{ name }}),
    where the name is free: ours (contact, data, …) and _-names win."""
    return {
        key: value
        for key, value in data.items()
        if key.isidentifier() and not key.startswith("_") and key not in RESERVED_NAMES
    }


# The context's own names and the sandbox's globals (content.sandbox), which a value of the
# same name would hide.
RESERVED_NAMES = {
    "contact",
    "data",
    "project",
    "unsubscribe_url",
    "preferences_url",
    "tracked",
    "open_pixel",
    "range",
    "dict",
    "lipsum",
    "cycler",
    "joiner",
    "namespace",
}


def project_context(project: Project) -> dict[str, str]:
    return {"name": project.name, "postal_address": project.postal_address}


def preview_context(project: Project, contact: Contact | None, data: dict | None = None) -> dict:
    """The context a preview or a test send renders with: a chosen contact, or a sample."""
    if contact is None:
        row = {"email": "reader@example.com", "first_name": "Ada", "last_name": "Reader"}
        contact_data = contact_context(row, [])
    else:
        contact_data = contacts_by_id({contact.id})[contact.id]
    return {
        "contact": contact_data,
        "data": data or {},
        "project": project_context(project),
        # Links that only mean something in a sent message.
        "unsubscribe_url": "#unsubscribe",
        "preferences_url": "#preferences",
    }
