"""Short signed tokens for links in mail: open pixels, click redirects, unsubscribe pages.

A token is a message's code and the link's purpose, with a keyed BLAKE2b MAC over them (and
over the target URL for clicks): 12 bytes, base64url. The key comes from SECRET_KEY by HKDF,
one per purpose, so a click token cannot be replayed as an unsubscribe token. BLAKE2b
rather than HMAC-SHA256: it is keyed natively and costs about a microsecond, which matters
at twenty links per message and thousands of messages a second (bench/render.py).
"""

from __future__ import annotations

import base64
import hmac
import uuid
from functools import lru_cache
from hashlib import blake2b

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

MAC_BYTES = 12


@lru_cache(maxsize=16)
def _keyed(secret: str, purpose: str) -> blake2b:
    """A MAC state that has taken the purpose's key: copied for each token, so the key is
    set up once per process."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"postroom {purpose} v1".encode()
    ).derive(secret.encode())
    return blake2b(key=key, digest_size=MAC_BYTES)


class Prefix:
    """The MAC state of one code for one purpose, to sign many extras with: a message's
    twenty links cost twenty copies, not twenty key setups."""

    def __init__(self, purpose: str, code: bytes):
        self.code = code
        self.state = _keyed(settings.SECRET_KEY, purpose).copy()
        self.state.update(len(code).to_bytes(4, "big"))
        self.state.update(code)

    def sign(self, extra: bytes = b"") -> str:
        h = self.state.copy()
        h.update(len(extra).to_bytes(4, "big"))
        h.update(extra)
        return b64(self.code + h.digest())


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def mac(purpose: str, *parts: bytes) -> bytes:
    h = _keyed(settings.SECRET_KEY, purpose).copy()
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def sign(purpose: str, code: uuid.UUID, extra: bytes = b"") -> str:
    """A URL-safe token for `code` (a message's), bound to `purpose` and `extra`."""
    return Prefix(purpose, code.bytes).sign(extra)


def unsign(purpose: str, token: str, extra: bytes = b"") -> uuid.UUID | None:
    """The code inside a good token; None for a malformed, tampered or foreign one."""
    raw = unb64(token or "")
    if raw is None or len(raw) != 16 + MAC_BYTES:
        return None
    code, given = raw[:16], raw[16:]
    if not hmac.compare_digest(given, mac(purpose, code, extra)):
        return None
    return uuid.UUID(bytes=code)
