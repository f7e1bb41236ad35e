from __future__ import annotations

import email
from email import policy

from django.conf import settings
from django.contrib import messages
from django.db import DatabaseError
from django.db.models import Count, ProtectedError, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.delivery import actions
from postroom.delivery.forms import SenderForm, TestEmailForm
from postroom.delivery.models import DkimKey, MailboxMessage, Message, Sender
from postroom.lib.emails import ascii_domain, lookup_email
from postroom.lib.keyset import filters_without_cursors, keyset_page
from postroom.lib.querytime import QueryTooSlow, time_limit
from postroom.tracking.esp import TRACKING_VIEWS, webhook_url


def _get_sender(request: HttpRequest, code) -> Sender:
    return get_object_or_404(Sender, project=request.project, code=code)


def _get_message(request: HttpRequest, code) -> Message:
    qs = Message.objects.select_related("email", "sender", "contact")
    return get_object_or_404(qs, project=request.project, code=code)


@project_view
def senders(request: HttpRequest) -> HttpResponse:
    items = Sender.objects.filter(project=request.project).annotate(
        queued=Count("messages", filter=_queued_filter())
    )
    return render(request, "delivery/senders.html", {"senders": items})


def _queued_filter() -> Q:
    return Q(messages__state__in=[Message.State.QUEUED, Message.State.DEFERRED])


@project_view(manage=True)
def sender_edit(request: HttpRequest, code=None) -> HttpResponse:
    sender = _get_sender(request, code) if code else Sender(project=request.project)
    form = SenderForm(request.POST or None, instance=sender)
    if request.method == "POST" and form.is_valid():
        sender = form.save()
        messages.success(request, f"Sender “{sender.name}” saved. Test it below.")
        return redirect("sender", project_code=request.project.code, code=sender.code)
    return render(
        request, "delivery/sender_edit.html", {"form": form, "sender": sender if code else None}
    )


@project_view
def sender_detail(request: HttpRequest, code) -> HttpResponse:
    sender = _get_sender(request, code)
    recent = Message.objects.filter(sender=sender).select_related("email").order_by("-id")[:20]
    domains = sorted(ascii_domain(f"x@{d}").split("@")[1] for d in sender.allowed_domains())
    context = {
        "sender": sender,
        "dkim_keys": DkimKey.objects.filter(project=request.project, domain__in=domains),
        "dkim_domains": domains,
        "dkim_algorithms": DkimKey.Algorithm.choices,
        "test_form": TestEmailForm(initial={"to": request.user.email}),
        "recent": recent,
        "connection": request.session.pop(f"connection-{sender.code}", None),
        "tracking_webhook": webhook_url(sender) if sender.kind in TRACKING_VIEWS else None,
        "bounce_domain": settings.BOUNCE_DOMAIN,
    }
    return render(request, "delivery/sender.html", context)


@require_POST
@project_view(manage=True)
def sender_test_connection(request: HttpRequest, code) -> HttpResponse:
    sender = _get_sender(request, code)
    ok, lines = actions.test_connection(sender)
    request.session[f"connection-{sender.code}"] = {"ok": ok, "lines": lines}
    return redirect("sender", project_code=request.project.code, code=sender.code)


@require_POST
@project_view
def sender_send_test(request: HttpRequest, code) -> HttpResponse:
    sender = _get_sender(request, code)
    form = TestEmailForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give an address to send the test email to.")
        return redirect("sender", project_code=request.project.code, code=sender.code)
    try:
        message = actions.send_test_email(
            request.project, sender, form.cleaned_data["to"], request.user
        )
    except actions.DeliveryError as e:
        messages.error(request, f"{e.field}: {e.message}")
        return redirect("sender", project_code=request.project.code, code=sender.code)
    return redirect("message", project_code=request.project.code, code=message.code)


@require_POST
@project_view(manage=True)
def sender_make_default(request: HttpRequest, code) -> HttpResponse:
    sender = _get_sender(request, code)
    actions.make_default(sender)
    messages.success(request, f"“{sender.name}” is now the default sender.")
    return redirect("senders", project_code=request.project.code)


@require_POST
@project_view(manage=True)
def sender_resume(request: HttpRequest, code) -> HttpResponse:
    sender = _get_sender(request, code)
    actions.resume_sender(sender)
    messages.success(request, f"“{sender.name}” will try again now.")
    return redirect("sender", project_code=request.project.code, code=sender.code)


@require_POST
@project_view(manage=True)
def sender_delete(request: HttpRequest, code) -> HttpResponse:
    sender = _get_sender(request, code)
    if sender.is_default:
        messages.error(request, "Make another sender the default before deleting this one.")
        return redirect("sender", project_code=request.project.code, code=sender.code)
    try:
        sender.delete()
    except ProtectedError as e:
        from postroom.automations.models import Automation

        users = sorted(o.name for o in e.protected_objects if isinstance(o, Automation))
        if users:
            named = ", ".join(f"“{n}”" for n in users[:5])
            messages.error(
                request, f"The automations {named} send through this sender: change them first."
            )
        else:
            messages.error(
                request, "This sender has sent mail: its record stays with the messages."
            )
        return redirect("sender", project_code=request.project.code, code=sender.code)
    messages.success(request, f"Sender “{sender.name}” deleted.")
    return redirect("senders", project_code=request.project.code)


