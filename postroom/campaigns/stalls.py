"""Stalled campaigns: could send, made no progress. Found once a minute by the worker."""

from __future__ import annotations

import logging
from datetime import timedelta as td

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from postroom.accounts.actions import email_project_admins
from postroom.campaigns.models import Campaign
from postroom.delivery.limits import capacity
from postroom.delivery.models import Message

log = logging.getLogger(__name__)


def last_progress(campaign: Campaign):
    """When the campaign last handed a message over (or started)."""
    latest = Message.objects.filter(email_id=campaign.email_id).aggregate(t=Max("updated_at"))["t"]
    return max(t for t in (latest, campaign.started_at) if t is not None)


def is_stalled(campaign: Campaign, now) -> bool:
    if campaign.state != Campaign.State.SENDING or not campaign.email_id:
        return False
    queued = Message.objects.filter(email_id=campaign.email_id, state=Message.State.QUEUED)
    if not queued.exists():
        return False  # done, or only waiting for deferred retries: nothing to do now
    if capacity(campaign.sender, now) == 0:
        return False  # held back by its rate limits, as it should be
    return now - last_progress(campaign) > td(seconds=settings.CAMPAIGN_STALL_AFTER)


def check_stalled_campaigns() -> int:
    """Periodic worker job: mark stalls (alerting once per stall) and clear recovered ones."""
    now = timezone.now()
    newly = 0
    for campaign in Campaign.objects.filter(state=Campaign.State.SENDING).select_related("sender"):
        stalled = is_stalled(campaign, now)
        if stalled and campaign.stalled_at is None:
            Campaign.objects.filter(pk=campaign.pk).update(stalled_at=now)
            alert_admins(campaign, now)
            newly += 1
        elif not stalled and campaign.stalled_at is not None:
            Campaign.objects.filter(pk=campaign.pk).update(stalled_at=None)
    Campaign.objects.exclude(state=Campaign.State.SENDING).exclude(stalled_at=None).update(
        stalled_at=None
    )
    return newly


def alert_admins(campaign: Campaign, now) -> None:
    reason = campaign.sender.paused_reason or "no worker is sending its messages"
    context = {
        "campaign": campaign,
        "reason": reason,
        "minutes": settings.CAMPAIGN_STALL_AFTER // 60,
        "url": f"{settings.SITE_URL}/p/{campaign.project.code}/campaigns/{campaign.code}/",
    }
    # The banner and the health page still say it if the relay fails.
    email_project_admins(campaign.project, "campaigns/emails/stalled", context)
