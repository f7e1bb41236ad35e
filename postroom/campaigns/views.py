from __future__ import annotations

from django.contrib import messages
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.campaigns import actions
from postroom.campaigns.actions import CampaignError
from postroom.campaigns.forms import CampaignForm, ScheduleForm, TestSendForm
from postroom.campaigns.models import Campaign
from postroom.campaigns.report import campaign_report as campaign_report_of
from postroom.content.models import Template
from postroom.content.views import render_preview
from postroom.delivery.actions import default_sender
from postroom.delivery.limits import eta_seconds
from postroom.delivery.models import Message
from postroom.lib.csvsafe import line_writer, safe_cell
from postroom.lib.keyset import keyset_page
from postroom.lib.querytime import QueryTooSlow, time_limit


def _get_campaign(request: HttpRequest, code) -> Campaign:
    qs = Campaign.objects.select_related("sender", "segment", "email")
    return get_object_or_404(qs, project=request.project, code=code)


def _back(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    return redirect("campaign", project_code=request.project.code, code=campaign.code)


@project_view
def campaigns(request: HttpRequest) -> HttpResponse:
    qs = Campaign.objects.filter(project=request.project).select_related("sender")
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=50
    )
    return render(request, "campaigns/list.html", {"page": page})


@project_view
def campaign_edit(request: HttpRequest, code=None) -> HttpResponse:
    if code:
        campaign = _get_campaign(request, code)
        if not campaign.is_editable():
            messages.error(request, "A campaign that started cannot be edited: duplicate it.")
            return _back(request, campaign)
    else:
        sender = default_sender(request.project)
        campaign = Campaign(
            project=request.project,
            sender=sender,
            from_email=sender.from_email,
            from_name=sender.from_name,
            created_by=request.user,
        )
    form = CampaignForm(request.POST or None, instance=campaign, project=request.project)
    if request.method == "POST" and form.is_valid():
        campaign = form.save(commit=False)
        if actions.save_edits(campaign, form.saved_fields()):
            messages.success(request, "Campaign saved.")
        else:
            messages.error(request, "The campaign started while you edited it: not saved.")
        return _back(request, campaign)
    return render(
        request, "campaigns/edit.html", {"form": form, "campaign": campaign if code else None}
    )


@project_view
def campaign_detail(request: HttpRequest, code) -> HttpResponse:
    campaign = _get_campaign(request, code)
    context = {"campaign": campaign, **_live_context(campaign)}
    if campaign.is_editable():
        try:
            context["audience"] = audience = actions.count_audience(campaign)
            context["send_eta"] = limits_eta_text(campaign, audience.will_send)
        except CampaignError as e:
            context["audience_error"] = e.message
        context["schedule_form"] = ScheduleForm()
    context["test_form"] = TestSendForm(initial={"to": request.user.email})
    template = "campaigns/_live.html" if request.htmx else "campaigns/detail.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    if request.htmx and request.GET.get("seen") != campaign.state:
        # The state moved on (started, finished): the rest of the page is stale too.
        response["HX-Refresh"] = "true"
    return response


def duration(seconds: float) -> str:
    """'about 60 hours', 'about 3 minutes', 'a few seconds'."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size:
            return f"about {round(seconds / size)} {unit}s"
    return "about a minute" if seconds >= 60 else "a few seconds"


def limits_eta_text(campaign: Campaign, count: int) -> str:
    """What the sender's limits imply: "2,100 recipients at 35 per hour: about 60 hours"."""
    limits = campaign.sender.limits()
    if not limits or not count:
        return ""
    window, limit = min(limits, key=lambda wl: wl[1] / wl[0].total_seconds())
    per = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}[int(window.total_seconds())]
    how_long = duration(eta_seconds(campaign.sender, count))
    return f"{count:,} recipients at {limit} per {per}: {how_long}"


def _live_context(campaign: Campaign) -> dict:
    progress = actions.progress(campaign)
    remaining = sum(progress["counts"].get(s, 0) for s in actions.UNFINISHED)
    # The observed rate when there is one, else what the sender's limits allow.
    eta = progress["eta_seconds"] or eta_seconds(campaign.sender, remaining)
    return {
        "progress": progress,
        "remaining": remaining,
        "eta_text": duration(eta) if eta else "",
        "live": campaign.state
        in (Campaign.State.SCHEDULED, Campaign.State.SENDING, Campaign.State.CANCELLING),
        "state_counts": [
            (value, label, progress["counts"].get(value, 0))
            for value, label in Message.State.choices
        ],
    }


def _lifecycle(request: HttpRequest, code, do, done: str) -> HttpResponse:
    campaign = _get_campaign(request, code)
    try:
        do(campaign)
    except CampaignError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, done)
    return _back(request, campaign)


@require_POST
@project_view
def campaign_send(request: HttpRequest, code) -> HttpResponse:
    return _lifecycle(request, code, actions.start, "Sending: the audience is being prepared.")


@require_POST
@project_view
def campaign_schedule(request: HttpRequest, code) -> HttpResponse:
    campaign = _get_campaign(request, code)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return _back(request, campaign)
    return _lifecycle(
        request,
        code,
        lambda c: actions.start(c, when=form.cleaned_data["aware"]),
        f"Scheduled for {form.cleaned_data['aware']:%Y-%m-%d %H:%M %Z}.",
    )


@require_POST
@project_view
def campaign_unschedule(request: HttpRequest, code) -> HttpResponse:
    return _lifecycle(request, code, actions.unschedule, "Back to draft.")


