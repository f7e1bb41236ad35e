"""Where webhooks may go: public addresses only, unless an admin allows private ones.

A project member could otherwise point an endpoint at the machine itself or its network
(a database's HTTP port, a cloud's metadata service at 169.254.169.254) and read the answers in
the delivery log. The host is resolved and every address it has must be public: checked when an
endpoint is saved and again before every delivery (a name can be pointed elsewhere later).
Redirects are not followed. POSTROOM_WEBHOOKS_ALLOW_PRIVATE=true allows private, loopback and
link-local targets (tests use loopback).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(Exception):
    pass


def check_url(url: str) -> None:
    """Raise TargetRefused, saying why, for a URL webhooks may not post to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("must be an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise TargetRefused("must not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("has a port that is not a number from 1 to 65535.") from None
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        raise TargetRefused(f"cannot resolve {parts.hostname}: {e}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global:
            raise TargetRefused(
                f"{parts.hostname} is {address}, a private, loopback or reserved address; "
                "an admin can allow those with POSTROOM_WEBHOOKS_ALLOW_PRIVATE."
            )
