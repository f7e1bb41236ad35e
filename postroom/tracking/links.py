"""The tracked links a message carries: its open pixel, click redirects and unsubscribe
pages, each signed for that message (lib.signing). Pure functions: the send loop's threads
call them while rendering, with no database."""

from __future__ import annotations

import uuid
from functools import lru_cache
from urllib.parse import quote

from django.conf import settings

from postroom.lib.signing import Prefix, sign

OPEN, CLICK, UNSUBSCRIBE, BOUNCE = "open", "click", "unsubscribe", "bounce"


def unsubscribe_url(code: uuid.UUID) -> str:
    return f"{settings.SITE_URL}/u/{sign(UNSUBSCRIBE, code)}"


def preferences_url(code: uuid.UUID) -> str:
    return unsubscribe_url(code) + "/preferences"


# The local part of an unsubscribe address: unsubscribe+<token>@POSTROOM_INBOUND_DOMAIN.
MAILTO_PREFIX = "unsubscribe+"


def unsubscribe_mailto(code: uuid.UUID) -> str | None:
    """The mailto: of List-Unsubscribe, when inbound mail reaches `postroom inbound`."""
    if not settings.INBOUND_DOMAIN:
        return None
    token = sign(UNSUBSCRIBE, code)
    return f"mailto:{MAILTO_PREFIX}{token}@{settings.INBOUND_DOMAIN}?subject=unsubscribe"


# The local part of a message's envelope sender: bounce+<token>@POSTROOM_BOUNCE_DOMAIN (VERP).
BOUNCE_PREFIX = "bounce+"


def bounce_address(code: uuid.UUID) -> str | None:
    """The message's own Return-Path, so that a bounce names the message it is about; None
    without a bounce domain. 45 characters before the @ (the limit is 64)."""
    if not settings.BOUNCE_DOMAIN:
        return None
    return f"{BOUNCE_PREFIX}{sign(BOUNCE, code)}@{settings.BOUNCE_DOMAIN}"


@lru_cache(maxsize=4096)
def quoted(url: str) -> str:
    return quote(url, safe="")


class MessageLinks:
    """One message's tracked links, made as its HTML and text render: each link is signed
    once (the text part repeats the HTML's links), from one MAC state for the message."""

    def __init__(self, code_hex: str):
        self.site = settings.SITE_URL
        code = bytes.fromhex(code_hex)
        self.clicks = Prefix(CLICK, code)
        self.open_token = Prefix(OPEN, code).sign()
        self.made: dict[str, str] = {}

    def click(self, url: str) -> str:
        link = self.made.get(url)
        if link is None:
            token = self.clicks.sign(url.encode())
            link = self.made[url] = f"{self.site}/c/{token}?u={quoted(url)}"
        return link

    def open(self) -> str:
        return f"{self.site}/o/{self.open_token}.gif"


# The message being rendered (renders of a batch run one at a time).
LAST: tuple[str, MessageLinks | None] = ("", None)


def links_for(code_hex: str) -> MessageLinks:
    global LAST
    code, links = LAST
    if code != code_hex or links is None:
        links = MessageLinks(code_hex)
        LAST = (code_hex, links)
    return links