@project_view
def message_detail(request: HttpRequest, code) -> HttpResponse:
    message = _get_message(request, code)
    mailbox = MailboxMessage.objects.filter(message=message).only("code").first()
    context = {"message": message, "mailbox": mailbox, "live": message.state in LIVE_STATES}
    template = "delivery/_message_state.html" if request.htmx else "delivery/message.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


LIVE_STATES = {Message.State.QUEUED, Message.State.SENDING, Message.State.DEFERRED}


@require_POST
@project_view
def message_retry(request: HttpRequest, code) -> HttpResponse:
    message = _get_message(request, code)
    if actions.retry_message(message):
        messages.success(request, "Queued again.")
    else:
        messages.error(request, "Only failed or deferred messages can be retried.")
    return redirect("message", project_code=request.project.code, code=message.code)


@project_view
def mailbox(request: HttpRequest) -> HttpResponse:
    qs = MailboxMessage.objects.filter(project=request.project).select_related("message__email")
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=50
    )
    default = Sender.objects.filter(project=request.project, is_default=True).first()
    return render(request, "delivery/mailbox.html", {"page": page, "default_sender": default})


@project_view
def mailbox_message(request: HttpRequest, code) -> HttpResponse:
    kept = get_object_or_404(
        MailboxMessage.objects.select_related("message"), project=request.project, code=code
    )
    raw = bytes(kept.raw)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    html = parsed.get_body(preferencelist=("html",))
    text = parsed.get_body(preferencelist=("plain",))
    context = {
        "kept": kept,
        "headers": list(parsed.items()),
        "html": html.get_content() if html else "",
        "text": text.get_content() if text else "",
        "raw": raw.decode("utf-8", "replace"),
        "subject": parsed["Subject"],
    }
    return render(request, "delivery/mailbox_message.html", context)


# --- DKIM keys: made and checked from a sender's page, kept per project and domain ---------


def _back_to_sender(request: HttpRequest) -> HttpResponse:
    sender = Sender.objects.filter(project=request.project, code=request.POST.get("sender"))
    sender = sender.first()
    if sender is None:
        return redirect("senders", project_code=request.project.code)
    return redirect(
        reverse("sender", kwargs={"project_code": request.project.code, "code": sender.code})
        + "#dkim"
    )


def _get_key(request: HttpRequest, code) -> DkimKey:
    return get_object_or_404(DkimKey, project=request.project, code=code)


@require_POST
@project_view(manage=True)
def dkim_create(request: HttpRequest) -> HttpResponse:
    algorithm = request.POST.get("algorithm", DkimKey.Algorithm.RSA)
    if algorithm not in DkimKey.Algorithm.values:
        algorithm = DkimKey.Algorithm.RSA
    try:
        key = actions.create_dkim_key(request.project, request.POST.get("domain", ""), algorithm)
    except actions.DeliveryError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, f"Key made: publish the TXT record {key.record_name}.")
    return _back_to_sender(request)


@require_POST
@project_view(manage=True)
def dkim_check(request: HttpRequest, code) -> HttpResponse:
    key = _get_key(request, code)
    results = actions.check_dkim_dns(key)
    if key.active and results[0]["status"] == "ok":
        messages.success(request, f"{key.record_name} is published: mail is signed with it.")
    else:
        messages.error(request, results[0]["text"])
    return _back_to_sender(request)


@require_POST
@project_view(manage=True)
def dkim_toggle(request: HttpRequest, code) -> HttpResponse:
    key = _get_key(request, code)
    key.active = not key.active
    key.save(update_fields=["active"])
    return _back_to_sender(request)


@require_POST
@project_view(manage=True)
def dkim_delete(request: HttpRequest, code) -> HttpResponse:
    _get_key(request, code).delete()
    messages.success(request, "Key deleted.")
    return _back_to_sender(request)


TRANSACTIONAL_LOG_SECONDS = 5.0


@project_view
def transactional_log(request: HttpRequest) -> HttpResponse:
    """Transactional and test email, newest first: search by recipient or subject, filter by
    state, keyset pages; the query is bounded in time and a failure says so."""
    q = request.GET.get("q", "").strip()[:200]
    state = request.GET.get("state", "")
    qs = Message.objects.filter(
        project=request.project, priority=Message.Priority.TRANSACTIONAL
    ).select_related("email")
    if q:
        address = lookup_email(q) if "@" in q else None
        qs = qs.filter(to_email=address) if address else qs.filter(email__subject__icontains=q)
    if state in Message.State.values:
        qs = qs.filter(state=state)
    context = {"q": q, "state": state, "states": Message.State.choices}
    try:
        with time_limit(TRANSACTIONAL_LOG_SECONDS):
            context["page"] = keyset_page(
                qs, after=request.GET.get("after"), before=request.GET.get("before"), size=50
            )
    except (QueryTooSlow, DatabaseError) as e:
        context["failure"] = str(e)
    context["filter_query"] = filters_without_cursors(request.GET)
    response = render(request, "delivery/transactional.html", context)
    response["Cache-Control"] = "no-store"
    return response
