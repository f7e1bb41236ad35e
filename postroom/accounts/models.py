"""Users, projects (workspaces), memberships, invitations and API keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta as td

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    def get_by_natural_key(self, username: str) -> User:
        # Addresses are stored lower case; people type them however they like.
        return self.get(email=(username or "").strip().lower())

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs into the dashboard. The email address is the login."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


class Project(models.Model):
    """A workspace: its contacts, mail and keys are invisible to every other project."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    # Shown in the footer of marketing mail, as anti-spam laws (CAN-SPAM, …) ask.
    postal_address = models.CharField(max_length=300, blank=True)
    # The project's own time: automations wait "until 09:00" in it for contacts without one.
    time_zone = models.CharField(max_length=64, default="UTC")
    public_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.public_key:
            self.public_key = new_public_key()
        super().save(*args, **kwargs)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Membership(models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="accounts_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.project_id} as {self.role}"

    def can_manage(self) -> bool:
        """Owners and admins manage members, invitations, keys and project settings."""
        return self.role in (Role.OWNER, Role.ADMIN)


class Invitation(models.Model):
    """An emailed offer to join a project; the token in the link is the only credential."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True)
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)

    VALID_FOR = td(days=7)

    def __str__(self) -> str:
        return f"invitation of {self.email}"

    def is_pending(self) -> bool:
        return self.accepted_at is None and timezone.now() < self.created_at + self.VALID_FOR


def new_public_key() -> str:
    return "pk_" + secrets.token_hex(24)


def hash_key(raw: str) -> str:
    # Keys carry 192 random bits, so a plain SHA-256 is enough (no need for a slow KDF)
    # and lets us find a key by its hash in one indexed lookup.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A secret key `sk_...`: shown once, stored only as a hash, named, revocable."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="api_keys")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters, so people can tell keys apart ("sk_3f9a…").
    prefix = models.CharField(max_length=12)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # Write last_used_at at most this often, so a busy key is not a write per request.
    TOUCH_EVERY = td(minutes=1)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def touch(self) -> None:
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.TOUCH_EVERY:
            return
        ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


class LoginFailure(models.Model):
    """One failed login, counted by address and by client IP to throttle guessing."""

    email = models.CharField(max_length=254)
    ip = models.GenericIPAddressField(null=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # Read by accounts.throttle when a login is attempted.
            models.Index(fields=["email", "at"], name="accounts_loginfail_email"),
            models.Index(fields=["ip", "at"], name="accounts_loginfail_ip"),
        ]

    def __str__(self) -> str:
        return f"failed login for {self.email}"


class ApiRateWindow(models.Model):
    """Requests counted for one API key (or, for the public key, one key and client address)
    in one fixed window of time: the rate limit every web process sees alike
    (accounts.middleware). Old windows are pruned by the worker."""

    bucket = models.CharField(max_length=100)
    window_start = models.BigIntegerField()  # seconds since the epoch
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target; its index serves the count.
            models.UniqueConstraint(fields=["bucket", "window_start"], name="accounts_rate_bucket")
        ]
        indexes = [
            # accounts.actions.prune_api_records: windows long gone.
            models.Index(fields=["window_start"], name="accounts_rate_window"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket}@{self.window_start}: {self.hits}"


class IdempotentRequest(models.Model):
    """A POST made with an Idempotency-Key: the first answer is kept for a day and given
    again to a retry of the same request (accounts.middleware)."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: a reuse of the key for another request is a 409.
    fingerprint = models.CharField(max_length=64)
    # Null while the first request is still running.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.BinaryField(default=b"")
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    KEEP = td(hours=24)
    # A request still "running" after this long was cut off (its process died): forgotten.
    RUNNING_AT_MOST = td(minutes=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="accounts_idempotency_key")
        ]
        indexes = [
            # accounts.actions.prune_api_records: keys older than KEEP.
            models.Index(fields=["created_at"], name="accounts_idempotency_age"),
        ]

    def __str__(self) -> str:
        return self.key
