"""What every API request passes before its endpoint: the per-key rate limit (with
RateLimit-* headers, and a 429 with Retry-After past it), Idempotency-Key on POST (the first
answer given again to a retry for a day; a reuse for another request is a 409), and CORS for
`track` called from browsers with the public key."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from postroom.accounts.actions import RateCount, claim_idempotency_key, count_api_request
from postroom.accounts.auth import ResolvedKey, resolve_key
from postroom.accounts.forms import client_ip
from postroom.lib.apierrors import error_response

API_PREFIX = "/api/v1/"
# Browsers may call these with the public key from any site (Plunk's track, from a page).
CORS_PATHS = {"/api/v1/track"}
IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


class ApiGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if request.method == "OPTIONS" and request.path in CORS_PATHS:
            return cors(HttpResponse(status=204), preflight=True)
        resolved = resolve_key(request)
        rate = rate_count(request, resolved)
        if rate is not None and rate.exceeded:
            response = error_response(
                429, f"Too many requests: at most {rate.limit} per {settings.API_RATE_WINDOW} s."
            )
            response["Retry-After"] = str(rate.reset_in)
        elif resolved is not None and request.method == "POST" and idempotency_key(request):
            response = self.once(request, resolved)
        else:
            response = self.get_response(request)
        if response.status_code == 405 and "json" not in response.get("Content-Type", ""):
            response = method_not_allowed(request, response)
        if rate is not None:
            for name, value in rate_headers(rate):
                response[name] = value
        if request.path in CORS_PATHS and resolved is not None and resolved.is_public:
            cors(response)
        return response

    def once(self, request: HttpRequest, resolved: ResolvedKey) -> HttpResponse:
        key = idempotency_key(request)
        if not IDEMPOTENCY_KEY.match(key):
            return error_response(
                400,
                "Idempotency-Key: 1 to 255 printable ASCII characters.",
                [{"field": "Idempotency-Key", "message": "1 to 255 printable ASCII characters."}],
            )
        try:
            this = fingerprint(request, resolved)
        except RequestDataTooBig:
            return too_big()
        earlier, is_new = claim_idempotency_key(resolved.project, key, this)
        if not is_new:
            return replay(earlier, this)
        try:
            response = self.get_response(request)
        except BaseException:
            earlier.delete()
            raise
        if response.status_code >= 500 or response.status_code in NOT_KEPT:
            earlier.delete()  # our failure, or not this request's own: a retry may run it
            return response
        earlier.status_code = response.status_code
        earlier.response = response.content
        earlier.content_type = response.get("Content-Type", "")[:100]
        earlier.save(update_fields=["status_code", "response", "content_type"])
        return response


def rate_count(request: HttpRequest, resolved: ResolvedKey | None) -> RateCount | None:
    """This request counted against its key's limit; None without a valid key (the endpoint
    answers 401) or with the limit off."""
    if resolved is None:
        return None
    return count_for_key(resolved, client_ip(request))


def count_for_key(resolved: ResolvedKey, ip: str | None) -> RateCount | None:
    """rate_count for a key and the client's address (the public key's limit is per address)."""
    # Buckets are named by the key's hash: ids are reused after a rollback (tests), hashes not.
    if resolved.is_public:
        limit, bucket = settings.API_RATE_LIMIT_PUBLIC, f"p{resolved.token_hash[:24]}:{ip}"
    else:
        limit, bucket = settings.API_RATE_LIMIT, f"k{resolved.token_hash[:24]}"
    return count_api_request(bucket, limit) if limit else None


def rate_headers(rate: RateCount) -> list[tuple[str, str]]:
    return [
        ("RateLimit-Limit", str(rate.limit)),
        ("RateLimit-Remaining", str(rate.remaining)),
        ("RateLimit-Reset", str(rate.reset_in)),
    ]


def idempotency_key(request: HttpRequest) -> str:
    return request.headers.get("Idempotency-Key", "")


# Answers about the key or the pace rather than the request: never replayed.
NOT_KEPT = {401, 403, 429}


def fingerprint(request: HttpRequest, resolved: ResolvedKey) -> str:
    """The request as a retry would repeat it, and the key that made it: another key (the
    public one, say) reusing the Idempotency-Key is a different request, never a replay."""
    digest = hashlib.sha256(
        f"{resolved.token_hash} {request.method} {request.get_full_path()}\n".encode()
    )
    if request.content_type == "multipart/form-data":
        # An upload is not read into memory here: its size stands for its content.
        digest.update(request.headers.get("Content-Length", "").encode())
    else:
        digest.update(request.body)
    return digest.hexdigest()


def replay(earlier, this_fingerprint: str) -> HttpResponse:
    if earlier.fingerprint != this_fingerprint:
        return error_response(
            409,
            "This Idempotency-Key was used for a different request in the last 24 hours: "
            "use a new key for a new request.",
            [{"field": "Idempotency-Key", "message": "used for a different request"}],
        )
    if earlier.status_code is None:
        return error_response(
            409, "A request with this Idempotency-Key is still running: retry in a moment."
        )
    response = HttpResponse(
        bytes(earlier.response), status=earlier.status_code, content_type=earlier.content_type
    )
    response["Idempotent-Replayed"] = "true"
    return response


def too_big() -> HttpResponse:
    return error_response(
        413,
        f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20} MB.",
    )


def method_not_allowed(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """django-ninja answers a method a path lacks with its own page: ours is JSON."""
    allowed = response.get("Allow", "")
    json_response = error_response(
        405, f"{request.method} is not allowed here" + (f"; use {allowed}." if allowed else ".")
    )
    if allowed:
        json_response["Allow"] = allowed
    return json_response


# What a browser is told about an answer to the public key.
CORS_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    (
        "Access-Control-Expose-Headers",
        "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After",
    ),
]


def cors(response: HttpResponse, preflight: bool = False) -> HttpResponse:
    if preflight:
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Idempotency-Key"
        response["Access-Control-Max-Age"] = "86400"
    else:
        for name, value in CORS_HEADERS:
            response[name] = value
    return response