@require_POST
@project_view
def campaign_pause(request: HttpRequest, code) -> HttpResponse:
    return _lifecycle(
        request, code, actions.pause, "Paused: nothing more goes out until you resume."
    )


@require_POST
@project_view
def campaign_resume(request: HttpRequest, code) -> HttpResponse:
    return _lifecycle(request, code, actions.resume, "Resumed.")


@require_POST
@project_view
def campaign_cancel(request: HttpRequest, code) -> HttpResponse:
    return _lifecycle(
        request, code, actions.cancel, "Cancelled: recipients not yet sent to won't be."
    )


@require_POST
@project_view
def campaign_retry(request: HttpRequest, code) -> HttpResponse:
    campaign = _get_campaign(request, code)
    state = request.POST.get("state", "")
    try:
        count = actions.retry(campaign, state)
    except CampaignError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, f"{count} recipient{'s' if count != 1 else ''} queued again.")
    return _back(request, campaign)


@require_POST
@project_view
def campaign_duplicate(request: HttpRequest, code) -> HttpResponse:
    copy = actions.duplicate(_get_campaign(request, code), request.user)
    messages.success(request, "Duplicated: this is the new draft.")
    return redirect("campaign_edit", project_code=request.project.code, code=copy.code)


def _recipients(campaign: Campaign, request: HttpRequest):
    qs = (
        Message.objects.filter(email_id=campaign.email_id)
        if campaign.email_id
        else Message.objects.none()
    )
    state = request.GET.get("state", "")
    if state in Message.State.values:
        qs = qs.filter(state=state)
    outcome = request.GET.get("outcome", "")
    if outcome in {value for value, _, _ in Message.OUTCOMES}:
        qs = Message.with_outcome(qs, outcome)
    q = (request.GET.get("q") or "").strip().lower()
    if q:
        qs = qs.filter(to_email__contains=q)
    return qs, state, q


@project_view
def campaign_recipients(request: HttpRequest, code) -> HttpResponse:
    campaign = _get_campaign(request, code)
    qs, state, q = _recipients(campaign, request)
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=50
    )
    context = {
        "campaign": campaign,
        "page": page,
        "state": state,
        "q": q,
        "states": Message.State.choices,
        "outcome": request.GET.get("outcome", ""),
        "outcomes": [(value, label) for value, _, label in Message.OUTCOMES],
    }
    return render(request, "campaigns/recipients.html", context)


@project_view
def campaign_export(request: HttpRequest, code) -> StreamingHttpResponse:
    """Every recipient with their state and the server's answer, streamed in constant memory."""
    campaign = _get_campaign(request, code)
    qs, _, _ = _recipients(campaign, request)
    writer = line_writer()
    fields = (
        "to_email",
        "state",
        "attempts",
        "last_response",
        "provider_id",
        "sent_at",
        *(field for _, field, _ in Message.OUTCOMES[::-1]),
        "updated_at",
    )

    def rows():
        yield writer.writerow(fields)
        for row in qs.order_by("id").values_list(*fields).iterator(chunk_size=2000):
            yield writer.writerow([safe_cell(v) for v in row])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="campaign-{campaign.code}-recipients.csv"'
    )
    return response


@require_POST
@project_view
def campaign_preview(request: HttpRequest, code) -> HttpResponse:
    """Desktop and phone previews for a chosen contact (htmx fragment)."""
    campaign = _get_campaign(request, code)
    return render_preview(request, actions.content_source(campaign))


@require_POST
@project_view
def campaign_send_test(request: HttpRequest, code) -> HttpResponse:
    campaign = _get_campaign(request, code)
    form = TestSendForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["to"]))
        return _back(request, campaign)
    try:
        sent = actions.send_test(campaign, form.cleaned_data["to"], request.user)
    except CampaignError as e:
        messages.error(request, e.message)
    else:
        who = ", ".join(m.to_email for m in sent)
        messages.success(request, f"Test sent to {who}: it goes out ahead of campaign mail.")
    return _back(request, campaign)


@require_POST
@project_view
def campaign_draft_preview(request: HttpRequest) -> HttpResponse:
    """The edit page's live preview: the message as the form holds it now (htmx fragment)."""
    layout_id = request.POST.get("layout", "")
    layout = None
    if layout_id.isdigit():
        layout = Template.objects.filter(project=request.project, pk=layout_id).first()
    return render_preview(request, actions.draft_source(request.POST, layout))


# The report's queries stop after this long and the page says so.
REPORT_QUERY_SECONDS = 10.0


@project_view
def campaign_report(request: HttpRequest, code) -> HttpResponse:
    """Sent, delivered, opens, clicks (and per link), bounces, complaints and unsubscribes,
    totals and over time as a chart; scanners' opens and clicks left out unless asked for."""
    campaign = _get_campaign(request, code)
    with_machines = request.GET.get("machines") == "1"
    try:
        with time_limit(REPORT_QUERY_SECONDS):
            report = campaign_report_of(campaign, with_machines)
    except (QueryTooSlow, DatabaseError) as e:
        response = render(
            request, "campaigns/report.html", {"campaign": campaign, "failure": str(e)}
        )
        response["Cache-Control"] = "no-store"
        return response
    context = {
        "campaign": campaign,
        "report": report,
        "with_machines": with_machines,
        "figures": report.figures(),
        "chart": report.chart(),
    }
    response = render(request, "campaigns/report.html", context)
    response["Cache-Control"] = "no-store"
    return response
