"""API authentication by `Authorization: Bearer <key>`.

Secret keys (`sk_...`) open every endpoint of their project. The project's public key
(`pk_...`) is safe to ship in a browser and opens only the endpoints that say so (track).
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from postroom.accounts.models import ApiKey, Project, hash_key


class SecretKeyAuth(HttpBearer):
    """request.auth becomes the key's Project; request.api_key the ApiKey."""

    allow_public = False

    def authenticate(self, request: HttpRequest, token: str) -> Project | None:
        if token.startswith("pk_"):
            if not self.allow_public:
                if Project.objects.filter(public_key=token).exists():
                    raise HttpError(
                        403,
                        "This endpoint needs a secret key (sk_...). The public key (pk_...) "
                        "only works for track.",
                    )
                return None
            project = Project.objects.filter(public_key=token).first()
            request.api_key = None
            return project
        if not token.startswith("sk_"):
            return None
        key = (
            ApiKey.objects.select_related("project")
            .filter(key_hash=hash_key(token), revoked_at=None)
            .first()
        )
        if key is None:
            return None
        key.touch()
        request.api_key = key
        return key.project


class PublicOrSecretKeyAuth(SecretKeyAuth):
    allow_public = True


secret_key_auth = SecretKeyAuth()
public_or_secret_key_auth = PublicOrSecretKeyAuth()
