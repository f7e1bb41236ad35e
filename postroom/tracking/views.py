"""The pages recipients reach from a message: the open pixel, the click redirect, the
unsubscribe and preference pages. No login: each link is signed for its message
(lib.signing), and a bad signature is a 404, never a redirect."""

from __future__ import annotations

import re

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from postroom.contacts import privacy
from postroom.contacts.actions import (
    ContactChanges,
    ContactError,
    erase_contact,
    suppression_of,
    update_contact,
)
from postroom.contacts.models import Status
from postroom.delivery.models import Message, Sender
from postroom.lib.signing import unsign
from postroom.tracking import actions, esp
from postroom.tracking.links import CLICK, UNSUBSCRIBE
from postroom.tracking.pixel import answer_pixel

HTTP = re.compile(r"https?://", re.IGNORECASE)


def message_for(code) -> Message:
    if code is None:
        raise Http404("Unknown link.")
    message = (
        Message.objects.filter(code=code)
        .only("id", "project_id", "contact_id", "email_id", "sent_at")
        .first()
    )
    if message is None:  # erased since, or never ours
        raise Http404("Unknown link.")
    return message


def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """The pixel inside Django; postroom.wsgi answers it before Django in production."""
    status, headers, body = answer_pixel(token, request.headers.get("User-Agent", ""))
    response = HttpResponse(body, status=int(status[:3]))
    for name, value in headers:
        response[name] = value
    return response


@never_cache
def click(request: HttpRequest, token: str) -> HttpResponse:
    url = request.GET.get("u", "")
    # The signature covers the target: a link to elsewhere is not ours to follow.
    code = unsign(CLICK, token, url.encode())
    if not HTTP.match(url) or not actions.record_click(code, url, request):
        raise Http404("Unknown link.")
    return HttpResponseRedirect(url)


def unsubscribe_target(token: str) -> Message:
    message = message_for(unsign(UNSUBSCRIBE, token))
    return Message.objects.select_related("project", "contact").get(pk=message.pk)


def page_context(message: Message, token: str) -> dict:
    return {
        "project": message.project,
        "address": message.contact.email if message.contact else message.to_email,
        "preferences": f"/u/{token}/preferences",
    }


@csrf_exempt
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks first (link scanners fetch every link in a message); POST unsubscribes:
    the page's button, or a mail client's one-click POST (RFC 8058), which carries
    `List-Unsubscribe=One-Click` and no cookie, hence no CSRF token."""
    message = unsubscribe_target(token)
    context = page_context(message, token)
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        actions.unsubscribe(message, request, "one-click" if one_click else "link")
        if one_click:
            return HttpResponse("Unsubscribed.", content_type="text/plain")
        context["done"] = True
    return render(request, "tracking/unsubscribe.html", context)


@csrf_exempt
@never_cache
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    message = unsubscribe_target(token)
    contact = message.contact
    context = page_context(message, token)
    context["contact"] = contact
    action = request.POST.get("action") if request.method == "POST" else None
    if action and contact is not None:
        if action in CONFIRMED:
            # Anyone a newsletter was forwarded to has this page: the data itself, and its
            # deletion, take a link sent to the address.
            actions.send_confirmation(message, action)
            context["notice"] = (
                f"We sent a link to {contact.email}: open it within 24 hours to "
                f"{'download your data' if action == 'export' else 'delete your data'}."
            )
        else:
            context["notice"] = change_preferences(message, contact, action, request)
            contact.refresh_from_db()
    elif action == "unsubscribe":
        actions.unsubscribe(message, request, "preference page")
    context["suppressed"] = suppression_of(message.project_id, message.to_email) is not None
    return render(request, "tracking/preferences.html", context)


def change_preferences(message: Message, contact, action: str, request: HttpRequest) -> str:
    if action == "unsubscribe":
        actions.unsubscribe(message, request, "preference page")
        return "You are unsubscribed."
    if action == "resubscribe" and contact.status == Status.UNSUBSCRIBED:
        actions.resubscribe(contact, request)
        return "Welcome back: you are subscribed again."
    if action == "name":
        changes = ContactChanges(
            first_name=request.POST.get("first_name", ""),
            last_name=request.POST.get("last_name", ""),
        )
        try:
            update_contact(contact, changes)
        except ContactError as e:
            return f"Not saved: {e.message}"
        return "Your name is saved."
    return ""


CONFIRMED = ("export", "delete")


@csrf_exempt
@never_cache
def confirmed(request: HttpRequest, token: str, what: str, until: str, signature: str):
    """The link sent to the address: the data as a download, or (asked once more, since
    link scanners open links) its deletion."""
    message = unsubscribe_target(token)
    contact = message.contact
    if what not in CONFIRMED or not actions.confirmation_holds(message, what, until, signature):
        raise Http404("This link is not valid, or has expired.")
    if contact is None:
        return render(request, "tracking/erased.html", page_context(message, token))
    if what == "export":
        return privacy.export_response(contact, "my-data.json")
    if request.method == "POST":
        erase_contact(contact)
        return render(request, "tracking/erased.html", page_context(message, token))
    return render(request, "tracking/confirm_delete.html", page_context(message, token))


@csrf_exempt
def esp_webhook(request: HttpRequest, sender_code, signature: str) -> HttpResponse:
    """An email service's tracking webhook for one sender (tracking.esp)."""
    sender = Sender.objects.filter(code=sender_code, kind__in=esp.TRACKING_VIEWS).first()
    if sender is None or not esp.check_signature(sender, signature):
        raise Http404("Unknown webhook.")
    if request.method == "HEAD":  # some services check the URL before saving it
        return HttpResponse()
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST, HEAD"})
    try:
        recorded = esp.receive(sender, request)
    except esp.WebhookRefused as e:
        return JsonResponse({"message": str(e)}, status=400)
    return JsonResponse({"recorded": recorded})
