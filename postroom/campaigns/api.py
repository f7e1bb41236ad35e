"""Campaigns API (secret key).

GET    /api/v1/campaigns                          keyset pages: ?limit=1..100&cursor=&state=
POST   /api/v1/campaigns                          create a draft
GET    /api/v1/campaigns/{id}                     one campaign
PATCH  /api/v1/campaigns/{id}                     change some fields (draft or scheduled only)
DELETE /api/v1/campaigns/{id}                     delete (draft or scheduled only)
GET    /api/v1/campaigns/{id}/audience            who the audience matches, who would get it
POST   /api/v1/campaigns/{id}/send                start now
POST   /api/v1/campaigns/{id}/schedule            start at {"at": ISO datetime in the future}
POST   /api/v1/campaigns/{id}/unschedule          a scheduled campaign back to draft
POST   /api/v1/campaigns/{id}/pause               hold a sending campaign
POST   /api/v1/campaigns/{id}/resume              carry on with a paused one
POST   /api/v1/campaigns/{id}/cancel              stop for good
POST   /api/v1/campaigns/{id}/retry               queue {"state": "failed"|"deferred"} again
POST   /api/v1/campaigns/{id}/duplicate           a new draft with the same content (201)
POST   /api/v1/campaigns/{id}/test                send it now to {"to": [addresses]}
GET    /api/v1/campaigns/{id}/stats               progress: counts per state, rate, ETA, errors
GET    /api/v1/campaigns/{id}/recipients          keyset pages of its ledger: ?state=&outcome=

Content and addresses are checked by the dashboard's own form (campaigns.forms.CampaignForm):
a template error names its part, line and column. A step the campaign's state does not allow
is a 409; what is wrong with the campaign itself (a deleted segment, no tags) a 422.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.db.models import Model
from django.forms.models import model_to_dict
from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router
from ninja import Status as Reply
from ninja.errors import ValidationError

from postroom.accounts.auth import secret_key_auth
from postroom.accounts.models import Project
from postroom.campaigns import actions
from postroom.campaigns.actions import CampaignError
from postroom.campaigns.forms import CampaignForm, ScheduleForm, TestSendForm
from postroom.campaigns.models import Campaign
from postroom.campaigns.schemas import (
    AudienceOut,
    CampaignIn,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    DeletedOut,
    RecipientPage,
    RetryIn,
    RetryOut,
    ScheduleIn,
    StatsOut,
    TestSendIn,
    TestSendOut,
)
from postroom.contacts.models import Segment
from postroom.content.models import Template
from postroom.delivery.actions import default_sender
from postroom.delivery.limits import eta_seconds
from postroom.delivery.models import Message, Sender
from postroom.lib.apierrors import ApiError
from postroom.lib.apiinput import InputSchema
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404

campaigns_router = Router(tags=["campaigns"], auth=secret_key_auth)

EDITABLE = [Campaign.State.DRAFT, Campaign.State.SCHEDULED]
# The dashboard form's field names as the API calls them.
API_FIELDS = {
    "sender": "sender_id",
    "segment": "segment_id",
    "layout": "layout_id",
    "tags_text": "tags",
    "when": "at",
    "__all__": "campaign",
}


def _get_campaign(request: HttpRequest, campaign_id: str) -> Campaign:
    return get_in_project_or_404(Campaign, request.auth, campaign_id, "campaign")


def _ref(model: type[Model], project: Project, code: str | None, field: str, what: str) -> Model:
    """An object named in the request body: one of another project, or none, is a 422."""
    try:
        return get_in_project_or_404(model, project, code, what)
    except Http404:
        raise ApiError(422, f"no such {what} in this project.", field) from None


def _invalid(form: forms.Form) -> ValidationError:
    """A dashboard form's errors as the API's 422, every field at fault named."""
    errors = [
        {"loc": ("body", API_FIELDS.get(field, field)), "msg": " ".join(messages)}
        for field, messages in form.errors.items()
    ]
    return ValidationError(errors)


def _campaign_error(e: CampaignError) -> ApiError:
    if e.field == "state":
        return ApiError(409, e.message)
    return ApiError(422, e.message, API_FIELDS.get(e.field, e.field))


def _not_editable(campaign: Campaign, doing: str) -> ApiError:
    state = campaign.get_state_display().lower()
    return ApiError(
        409, f"A {state} campaign cannot be {doing}: only a draft or a scheduled one can."
    )


def campaign_out(campaign: Campaign) -> dict:
    return {
        "id": str(campaign.code),
        "name": campaign.name,
        "subject": campaign.subject,
        "preheader": campaign.preheader,
        "state": campaign.state,
        "sender_id": str(campaign.sender.code),
        "from_email": campaign.from_email,
        "from_name": campaign.from_name,
        "reply_to": campaign.reply_to,
        "audience": campaign.audience,
        "segment_id": str(campaign.segment.code) if campaign.segment else None,
        "tags": campaign.tags,
        "body_format": campaign.body_format,
        "body": campaign.body,
        "layout_id": str(campaign.layout.code) if campaign.layout else None,
        "text_body": campaign.text_body,
        "track_links": campaign.track_links,
        "track_opens": campaign.track_opens,
        "scheduled_at": campaign.scheduled_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "recipients": campaign.recipients,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }


def _fresh_out(campaign: Campaign) -> dict:
    """The campaign as the database has it now (an action may have updated the row alone)."""
    qs = Campaign.objects.select_related("sender", "segment", "layout")
    return campaign_out(qs.get(pk=campaign.pk))


def _validated(campaign: Campaign, changes: dict[str, Any]) -> Campaign:
    """`campaign` with `changes` (API names) applied and checked by the dashboard's form:
    the same sender, from address, audience, layout and content rules. Not saved."""
    project = campaign.project
    data = model_to_dict(campaign, fields=CampaignForm.Meta.fields)
    data["tags_text"] = ", ".join(campaign.tags)
    tags = None
    for key, value in changes.items():
        if key == "sender_id":
            sender = _ref(Sender, project, value, key, "sender")
            data["sender"] = sender.pk
            if "from_email" not in changes:
                data["from_email"] = sender.from_email
        elif key == "segment_id":
            data["segment"] = _ref(Segment, project, value, key, "segment").pk if value else None
        elif key == "layout_id":
            data["layout"] = _ref(Template, project, value, key, "template").pk if value else None
        elif key == "tags":
            # Kept as a list: a tag may hold a comma, which the form's text field splits on.
            tags = [t.strip() for t in value or [] if t.strip()]
            data["tags_text"] = ", ".join(tags)
        else:
            data[key] = value
    form = CampaignForm(data, instance=campaign, project=project)
    if not form.is_valid():
        raise _invalid(form)
    campaign = form.save(commit=False)
    if tags is not None:
        campaign.tags = tags
    campaign.updated_at = timezone.now()
    return campaign


class CampaignQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    state: str = ""


@campaigns_router.get("", response=CampaignPage)
def list_campaigns(request: HttpRequest, query: Query[CampaignQuery]) -> dict:
    qs = Campaign.objects.filter(project=request.auth)
    if query.state:
        if query.state not in Campaign.State.values:
            raise ApiError(422, f"must be one of {Campaign.State.values}.", "state")
        qs = qs.filter(state=query.state)
    qs = qs.select_related("sender", "segment", "layout")
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    return {"items": [campaign_out(c) for c in page.items], "next_cursor": page.next_cursor}


@campaigns_router.post("", response={201: CampaignOut})
def create_campaign(request: HttpRequest, body: CampaignIn) -> Reply:
    changes = body.dict()
    sender_id = changes.pop("sender_id")
    if sender_id is None:
        sender = default_sender(request.auth)
    else:
        sender = _ref(Sender, request.auth, sender_id, "sender_id", "sender")
    for key in ("from_email", "from_name"):
        if changes[key] is None:
            del changes[key]
    draft = Campaign(
        project=request.auth,
        sender=sender,
        from_email=sender.from_email,
        from_name=sender.from_name,
    )
    campaign = _validated(draft, changes)
    campaign.save()
    return Reply(201, _fresh_out(campaign))


@campaigns_router.get("/{campaign_id}", response=CampaignOut)
def get_campaign(request: HttpRequest, campaign_id: str) -> dict:
    return _fresh_out(_get_campaign(request, campaign_id))


@campaigns_router.patch("/{campaign_id}", response=CampaignOut)
def update_campaign(request: HttpRequest, campaign_id: str, body: CampaignPatch) -> dict:
    campaign = _get_campaign(request, campaign_id)
    if not campaign.is_editable():
        raise _not_editable(campaign, "edited")
    campaign = _validated(campaign, body.dict(exclude_unset=True))
    # Only while still editable: the worker may have started it since it was read, and a
    # plain save would put it back to scheduled with no ledger, to be started twice.
    if not actions.save_edits(campaign, CampaignForm.saved_fields()):
        campaign.refresh_from_db()
        raise _not_editable(campaign, "edited")
    return _fresh_out(campaign)


@campaigns_router.delete("/{campaign_id}", response=DeletedOut)
def delete_campaign(request: HttpRequest, campaign_id: str) -> dict:
    campaign = _get_campaign(request, campaign_id)
    deleted, _ = Campaign.objects.filter(pk=campaign.pk, state__in=EDITABLE, email=None).delete()
    if not deleted:
        campaign.refresh_from_db()
        raise _not_editable(campaign, "deleted")
    return {"success": True, "id": str(campaign.code)}


@campaigns_router.get("/{campaign_id}/audience", response=AudienceOut)
def count_campaign_audience(request: HttpRequest, campaign_id: str) -> actions.AudienceCount:
    campaign = _get_campaign(request, campaign_id)
    try:
        return actions.count_audience(campaign)
    except CampaignError as e:
        raise _campaign_error(e) from None


@campaigns_router.post("/{campaign_id}/send", response=CampaignOut)
def send_campaign(request: HttpRequest, campaign_id: str) -> dict:
    campaign = _get_campaign(request, campaign_id)
    try:
        actions.start(campaign)
    except CampaignError as e:
        raise _campaign_error(e) from None
    return _fresh_out(campaign)


@campaigns_router.post("/{campaign_id}/schedule", response=CampaignOut)
def schedule_campaign(request: HttpRequest, campaign_id: str, body: ScheduleIn) -> dict:
    campaign = _get_campaign(request, campaign_id)
    at, zone = body.at, body.time_zone
    if at.tzinfo is not None:  # the form reads a local time in a zone: give it UTC
        try:
            at, zone = at.astimezone(dt.UTC).replace(tzinfo=None), "UTC"
        except OverflowError:
            raise ApiError(422, "is out of range.", "at") from None
    form = ScheduleForm({"when": at.isoformat(), "time_zone": zone})
    if not form.is_valid():
        raise _invalid(form)
    try:
        actions.start(campaign, when=form.cleaned_data["aware"])
    except CampaignError as e:
        raise _campaign_error(e) from None
    return _fresh_out(campaign)


@campaigns_router.post("/{campaign_id}/unschedule", response=CampaignOut)
def unschedule_campaign(request: HttpRequest, campaign_id: str) -> dict:
    campaign = _get_campaign(request, campaign_id)
    # unschedule() changes a scheduled campaign only and says nothing otherwise; the worker
    # may also have started it since it was read.
    if campaign.state == Campaign.State.SCHEDULED:
        actions.unschedule(campaign)
        campaign.refresh_from_db()
        if campaign.state == Campaign.State.DRAFT:
            return _fresh_out(campaign)
    state = campaign.get_state_display().lower()
    raise ApiError(409, f"A {state} campaign cannot go back to draft: only a scheduled one.")


def _lifecycle(request: HttpRequest, campaign_id: str, do: Any) -> dict:
    campaign = _get_campaign(request, campaign_id)
    try:
        do(campaign)
    except CampaignError as e:
        raise _campaign_error(e) from None
    return _fresh_out(campaign)


@campaigns_router.post("/{campaign_id}/pause", response=CampaignOut)
def pause_campaign(request: HttpRequest, campaign_id: str) -> dict:
    return _lifecycle(request, campaign_id, actions.pause)


@campaigns_router.post("/{campaign_id}/resume", response=CampaignOut)
def resume_campaign(request: HttpRequest, campaign_id: str) -> dict:
    return _lifecycle(request, campaign_id, actions.resume)


@campaigns_router.post("/{campaign_id}/cancel", response=CampaignOut)
def cancel_campaign(request: HttpRequest, campaign_id: str) -> dict:
    return _lifecycle(request, campaign_id, actions.cancel)


@campaigns_router.post("/{campaign_id}/retry", response=RetryOut)
def retry_campaign(request: HttpRequest, campaign_id: str, body: RetryIn) -> dict:
    campaign = _get_campaign(request, campaign_id)
    try:
        count = actions.retry(campaign, body.state)
    except CampaignError as e:
        raise _campaign_error(e) from None
    return {"success": True, "queued": count}


@campaigns_router.post("/{campaign_id}/duplicate", response={201: CampaignOut})
def duplicate_campaign(request: HttpRequest, campaign_id: str) -> Reply:
    copy = actions.duplicate(_get_campaign(request, campaign_id), None)
    return Reply(201, _fresh_out(copy))


@campaigns_router.post("/{campaign_id}/test", response=TestSendOut)
def test_campaign(request: HttpRequest, campaign_id: str, body: TestSendIn) -> dict:
    campaign = _get_campaign(request, campaign_id)
    form = TestSendForm({"to": ", ".join(body.to)})
    if not form.is_valid():
        raise _invalid(form)
    try:
        sent = actions.send_test(campaign, form.cleaned_data["to"], None)
    except CampaignError as e:
        raise _campaign_error(e) from None
    return {
        "success": True,
        "to": [m.to_email for m in sent],
        "message_ids": [str(m.code) for m in sent],
    }


@campaigns_router.get("/{campaign_id}/stats", response=StatsOut)
def get_campaign_stats(request: HttpRequest, campaign_id: str) -> dict:
    campaign = _get_campaign(request, campaign_id)
    progress = actions.progress(campaign)
    counts = {state: progress["counts"].get(state, 0) for state in Message.State.values}
    remaining = sum(counts[s] for s in actions.UNFINISHED)
    # As the dashboard shows it: the observed rate when there is one, else the sender's limits.
    eta = progress["eta_seconds"]
    if eta is None and remaining:
        eta = eta_seconds(campaign.sender, remaining)
    return {
        "state": campaign.state,
        "recipients": campaign.recipients,
        "counts": counts,
        "total": progress["total"],
        "done": progress["done"],
        "remaining": remaining,
        "rate_per_minute": progress["rate_per_minute"],
        "eta_seconds": eta,
        "errors": [{"response": e["last_response"], "count": e["n"]} for e in progress["errors"]],
    }


class RecipientQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    state: str = ""
    outcome: str = ""  # delivered, opened, clicked, bounced or complained: got that far


def recipient_out(message: Message) -> dict:
    return {
        "id": str(message.code),
        "to_email": message.to_email,
        "state": message.state,
        "attempts": message.attempts,
        "last_response": message.last_response,
        "sent_at": message.sent_at,
        **{field: getattr(message, field) for _, field, _ in Message.OUTCOMES},
        "updated_at": message.updated_at,
    }


@campaigns_router.get("/{campaign_id}/recipients", response=RecipientPage)
def list_campaign_recipients(
    request: HttpRequest, campaign_id: str, query: Query[RecipientQuery]
) -> dict:
    campaign = _get_campaign(request, campaign_id)
    if query.state and query.state not in Message.State.values:
        raise ApiError(422, f"must be one of {Message.State.values}.", "state")
    outcomes = [value for value, _, _ in Message.OUTCOMES]
    if query.outcome and query.outcome not in outcomes:
        raise ApiError(422, f"must be one of {outcomes}.", "outcome")
    if not campaign.email_id:  # not started: nobody in the ledger yet
        return {"items": [], "next_cursor": None}
    qs = Message.objects.filter(email_id=campaign.email_id)
    if query.state:
        qs = qs.filter(state=query.state)
    if query.outcome:
        qs = Message.with_outcome(qs, query.outcome)
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    return {"items": [recipient_out(m) for m in page.items], "next_cursor": page.next_cursor}
