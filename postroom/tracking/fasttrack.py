"""POST /api/v1/track answered before Django (postroom.wsgi), its writes group-committed.

Track is the API's busiest call: an app tracks every signup, order and page view. Through
Django a call cost 1.25-1.4 ms of CPU in the web process (bench/api.py): request handling,
the middleware, URL resolution, django-ninja, and a transaction of its own each. This path
answers only the plain successful call, exactly as the API would (tests hold the two to the
same answers): a JSON body that passes TrackIn and track's own checks, a valid key under its
rate limit, no Idempotency-Key, an allowed host. Anything else goes to Django untouched, the
body put back, and is answered there as before: no or an unknown key, bad input, a preflight,
an Idempotency-Key, a key over its limit (counted once more there), a failed write.

The writes: each request hands its checked call to this process's TrackWriter, whose thread
writes everything gathered meanwhile in one transaction (each contact's upsert and event, in
the order they came) and the request waits for it, so an answered track is a stored event.
POSTROOM_TRACK_BATCHES=0 writes each call in its own transaction in its request.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field

import pydantic
from django.conf import settings
from django.db import connection, transaction
from django.http.request import split_domain_port, validate_host
from ninja.responses import NinjaJSONEncoder

from postroom.accounts.actions import RateCount
from postroom.accounts.auth import resolve_token, token_of
from postroom.accounts.forms import client_ip_of
from postroom.accounts.middleware import CORS_HEADERS, count_for_key, rate_headers
from postroom.contacts.actions import ContactError
from postroom.lib.groupcommit import GroupCommit
from postroom.tracking.actions import (
    PreparedTrack,
    Tracked,
    commit_tracks,
    prepare_track,
    write_track,
    write_tracks,
)
from postroom.tracking.schemas import TrackIn

log = logging.getLogger("postroom.tracking")

TRACK_PATH = "/api/v1/track"
TRACK_BATCH_MAX = 500  # calls a transaction at most
WAIT_SECONDS = 10.0  # then a call not yet taken into a batch goes to Django instead

# The middleware this path stands in for; with any other list, every call goes to Django.
KNOWN_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "postroom.accounts.middleware.ApiGuardMiddleware",
]

Answer = tuple[str, list[tuple[str, str]], bytes]


def answer_track(environ: dict) -> Answer | None:
    """The answer to a plain successful track call, written; None for Django to answer (then
    nothing was written, and the body is back in wsgi.input)."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != TRACK_PATH:
        return None
    if not fast_path_applies(environ):
        return None
    body = read_body(environ)
    if body is None:
        return None
    try:
        answer = answer_body(environ, body)
    except Exception:  # Django answers it, and reports what fails there
        log.exception("track fast path: handing the call to Django")
        answer = None
    if answer is None:
        environ["wsgi.input"] = io.BytesIO(body)
    return answer


def fast_path_applies(environ: dict) -> bool:
    """What Django would do differently from this path: a redirect to HTTPS or HSTS, other
    middleware, a host it refuses (400), a replay (Idempotency-Key), not JSON."""
    if settings.SECURE_SSL_REDIRECT or settings.SECURE_HSTS_SECONDS:
        return False
    if list(settings.MIDDLEWARE) != KNOWN_MIDDLEWARE or "HTTP_IDEMPOTENCY_KEY" in environ:
        return False
    if environ.get("CONTENT_TYPE", "").split(";")[0].strip() != "application/json":
        return False
    if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
        host = environ["HTTP_X_FORWARDED_HOST"]
    else:
        host = environ.get("HTTP_HOST", "")
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def read_body(environ: dict) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # no length (chunked): Django reads it
    if not 0 < length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return None
    return environ["wsgi.input"].read(length)


def answer_body(environ: dict, body: bytes) -> Answer | None:
    try:
        call = TrackIn.model_validate(json.loads(body))
    except (ValueError, pydantic.ValidationError):  # a JSONDecodeError is a ValueError
        return None
    resolved = resolve_token(token_of(environ.get("HTTP_AUTHORIZATION", "")))
    if resolved is None:
        return None
    ip = client_ip_of(environ)
    try:
        prepared = prepare_track(
            resolved.project,
            call.event,
            call.email,
            call.subscribed,
            call.data,
            ip,
            public=resolved.is_public,
        )
    except ContactError:
        return None
    rate = count_for_key(resolved, ip)
    if rate is not None and rate.exceeded:
        return None
    tracked = track_writer.write(prepared)
    return None if tracked is None else success(tracked, rate, resolved.is_public)


def success(tracked: Tracked, rate: RateCount | None, public: bool) -> Answer:
    """What the API answers (django-ninja's JSON, the middleware's headers)."""
    out = {
        "success": True,
        "contact": str(tracked.contact),
        "event": str(tracked.event),
        "timestamp": tracked.at,
    }
    body = json.dumps(out, cls=NinjaJSONEncoder).encode()
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        *(rate_headers(rate) if rate is not None else []),
        *(CORS_HEADERS if public else []),
        *security_headers(),
        ("Content-Length", str(len(body))),
    ]
    return "200 OK", headers, body


def security_headers() -> list[tuple[str, str]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to an API answer."""
    headers = []
    if settings.X_FRAME_OPTIONS:
        headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS.upper()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        value = policy if isinstance(policy, str) else ",".join(policy)
        headers.append(("Referrer-Policy", value))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


@dataclass(eq=False)  # found in the pending list by identity
class PendingTrack:
    prepared: PreparedTrack
    written: threading.Event = field(default_factory=threading.Event)
    tracked: Tracked | None = None  # None once written: the batch failed


class TrackWriter(GroupCommit):
    """This process's track calls, written by a thread of its own in batches (a group
    commit): one transaction for whatever gathered while the last was written."""

    name = "postroom-track"

    def write(self, prepared: PreparedTrack) -> Tracked | None:
        """The call written (its batch committed), or None: not written, Django's to do."""
        if not settings.TRACK_BATCHES:
            with transaction.atomic():
                return write_track(prepared)
        pending = PendingTrack(prepared)
        self.hand_in(pending)
        if not pending.written.wait(WAIT_SECONDS):
            with self.lock:
                if pending in self.pending:  # not taken into a batch: withdrawn, unwritten
                    self.pending.remove(pending)
                    return None
            pending.written.wait()  # being written: its outcome decides
        return pending.tracked

    def flush(self) -> int:
        batch = self.take()
        for start in range(0, len(batch), TRACK_BATCH_MAX):
            chunk = batch[start : start + TRACK_BATCH_MAX]
            tracked: list[Tracked | None] = [None] * len(chunk)
            try:
                tracked = write_batch([pending.prepared for pending in chunk])
            except Exception:
                # Rolled back: each call goes to Django, which writes it alone or says why not.
                log.warning("a batch of %d track calls failed", len(chunk), exc_info=True)
                tracked = [None] * len(chunk)
                # A fresh connection for the next batch: commit_tracks' statements bypass
                # Django's wrapper, which would otherwise tell a broken connection. (Not the
                # connection of a transaction around the writer: a test's.)
                if not connection.in_atomic_block:
                    connection.close()
            finally:
                for pending, result in zip(chunk, tracked, strict=True):
                    pending.tracked = result
                    pending.written.set()
        return len(batch)


def write_batch(calls: list[PreparedTrack]) -> list[Tracked]:
    committed = commit_tracks(calls)  # PostgreSQL: one round trip
    if committed is not None:
        return committed
    with transaction.atomic():  # on SQLite, on the writers' turn (postroom.lib.sqlite)
        return write_tracks(calls)


track_writer = TrackWriter()
