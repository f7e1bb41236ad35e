"""Where webhooks may go: public addresses only, unless an admin allows private ones.

A project member could otherwise point an endpoint at the machine itself or its network
(a database's HTTP port, a cloud's metadata service at 169.254.169.254) and read the answers in
the delivery log. The host is resolved and every address it has must be public: checked when an
endpoint is saved (to say why at once), and the address a delivery actually connects to is
checked again on its socket before a byte is sent (`guarded_session`), so a name that resolves
to a public address for the check and a private one for the connection (DNS rebinding) gets
nowhere. Redirects are not followed. POSTROOM_WEBHOOKS_ALLOW_PRIVATE=true allows private,
loopback and link-local targets (tests use loopback).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


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
        refuse_private(parts.hostname, info[4][0])


def refuse_private(host: str, ip: str) -> None:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if not address.is_global:
        raise TargetRefused(
            f"{host} is {address}, a private, loopback or reserved address; "
            "an admin can allow those with POSTROOM_WEBHOOKS_ALLOW_PRIVATE."
        )


class GuardedHTTPConnection(HTTPConnection):
    """A connection that checks the address its socket reached before sending anything."""

    def _new_conn(self):
        sock = super()._new_conn()
        if not settings.WEBHOOKS_ALLOW_PRIVATE:
            try:
                refuse_private(self.host, sock.getpeername()[0])
            except TargetRefused:
                sock.close()
                raise
        return sock


class GuardedHTTPSConnection(GuardedHTTPConnection, HTTPSConnection):
    pass


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": GuardedHTTPConnection}),
            "https": type(
                "SPool", (HTTPSConnectionPool,), {"ConnectionCls": GuardedHTTPSConnection}
            ),
        }


def guarded_session() -> requests.Session:
    """A requests session whose connections refuse private addresses (see above)."""
    session = requests.Session()
    session.mount("http://", GuardedAdapter())
    session.mount("https://", GuardedAdapter())
    return session
