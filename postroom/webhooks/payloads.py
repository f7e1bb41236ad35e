"""What a webhook's `data` says of a contact, a campaign or an import: public ids, never
internal ones, and only what the row at hand holds (no extra queries on the paths that emit)."""

from __future__ import annotations

from typing import Any


def contact_data(contact) -> dict[str, Any]:
    return {
        "id": str(contact.code),
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "status": contact.status,
        "subscribed": contact.status == "subscribed",
        "data": contact.data,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def campaign_data(campaign) -> dict[str, Any]:
    return {
        "id": str(campaign.code),
        "name": campaign.name,
        "subject": campaign.subject,
        "state": campaign.state,
        "recipients": campaign.recipients,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
    }


def import_data(imp) -> dict[str, Any]:
    return {
        "id": str(imp.code),
        "state": imp.state,
        "file_name": imp.file_name,
        "dry_run": imp.dry_run,
        "counts": imp.counts(),
        "error": imp.error,
        "finished_at": imp.finished_at,
    }
