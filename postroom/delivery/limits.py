"""Rate limits counted from the ledger, so restarts, deploys and extra workers never exceed
them or forget them: what was sent in each window is what the Message rows say."""

from __future__ import annotations

import datetime as dt

from postroom.delivery.models import Message, Sender


def capacity(sender: Sender, now: dt.datetime) -> int | None:
    """How many more messages the sender may hand over right now; None means no limit.

    Messages in flight (claimed, not yet recorded) count as sent, so two workers claiming at
    the same moment cannot both use the last slot.
    """
    limits = sender.limits()
    if not limits:
        return None
    in_flight = Message.objects.filter(sender=sender, state=Message.State.SENDING).count()
    room = min(
        limit - in_flight - Message.objects.filter(sender=sender, sent_at__gte=now - window).count()
        for window, limit in limits
    )
    return max(0, room)


def eta_seconds(sender: Sender, remaining: int) -> float | None:
    """Seconds to send `remaining` messages at the sender's tightest limit (None: no limit)."""
    rates = [limit / window.total_seconds() for window, limit in sender.limits()]
    if not rates or remaining <= 0:
        return None if not rates else 0.0
    return remaining / min(rates)
