"""Campaign lifecycle: audience, honest count, snapshot into the ledger, pause, resume, cancel."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta as td

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from postroom.accounts.models import User
from postroom.campaigns.models import Campaign
from postroom.contacts import rules
from postroom.contacts.models import Contact, Status, Suppression, tagged_with
from postroom.content.actions import check_content
from postroom.content.render import HTML, Source, prepare
from postroom.content.sandbox import TemplateProblem
from postroom.delivery.models import Email, Message
from postroom.lib.emails import one_line
from postroom.webhooks.actions import emit
from postroom.webhooks.payloads import campaign_data

log = logging.getLogger(__name__)

UNFINISHED = [Message.State.QUEUED, Message.State.SENDING, Message.State.DEFERRED]


class CampaignError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# --- audience -----------------------------------------------------------------------------------


def matching_contacts(campaign: Campaign) -> QuerySet[Contact]:
    """Everyone the audience names, whatever their status."""
    contacts = Contact.objects.filter(project=campaign.project)
    if campaign.audience == Campaign.Audience.SEGMENT:
        if campaign.segment is None:
            raise CampaignError("segment", "choose a segment (the one chosen was deleted).")
        try:
            tree = rules.clean_tree(campaign.segment.rules, campaign.project)
        except rules.RuleError as e:
            raise CampaignError("segment", f"the segment's rules no longer hold: {e}") from None
        return contacts.filter(rules.tree_to_q(tree, campaign.project))
    if campaign.audience == Campaign.Audience.TAGS:
        if not campaign.tags:
            raise CampaignError("tags", "name at least one tag.")
        any_tag = Q(pk__in=[])
        for name in campaign.tags:
            any_tag |= tagged_with(campaign.project, name)
        return contacts.filter(any_tag)
    return contacts


def suppressed_emails(campaign: Campaign) -> QuerySet:
    return Suppression.objects.filter(project=campaign.project).values("email")


def recipients(campaign: Campaign) -> QuerySet[Contact]:
    """Who will get it: subscribed and not on the suppression list."""
    return (
        matching_contacts(campaign)
        .filter(status=Status.SUBSCRIBED)
        .exclude(email__in=suppressed_emails(campaign))
    )


@dataclass
class AudienceCount:
    matches: int
    will_send: int
    not_subscribed: int
    suppressed: int


def count_audience(campaign: Campaign) -> AudienceCount:
    """The honest count: "matches N, will send to M: K not subscribed, J suppressed"."""
    matching = matching_contacts(campaign)
    subscribed = Q(status=Status.SUBSCRIBED)
    suppressed = Q(email__in=suppressed_emails(campaign))
    figures = matching.aggregate(
        matches=Count("id"),
        not_subscribed=Count("id", filter=~subscribed),
        suppressed=Count("id", filter=subscribed & suppressed),
    )
    will_send = figures["matches"] - figures["not_subscribed"] - figures["suppressed"]
    return AudienceCount(will_send=will_send, **figures)


# --- lifecycle --------------------------------------------------------------------------------


EDITABLE = [Campaign.State.DRAFT, Campaign.State.SCHEDULED]


def save_edits(campaign: Campaign, fields: Iterable[str]) -> bool:
    """Write an edited campaign's `fields`, only while it is still a draft or scheduled:
    the worker may have started it since it was read, and a plain save would put it back
    to scheduled with no ledger, to be started (and sent) twice. False if it had started."""
    if campaign.pk is None:
        campaign.save()
        return True
    campaign.updated_at = timezone.now()
    values = {name: getattr(campaign, name) for name in {*fields, "updated_at"}}
    return bool(Campaign.objects.filter(pk=campaign.pk, state__in=EDITABLE).update(**values))


def start(campaign: Campaign, when=None) -> None:
    """Send now (when=None) or at `when`. The worker takes it from there: snapshotting a big
    audience takes longer than a web request should."""
    if not campaign.is_editable():
        raise CampaignError(
            "state", f"a {campaign.get_state_display().lower()} campaign cannot start."
        )
    if campaign.audience != Campaign.Audience.ALL:
        matching_contacts(campaign)  # raises a CampaignError naming what is missing
    try:
        check_content(campaign.project, content_source(campaign))
    except TemplateProblem as e:
        raise CampaignError("body", str(e)) from None
    campaign.state = Campaign.State.SCHEDULED
    campaign.scheduled_at = when or timezone.now()
    if not save_edits(campaign, ["state", "scheduled_at"]):
        # A start beside this one (a second click, the worker) got there first.
        campaign.refresh_from_db()
        raise CampaignError(
            "state", f"a {campaign.get_state_display().lower()} campaign cannot start."
        )


def draft_source(fields, layout) -> Source:
    """What a campaign's edit form holds (cleaned data or the raw POST), for content.render."""
    return content_source(
        Campaign(
            subject=fields.get("subject", ""),
            preheader=fields.get("preheader", ""),
            body=fields.get("body", ""),
            body_format=fields.get("body_format") or Campaign.Format.MARKDOWN,
            layout=layout,
            text_body=fields.get("text_body", ""),
        )
    )


