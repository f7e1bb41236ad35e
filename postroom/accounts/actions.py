"""Multi-step writes for users, projects, keys and invitations."""

from __future__ import annotations

import logging
import secrets
import smtplib
import threading
import time
from dataclasses import dataclass
from datetime import timedelta as td

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from postroom.accounts.auth import forget_keys
from postroom.accounts.models import (
    ApiKey,
    ApiRateWindow,
    IdempotentRequest,
    Invitation,
    LoginFailure,
    Membership,
    Project,
    Role,
    User,
    hash_key,
    new_public_key,
)
from postroom.lib.emails import one_line


@transaction.atomic
def create_project(name: str, owner: User) -> tuple[Project, str]:
    """A project, its owner's membership, and a first secret key (returned raw, once)."""
    project = Project.objects.create(name=one_line(name)[:100])
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    _, raw = create_secret_key(project, "Default", created_by=owner)
    return project, raw


def create_secret_key(project: Project, name: str, created_by: User | None) -> tuple[ApiKey, str]:
    """A new `sk_...` key. Only its hash is stored: the raw key is returned here, once."""
    raw = "sk_" + secrets.token_hex(24)
    key = ApiKey.objects.create(
        project=project,
        name=one_line(name)[:100] or "Key",
        key_hash=hash_key(raw),
        prefix=raw[:10],
        created_by=created_by,
    )
    return key, raw


def revoke_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now())
    forget_keys()  # other processes forget it within auth.KEY_CACHE_SECONDS


def rotate_public_key(project: Project) -> str:
    project.public_key = new_public_key()
    project.save(update_fields=["public_key"])
    forget_keys()
    return project.public_key


def create_first_admin() -> tuple[str, str] | None:
    """If there is no user at all, create an admin and return (email, password) to print."""
    if User.objects.exists():
        return None
    email = "admin@localhost"
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(email, password, name="Admin")
    return email, password


class InvitationNotSent(Exception):
    pass


@transaction.atomic
def invite_member(project: Project, email: str, role: str, invited_by: User) -> Invitation:
    """Create the invitation and email it; if the mail cannot go, nothing is kept."""
    invitation = Invitation.objects.create(
        project=project,
        email=email.strip().lower(),
        role=role,
        token=secrets.token_urlsafe(32),
        invited_by=invited_by,
    )
    context = {
        "invitation": invitation,
        "url": f"{settings.SITE_URL}/invite/{invitation.token}/",
        "site_name": settings.SITE_NAME,
    }
    try:
        send_mail(
            subject=one_line(render_to_string("accounts/emails/invite-subject.txt", context)),
            message=render_to_string("accounts/emails/invite-body-text.txt", context),
            html_message=render_to_string("accounts/emails/invite-body-html.html", context),
            from_email=None,
            recipient_list=[invitation.email],
        )
    except (OSError, smtplib.SMTPException) as e:
        raise InvitationNotSent(f"The invitation email could not be sent: {e}") from e
    return invitation


@transaction.atomic
def accept_invitation(invitation: Invitation, user: User) -> Membership:
    membership, created = Membership.objects.get_or_create(
        project=invitation.project, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return membership


def login_blocked_for(email: str, ip: str | None) -> int:
    """Seconds until another login may be tried for this address or IP; 0 when allowed."""
    window = td(seconds=settings.LOGIN_THROTTLE_WINDOW)
    since = timezone.now() - window
    email = email.lower()
    checks = [(LoginFailure.objects.filter(email=email), settings.LOGIN_THROTTLE_PER_EMAIL)]
    if ip:
        checks.append((LoginFailure.objects.filter(ip=ip), settings.LOGIN_THROTTLE_PER_IP))
        checks.append(
            (
                LoginFailure.objects.filter(email=email, ip=ip),
                settings.LOGIN_THROTTLE_PER_EMAIL_AND_IP,
            )
        )
    wait = 0
    for failures, limit in checks:
        recent = list(
            failures.filter(at__gte=since).order_by("-at").values_list("at", flat=True)[:limit]
        )
        if len(recent) >= limit:
            # Blocked until the oldest of the last `limit` failures leaves the window.
            wait = max(wait, int((recent[-1] + window - timezone.now()).total_seconds()) + 1)
    return wait


def record_login_failure(email: str, ip: str | None) -> None:
    LoginFailure.objects.create(email=email.lower()[:254], ip=ip)


def prune_login_failures() -> int:
    """Forget failures older than the throttle window. Run by the worker."""
    since = timezone.now() - td(seconds=settings.LOGIN_THROTTLE_WINDOW)
    deleted, _ = LoginFailure.objects.filter(at__lt=since).delete()
    return deleted


# --- API rate limits and idempotency (accounts.middleware) ---------------------------------


@dataclass(frozen=True)
class RateCount:
    limit: int
    hits: int
    reset_in: int  # seconds until the window ends

    @property
    def exceeded(self) -> bool:
        return self.hits > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.hits)


