"""The public side of tracking: the open pixel and the click redirect. No login: each link
is signed for its message (lib.signing), and a bad signature is a 404, never a redirect."""

from __future__ import annotations

import base64
import re

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.cache import never_cache

from postroom.delivery.models import Message
from postroom.lib.signing import unsign
from postroom.tracking import actions
from postroom.tracking.links import CLICK, OPEN

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
HTTP = re.compile(r"https?://", re.IGNORECASE)


def message_for(code) -> Message:
    if code is None:
        raise Http404("Unknown link.")
    message = (
        Message.objects.filter(code=code).only("id", "project_id", "contact_id", "email_id").first()
    )
    if message is None:  # erased since, or never ours
        raise Http404("Unknown link.")
    return message


@never_cache
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    message = message_for(unsign(OPEN, token))
    actions.record_open(message, request)
    return HttpResponse(PIXEL, content_type="image/gif")


@never_cache
def click(request: HttpRequest, token: str) -> HttpResponse:
    url = request.GET.get("u", "")
    # The signature covers the target: a link to elsewhere is not ours to follow.
    message = message_for(unsign(CLICK, token, url.encode()))
    if not HTTP.match(url):
        raise Http404("Unknown link.")
    actions.record_click(message, url, request)
    return HttpResponseRedirect(url)
