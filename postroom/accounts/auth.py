"""API authentication by `Authorization: Bearer <key>`.

Secret keys (`sk_...`) open every endpoint of their project. The project's public key
(`pk_...`) is safe to ship in a browser and opens only the endpoints that say so (track).
The key is looked up once per request (resolve_key), by the rate limit and idempotency
middleware and by the endpoint's auth alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from postroom.accounts.models import ApiKey, Project, hash_key


@dataclass(frozen=True)
class ResolvedKey:
    project: Project
    api_key: ApiKey | None  # None for the public key
    token_hash: str

    @property
    def is_public(self) -> bool:
        return self.api_key is None


def bearer_token(request: HttpRequest) -> str:
    return token_of(request.headers.get("Authorization", ""))


def token_of(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header's value, else ""."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


# Keys looked up in this process in the last few seconds, by the token's hash: the API's
# busiest endpoint (track) then skips a query per request. A key revoked or a public key
# rotated in another process stops working within KEY_CACHE_SECONDS (at once in this one).
KEY_CACHE_SECONDS = 5.0
_recent_keys: dict[str, tuple[float, ResolvedKey | None]] = {}


def forget_keys() -> None:
    _recent_keys.clear()


def resolve_key(request: HttpRequest) -> ResolvedKey | None:
    """The project and key of the request's bearer token, or None for a missing, unknown or
    revoked one. Cached on the request, and for a few seconds in the process."""
    if not hasattr(request, "_resolved_key"):
        request._resolved_key = resolve_token(bearer_token(request))
    return request._resolved_key


def resolve_token(token: str) -> ResolvedKey | None:
    """resolve_key for a bearer token (the WSGI fast path has no HttpRequest)."""
    resolved = None
    if token.startswith(("pk_", "sk_")):
        token_hash = hash_key(token)
        now = time.monotonic()
        cached = _recent_keys.get(token_hash)
        if cached is not None and cached[0] > now:
            resolved = cached[1]
        else:
            resolved = lookup_key(token, token_hash)
            if len(_recent_keys) > 10_000:  # a flood of made-up keys: start again
                _recent_keys.clear()
            _recent_keys[token_hash] = (now + KEY_CACHE_SECONDS, resolved)
        if resolved is not None and resolved.api_key is not None:
            resolved.api_key.touch()
    return resolved


def lookup_key(token: str, token_hash: str) -> ResolvedKey | None:
    if token.startswith("pk_"):
        project = Project.objects.filter(public_key=token).first()
        return ResolvedKey(project, None, token_hash) if project is not None else None
    key = (
        ApiKey.objects.select_related("project")
        .filter(key_hash=token_hash, revoked_at=None)
        .first()
    )
    return ResolvedKey(key.project, key, token_hash) if key is not None else None


class SecretKeyAuth(HttpBearer):
    """request.auth becomes the key's Project; request.api_key the ApiKey (None for the
    public key)."""

    allow_public = False

    def authenticate(self, request: HttpRequest, token: str) -> Project | None:
        resolved = resolve_key(request)
        if resolved is None:
            return None
        if resolved.is_public and not self.allow_public:
            raise HttpError(
                403,
                "This endpoint needs a secret key (sk_...). The public key (pk_...) "
                "only works for track and contacts/count.",
            )
        request.api_key = resolved.api_key
        return resolved.project


class PublicOrSecretKeyAuth(SecretKeyAuth):
    allow_public = True


secret_key_auth = SecretKeyAuth()
public_or_secret_key_auth = PublicOrSecretKeyAuth()