def campaign_email(campaign: Campaign, kind: str, subject_prefix: str = "") -> Email:
    """The campaign's content prepared once (content.render) as an Email. Prepared here so
    that a problem fails the start (or the test send) and says why, rather than failing
    every recipient: a layout may have changed since the campaign was saved."""
    try:
        prepared = prepare(content_source(campaign))
    except TemplateProblem as e:
        raise CampaignError("body", str(e)) from None
    return Email.objects.create(
        project=campaign.project,
        kind=kind,
        sender=campaign.sender,
        from_email=campaign.from_email,
        from_name=one_line(campaign.from_name),
        reply_to=campaign.reply_to,
        subject=subject_prefix + one_line(campaign.subject),
        text=prepared.text,
        html=prepared.html,
        links=prepared.links,
        personalised=True,
    )


# Test sends go to a few people, not an audience.
MAX_TEST_RECIPIENTS = 20


@transaction.atomic
def send_test(campaign: Campaign, addresses: list[str], user: User | None) -> list[Message]:
    """The campaign as it stands, to `addresses`, now (ahead of campaign mail). Each is
    personalised as the contact of that address (if there is one) would get it."""
    if not addresses or len(addresses) > MAX_TEST_RECIPIENTS:
        raise CampaignError("to", f"Name 1 to {MAX_TEST_RECIPIENTS} addresses.")
    email = campaign_email(campaign, Email.Kind.TEST, "[Test] ")
    contacts = dict(
        Contact.objects.filter(project=campaign.project, email__in=addresses).values_list(
            "email", "id"
        )
    )
    return [
        Message.objects.create(
            project=campaign.project,
            email=email,
            sender=campaign.sender,
            contact_id=contacts.get(address),
            to_email=address,
            priority=Message.Priority.TRANSACTIONAL,
        )
        for address in addresses
    ]


def unschedule(campaign: Campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.SCHEDULED).update(
        state=Campaign.State.DRAFT, scheduled_at=None, updated_at=timezone.now()
    )


def content_source(campaign: Campaign) -> Source:
    """What the campaign's author wrote, for content.render."""
    layout = campaign.layout
    return Source(
        body=campaign.body,
        format=campaign.body_format,
        layout=layout.source if layout else "",
        layout_format=layout.format if layout else HTML,
        text=campaign.text_body,
        preheader=campaign.preheader,
        subject=campaign.subject,
        track_links=campaign.track_links,
        track_opens=campaign.track_opens,
        footer=True,
    )


@transaction.atomic
def snapshot(campaign: Campaign) -> int:
    """Create the campaign's Email and one queued Message per recipient, set-based:
    one INSERT ... SELECT, so a campaign to 1,000,000 starts in seconds."""
    email = campaign_email(campaign, Email.Kind.CAMPAIGN)
    audience = recipients(campaign).values("id", "email")
    select_sql, params = audience.query.sql_with_params()
    now = timezone.now()
    new_code = (
        "gen_random_uuid()" if connection.vendor == "postgresql" else "lower(hex(randomblob(16)))"
    )
    table = Message._meta.db_table
    columns = (
        "project_id, email_id, sender_id, contact_id, code, to_email, to_name, state, priority, "
        "attempts, last_response, provider_id, maybe_duplicate, data, created_at, updated_at"
    )
    # Only constants and Django's own compiled SELECT are interpolated; values are parameters.
    select = (
        f"SELECT %s, %s, %s, a.id, {new_code}, a.email, '', %s, %s, 0, '', '', %s, '{{}}', %s, %s"
    )
    sql = f"INSERT INTO {table} ({columns}) {select} FROM ({select_sql}) a"  # noqa: S608
    # Timestamps in the backend's own storage form (SQLite keeps naive UTC text).
    stamp = connection.ops.adapt_datetimefield_value(now)
    values = [
        campaign.project_id,
        email.id,
        campaign.sender_id,
        Message.State.QUEUED,
        Message.Priority.CAMPAIGN,
        False,
        stamp,
        stamp,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *params])
        inserted = cursor.rowcount
    campaign.email = email
    campaign.recipients = inserted
    campaign.state = Campaign.State.SENDING
    campaign.started_at = now
    campaign.save(update_fields=["email", "recipients", "state", "started_at"])
    return inserted


