"""Signing webhook payloads, and checking a signature as a receiver does.

Every POST carries `Postroom-Signature: t=<unix seconds>,v1=<hex>`, where hex is the
HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint's secret. A receiver recomputes it over
the raw body, compares in constant time, and refuses a timestamp more than five minutes from its
own clock, so a request captured and replayed later fails. `verify` is that check: the README
and the endpoint page show the same few lines for receivers to copy.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE_SECONDS = 300


def signature(secret: str, body: bytes, at: int) -> str:
    return hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    return f"t={at},v1={signature(secret, body, at)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `header` signs `body` with `secret`, recently enough."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - at) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, body, at), parts.get("v1", ""))