# A web process adds its requests to the shared count at most this often (and on every
# request once a bucket nears its limit), instead of a write per request. Between flushes the
# other processes' latest requests are not seen: a limit may be passed by what they took in
# that second, never more.
RATE_FLUSH_SECONDS = 1.0


@dataclass
class LocalCount:
    window: int
    shared: int = 0  # the count in the database after this process's last flush
    pending: int = 0  # this process's requests since then
    flushed_at: float = -1.0


_local_counts: dict[str, LocalCount] = {}
_local_lock = threading.Lock()


def count_api_request(bucket: str, limit: int, now: float | None = None) -> RateCount:
    """Count one request in `bucket`'s current window, as every web process sees it: the
    database's count (one upsert, SQLite 3.35+ and PostgreSQL alike) at this process's last
    flush, plus its requests since."""
    now = time.time() if now is None else now
    size = settings.API_RATE_WINDOW
    window = int(now // size) * size
    with _local_lock:
        local = _local_counts.get(bucket)
        if local is None or local.window != window:
            if len(_local_counts) > 10_000:
                _local_counts.clear()
            local = _local_counts[bucket] = LocalCount(window)
        local.pending += 1
        near_limit = local.shared + local.pending + max(1, limit // 10) >= limit
        due = near_limit or now - local.flushed_at >= RATE_FLUSH_SECONDS
        pending = local.pending if due else 0
        local.pending -= pending
        if due:
            local.flushed_at = now
        hits = local.shared + local.pending + pending
    if pending:
        shared = add_to_rate_window(bucket, window, pending)
        with _local_lock:
            local.shared = max(local.shared, shared)
            hits = local.shared + local.pending
    return RateCount(limit, hits, max(1, int(window + size - now)))


def add_to_rate_window(bucket: str, window: int, hits: int) -> int:
    table = ApiRateWindow._meta.db_table
    sql = (
        f"INSERT INTO {table} (bucket, window_start, hits) VALUES (%s, %s, %s) "  # noqa: S608
        f"ON CONFLICT (bucket, window_start) DO UPDATE SET hits = {table}.hits + excluded.hits "
        "RETURNING hits"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [bucket[:100], window, hits])
        (total,) = cursor.fetchone()
    return total


def claim_idempotency_key(
    project: Project, key: str, fingerprint: str
) -> tuple[IdempotentRequest, bool]:
    """The request already made with `key` in the last day, or a new pending one (True)."""
    now = timezone.now()
    theirs = IdempotentRequest.objects.filter(project=project, key=key)
    # Forgotten: kept longer than a day, or left running by a process that died.
    theirs.filter(
        Q(created_at__lt=now - IdempotentRequest.KEEP)
        | Q(status_code=None, created_at__lt=now - IdempotentRequest.RUNNING_AT_MOST)
    ).delete()
    for _ in range(2):  # the first one seen may be deleted under us (its request failed)
        try:
            with transaction.atomic():
                return IdempotentRequest.objects.create(
                    project=project, key=key, fingerprint=fingerprint
                ), True
        except IntegrityError:
            earlier = theirs.first()
            if earlier is not None:
                return earlier, False
    raise IntegrityError(f"Idempotency-Key {key!r} is being claimed and released repeatedly")


def prune_api_records() -> int:
    """Forget rate windows over an hour old and idempotency keys over a day old. Run by the
    worker, a few thousand rows at a time."""
    old_window = time.time() - max(3600, 2 * settings.API_RATE_WINDOW)
    deleted = 0
    for model, old in (
        (ApiRateWindow, Q(window_start__lt=old_window)),
        (IdempotentRequest, Q(created_at__lt=timezone.now() - IdempotentRequest.KEEP)),
    ):
        ids = list(model.objects.filter(old).values_list("id", flat=True)[:5000])
        deleted += model.objects.filter(id__in=ids).delete()[0]
    return deleted


def email_project_admins(project: Project, template: str, context: dict) -> bool:
    """A system email to the project's owners and admins, from `<template>-subject.txt` and
    `<template>-body-text.txt`. False when the relay failed: logged, and what it was about is
    on a page (a banner, the health page) anyway."""
    admins = Membership.objects.filter(
        project=project, role__in=[Role.OWNER, Role.ADMIN]
    ).values_list("user__email", flat=True)
    try:
        send_mail(
            subject=one_line(render_to_string(f"{template}-subject.txt", context)),
            message=render_to_string(f"{template}-body-text.txt", context),
            from_email=None,
            recipient_list=list(admins),
        )
    except OSError:
        logging.getLogger("postroom.accounts").exception("could not email %s", template)
        return False
    return True