def start_due_campaigns() -> bool:
    """Worker step: snapshot one campaign whose time has come. True if it started one."""
    due = Campaign.objects.filter(state=Campaign.State.SCHEDULED, scheduled_at__lte=timezone.now())
    for campaign in due.order_by("scheduled_at")[:5]:
        # Claim it: only one worker may snapshot a campaign.
        with transaction.atomic():
            claimed = Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.SCHEDULED)
            if claimed.select_for_update().update(updated_at=timezone.now()) != 1:
                continue
            try:
                started = Campaign.objects.select_related("segment").get(pk=campaign.pk)
                snapshot(started)
                emit(started.project_id, "campaign.started", campaign_data(started))
            except CampaignError as e:
                log.warning("campaign %s cannot start: %s", campaign.code, e)
                Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.DRAFT)
        return True
    return False


def finish_done_campaigns() -> bool:
    """Worker step: a campaign is finished only when no recipient is queued, sending or
    deferred (a paused one waits for resume)."""
    finished = 0
    for campaign in Campaign.objects.filter(state=Campaign.State.SENDING).exclude(email=None):
        if Message.objects.filter(email_id=campaign.email_id, state__in=UNFINISHED).exists():
            continue
        campaign.state, campaign.finished_at = Campaign.State.FINISHED, timezone.now()
        with transaction.atomic():
            done = Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.SENDING).update(
                state=campaign.state, finished_at=campaign.finished_at
            )
            if done:  # else another worker finished it
                emit(campaign.project_id, "campaign.finished", campaign_data(campaign))
        finished += done
    return finished > 0


def pause(campaign: Campaign) -> None:
    if campaign.state != Campaign.State.SENDING:
        raise CampaignError("state", "only a sending campaign can be paused.")
    with transaction.atomic():
        Email.objects.filter(pk=campaign.email_id).update(held=True)
        Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.PAUSED)
        campaign.state = Campaign.State.PAUSED
        emit(campaign.project_id, "campaign.paused", campaign_data(campaign))


def resume(campaign: Campaign) -> None:
    if campaign.state != Campaign.State.PAUSED:
        raise CampaignError("state", "only a paused campaign can be resumed.")
    Email.objects.filter(pk=campaign.email_id).update(held=False)
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.SENDING)


@transaction.atomic
def cancel(campaign: Campaign) -> None:
    """Stop for good. Nothing more goes out from this moment (the Email is held); the worker
    then marks the recipients not yet sent to as cancelled, in chunks
    (cancel_unsent_recipients): on PostgreSQL one UPDATE of a million rows takes 14 s, too
    long for a web request (bench/send.py --start-only)."""
    if campaign.state in (Campaign.State.FINISHED, Campaign.State.CANCELLED):
        raise CampaignError("state", f"the campaign is already {campaign.state}.")
    if campaign.state == Campaign.State.CANCELLING:
        raise CampaignError("state", "the campaign is already being cancelled.")
    not_started = Campaign.objects.filter(pk=campaign.pk, email=None)
    not_started = not_started.exclude(state__in=[Campaign.State.FINISHED, Campaign.State.CANCELLED])
    # Conditional, because the worker may be starting it at this very moment.
    if not not_started.update(state=Campaign.State.CANCELLED, finished_at=timezone.now()):
        campaign.refresh_from_db()
        if campaign.email_id is None:  # cancelled or finished meanwhile
            raise CampaignError("state", f"the campaign is already {campaign.state}.")
        Email.objects.filter(pk=campaign.email_id).update(held=True)
        Campaign.objects.filter(pk=campaign.pk).exclude(
            state__in=[Campaign.State.FINISHED, Campaign.State.CANCELLED]
        ).update(state=Campaign.State.CANCELLING)


