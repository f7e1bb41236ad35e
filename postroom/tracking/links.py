"""The tracked links a message carries: its open pixel, click redirects and unsubscribe
pages, each signed for that message (lib.signing). Pure functions: the send loop's threads
call them while rendering, with no database."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from django.conf import settings

from postroom.lib.signing import sign

OPEN, CLICK, UNSUBSCRIBE = "open", "click", "unsubscribe"


def open_url(code: uuid.UUID) -> str:
    return f"{settings.SITE_URL}/o/{sign(OPEN, code)}.gif"


def click_url(code: uuid.UUID, url: str) -> str:
    return f"{settings.SITE_URL}/c/{sign(CLICK, code, url.encode())}?u={quote(url, safe='')}"


def unsubscribe_url(code: uuid.UUID) -> str:
    return f"{settings.SITE_URL}/u/{sign(UNSUBSCRIBE, code)}"


def preferences_url(code: uuid.UUID) -> str:
    return unsubscribe_url(code) + "/preferences"
