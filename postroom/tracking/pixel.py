"""The open pixel's answer, shared by the WSGI fast path (postroom.wsgi) and the Django view
(tracking.views.open_pixel): a transparent GIF for a token we signed, recorded as an open of
its message (tracking.hits), never cached; a 404 for anything else."""

from __future__ import annotations

import base64
import re

from postroom.lib.signing import unsign
from postroom.tracking.hits import hit_writer
from postroom.tracking.links import OPEN

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
PATH = re.compile(r"/o/([A-Za-z0-9_-]{1,100})\.gif")
# What django.views.decorators.cache.never_cache sends.
NO_CACHE = [
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private"),
]


def pixel_token(method: str, path: str) -> str | None:
    """The token of a pixel URL, or None for any other request."""
    if method not in ("GET", "HEAD"):
        return None
    match = PATH.fullmatch(path)
    return match.group(1) if match else None


def answer_pixel(token: str, agent: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a pixel request; the open recorded when the token is ours."""
    code = unsign(OPEN, token)
    if code is None:
        body = b"Unknown link."
        return "404 Not Found", [("Content-Type", "text/plain"), *NO_CACHE], body
    hit_writer.add_open(code, agent[:300])
    headers = [("Content-Type", "image/gif"), ("Content-Length", str(len(PIXEL))), *NO_CACHE]
    return "200 OK", headers, PIXEL