# Recipients marked cancelled per worker step: short write transactions at any audience size.
CANCEL_CHUNK = 5000
UNSENT = [Message.State.QUEUED, Message.State.DEFERRED]


def cancel_unsent_recipients() -> bool:
    """Worker step: mark one chunk of a cancelling campaign's unsent recipients cancelled.
    The campaign is cancelled once none is left, and none is in flight (a worker may still
    record one as deferred, which the next step then cancels)."""
    cancelling = Campaign.objects.filter(state=Campaign.State.CANCELLING)
    for campaign in cancelling.order_by("id")[:5]:
        messages = Message.objects.filter(email_id=campaign.email_id)
        # In flight first: the Email is held, so no new claim can start, and a message
        # seen neither in flight nor unsent below is settled for good.
        in_flight = messages.filter(state=Message.State.SENDING).exists()
        ids = list(messages.filter(state__in=UNSENT).values_list("id", flat=True)[:CANCEL_CHUNK])
        if ids:
            Message.objects.filter(id__in=ids, state__in=UNSENT).update(
                state=Message.State.CANCELLED, updated_at=timezone.now()
            )
            return True
        if not in_flight:
            unfinished = Message.objects.filter(email_id=OuterRef("email_id"), state__in=UNFINISHED)
            Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.CANCELLING).exclude(
                Exists(unfinished)
            ).update(state=Campaign.State.CANCELLED, finished_at=timezone.now())
            return True
    return False


RETRYABLE = [Campaign.State.SENDING, Campaign.State.PAUSED, Campaign.State.FINISHED]


def retry(campaign: Campaign, state: str) -> int:
    """Queue the campaign's failed (or deferred) recipients again now."""
    if campaign.state not in RETRYABLE:
        raise CampaignError(
            "state", f"a {campaign.state} campaign sends nothing more: duplicate it instead."
        )
    if state not in (Message.State.FAILED, Message.State.DEFERRED) or not campaign.email_id:
        return 0
    count = Message.objects.filter(email_id=campaign.email_id, state=state).update(
        state=Message.State.QUEUED, next_attempt_at=None, updated_at=timezone.now()
    )
    if count and campaign.state == Campaign.State.FINISHED:
        Campaign.objects.filter(pk=campaign.pk).update(
            state=Campaign.State.SENDING, finished_at=None
        )
    return count


def duplicate(campaign: Campaign, user: User | None) -> Campaign:
    """A new draft with the same content and audience."""
    copy = Campaign.objects.get(pk=campaign.pk)
    copy.pk = None
    copy.code = uuid.uuid4()
    for field, value in {
        "name": f"{campaign.name} (copy)"[:200],
        "state": Campaign.State.DRAFT,
        "scheduled_at": None,
        "email": None,
        "recipients": None,
        "started_at": None,
        "finished_at": None,
        "created_by": user,
        "created_at": timezone.now(),
        "updated_at": timezone.now(),
    }.items():
        setattr(copy, field, value)
    copy.save()
    return copy


# --- progress -----------------------------------------------------------------------------------


def progress(campaign: Campaign) -> dict:
    """Counts per state, the current rate, an ETA and the latest errors, for the live page."""
    if not campaign.email_id:
        return {
            "counts": {},
            "done": 0,
            "total": 0,
            "rate_per_minute": 0,
            "eta_seconds": None,
            "errors": [],
        }
    messages = Message.objects.filter(email_id=campaign.email_id)
    counts = dict(messages.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in ("sent", "failed", "skipped", "cancelled"))
    minute_ago = timezone.now() - td(minutes=1)
    rate = Message.objects.filter(email_id=campaign.email_id, sent_at__gte=minute_ago).count()
    remaining = sum(counts.get(s, 0) for s in UNFINISHED)
    errors = list(
        messages.filter(state__in=[Message.State.FAILED, Message.State.DEFERRED])
        .values("last_response")
        .annotate(n=Count("id"))
        .order_by("-n")[:5]
    )
    return {
        "counts": counts,
        "done": done,
        "total": total,
        "rate_per_minute": rate,
        "eta_seconds": remaining * 60 / rate if rate else None,
        "errors": errors,
    }
