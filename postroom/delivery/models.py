"""The delivery ledger and senders.

An Email is what is sent (subject, from, bodies), shared by all its recipients; a Message is
one recipient of one Email: the ledger row that is also the work queue (DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from datetime import timedelta as td

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project
from postroom.lib.crypto import decrypt, encrypt

# A worker claims this many messages per connection to the relay at a time (Sender.batch_size).
BATCH_PER_CONNECTION = 100
MAX_POOL_SIZE = 32


class Sender(models.Model):
    """Where a project's mail goes out: the built-in Mailbox, an SMTP relay, or an email
    service's API (through django-anymail, see delivery.transports.anymail)."""

    class Kind(models.TextChoices):
        MAILBOX = "mailbox", "Mailbox (kept in Postroom, nothing leaves)"
        SMTP = "smtp", "SMTP relay"
        SES = "ses", "Amazon SES"
        POSTMARK = "postmark", "Postmark"
        SENDGRID = "sendgrid", "SendGrid"
        MAILGUN = "mailgun", "Mailgun"
        BREVO = "brevo", "Brevo"
        RESEND = "resend", "Resend"

    class Security(models.TextChoices):
        STARTTLS = "starttls", "STARTTLS"
        TLS = "tls", "TLS (implicit, port 465)"
        NONE = "none", "None (plain text: loopback only)"

    class Unknown(models.TextChoices):
        RESEND = "resend", "Send again (may duplicate)"
        HOLD = "hold", "Hold for review"

    project = models.ForeignKey(Project, models.CASCADE, related_name="senders")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MAILBOX)
    is_default = models.BooleanField(default=False)
    from_email = models.CharField(max_length=254)
    from_name = models.CharField(max_length=100, blank=True)
    # Other From domains this sender may use, comma-separated ("example.com, news.example.com").
    from_domains = models.CharField(max_length=500, blank=True)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)
    username = models.CharField(max_length=255, blank=True)
    password_encrypted = models.TextField(blank=True)
    timeout = models.PositiveIntegerField(default=30)
    # SMTP: connections each worker keeps open to the relay, sending side by side.
    pool_size = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(MAX_POOL_SIZE)]
    )
    # An email service's API key (for Amazon SES: the secret access key), and its settings
    # that are not secret (region, access key id, sending domain, API URL, message stream).
    api_key_encrypted = models.TextField(blank=True)
    esp_options = models.JSONField(default=dict, blank=True)
    # Limits counted from the ledger (see delivery.limits); empty means no limit.
    per_second = models.PositiveIntegerField(null=True, blank=True)
    per_minute = models.PositiveIntegerField(null=True, blank=True)
    per_hour = models.PositiveIntegerField(null=True, blank=True)
    per_day = models.PositiveIntegerField(null=True, blank=True)
    # Warm-up ramp for a new sending domain: a daily limit that starts at warmup_first_day
    # messages on warmup_started_on and grows by warmup_growth_percent each day.
    warmup_started_on = models.DateField(null=True, blank=True)
    warmup_first_day = models.PositiveIntegerField(null=True, blank=True)
    warmup_growth_percent = models.PositiveSmallIntegerField(default=50)
    # What to do with messages whose fate is unknown after a worker crash (in flight).
    on_unknown = models.CharField(max_length=10, choices=Unknown.choices, default=Unknown.RESEND)
    # Set when the relay refuses our login or cannot be reached: sending stops until fixed.
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-is_default", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def password(self) -> str:
        return decrypt(self.password_encrypted)

    @password.setter
    def password(self, value: str) -> None:
        self.password_encrypted = encrypt(value)

    @property
    def api_key(self) -> str:
        return decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = encrypt(value)

    def batch_size(self) -> int:
        """Messages a worker claims at a time: BATCH_PER_CONNECTION for each connection.
        A worker killed mid-batch leaves at most this many whose fate is unknown."""
        connections = self.pool_size if self.kind == self.Kind.SMTP else 1
        return BATCH_PER_CONNECTION * connections

    def limits(self) -> list[tuple[td, int]]:
        """(window, most messages in it) for every limit that is set."""
        windows = [
            (td(seconds=1), self.per_second),
            (td(minutes=1), self.per_minute),
            (td(hours=1), self.per_hour),
            (td(days=1), self.per_day),
            (td(days=1), self.warmup_limit()),
        ]
        return [(w, n) for w, n in windows if n]

    def warmup_limit(self, today: dt.date | None = None) -> int | None:
        """Today's daily limit under the warm-up ramp, or None when there is no ramp."""
        if not self.warmup_started_on or not self.warmup_first_day:
            return None
        days = max(0, ((today or timezone.localdate()) - self.warmup_started_on).days)
        growth = 1 + self.warmup_growth_percent / 100
        # Capped so the arithmetic stays sane once the ramp no longer matters.
        return int(min(self.warmup_first_day * growth**days, 10**9))

    def allowed_domains(self) -> set[str]:
        domains = {d.strip().lower() for d in self.from_domains.split(",") if d.strip()}
        domains.add(self.from_email.rsplit("@", 1)[-1].lower())
        return domains


class Email(models.Model):
    """One piece of mail as written: shared by every recipient it goes to."""

    class Kind(models.TextChoices):
        TRANSACTIONAL = "transactional", "Transactional"
        TEST = "test", "Test"
        CAMPAIGN = "campaign", "Campaign"
        AUTOMATION = "automation", "Automation"

    project = models.ForeignKey(Project, models.CASCADE, related_name="emails")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=15, choices=Kind.choices)
    sender = models.ForeignKey(Sender, models.PROTECT, related_name="emails")
    from_email = models.CharField(max_length=254)
    from_name = models.CharField(max_length=100, blank=True)
    reply_to = models.CharField(max_length=254, blank=True)
    subject = models.CharField(max_length=998)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    # Subject, HTML and text are sandboxed templates (content.render), rendered for each
    # recipient with their data; otherwise they go out as written.
    personalised = models.BooleanField(default=False)
    # The tracked links of a personalised Email, in order: its templates read _link0, …
    links = models.JSONField(default=list, blank=True)
    # Files sent with every recipient's copy (the send API): a list of
    # {"filename", "content_type", "content" (base64)}, bounded by delivery.actions.
    attachments = models.JSONField(default=list, blank=True)
    # Transactional mail reaches contacts who unsubscribed from marketing mail, unless its
    # sender asked otherwise (delivery.sending.skip_reasons).
    skip_unsubscribed = models.BooleanField(default=False)
    # A paused campaign holds its Email: the send loop claims none of its messages.
    held = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.subject


class Message(models.Model):
    """One recipient of one Email: its state, attempts and the relay's last answer."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DEFERRED = "deferred", "Deferred"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    class Priority(models.IntegerChoices):
        # Lower goes first: transactional before automation before campaign (DESIGN.md).
        TRANSACTIONAL = 0, "Transactional"
        AUTOMATION = 1, "Automation"
        CAMPAIGN = 2, "Campaign"

    project = models.ForeignKey(Project, models.CASCADE, related_name="messages", db_index=False)
    email = models.ForeignKey(Email, models.CASCADE, related_name="messages", db_index=False)
    sender = models.ForeignKey(Sender, models.PROTECT, related_name="messages", db_index=False)
    contact = models.ForeignKey(
        "contacts.Contact", models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    to_email = models.CharField(max_length=254)
    to_name = models.CharField(max_length=100, blank=True)
    # What a personalised Email may use besides the contact: an event's or an API call's data.
    data = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.CAMPAIGN)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The claim: a worker's token and how long it holds the row (see delivery.sending).
    claim = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_response = models.CharField(max_length=500, blank=True)
    provider_id = models.CharField(max_length=255, blank=True)
    # Set when a crash left the message in flight and it was sent again.
    maybe_duplicate = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # What became of it after the relay took it (tracking): the first delivery report, open,
    # click, bounce and complaint. Every one is also an Event.
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    LEASE = td(minutes=5)

    class Meta:
        indexes = [
            # The send loop's claim: due work of one sender, most urgent first.
            models.Index(
                fields=["sender", "state", "priority", "id"], name="delivery_message_queue"
            ),
            # An Email's recipients by state: a campaign's live counts, its finish check,
            # cancel and retry (campaigns.actions); it also serves the foreign key.
            models.Index(fields=["email", "state"], name="delivery_message_email_state"),
            # Rate limits count what a sender sent in a window (delivery.limits).
            models.Index(fields=["sender", "sent_at"], name="delivery_message_sent"),
            # Message lists of a project, newest first.
            models.Index(fields=["project", "id"], name="delivery_message_page"),
            # delivery.sending.requeue_due: deferred messages whose next attempt is due, and
            # claims whose worker died (lease expired).
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="deferred"),
                name="delivery_message_deferred",
            ),
            models.Index(
                fields=["lease_until"],
                condition=models.Q(state="sending"),
                name="delivery_message_inflight",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.to_email} ({self.state})"

    # The furthest a sent message got, for lists of recipients: a complaint outranks a bounce,
    # which outranks anything the recipient did.
    OUTCOMES = (
        ("complained", "complained_at", "Complained"),
        ("bounced", "bounced_at", "Bounced"),
        ("clicked", "clicked_at", "Clicked"),
        ("opened", "opened_at", "Opened"),
        ("delivered", "delivered_at", "Delivered"),
    )

    @classmethod
    def with_outcome(cls, messages: models.QuerySet, outcome: str) -> models.QuerySet:
        """The messages that got as far as `outcome` (one of OUTCOMES' values)."""
        field = {value: field for value, field, _ in cls.OUTCOMES}[outcome]
        return messages.filter(**{f"{field}__isnull": False})

    @property
    def outcome(self) -> tuple[str, str] | None:
        """(value, label) of the furthest outcome, or None for none yet."""
        for value, field, label in self.OUTCOMES:
            if getattr(self, field) is not None:
                return value, label
        return None

    def message_id(self, domain: str) -> str:
        """A stable Message-ID from (email, recipient): a resend is recognisable downstream."""
        digest = hashlib.sha256(f"{self.email.code}:{self.to_email}".encode()).hexdigest()[:24]
        return f"<{digest}.{self.email.code.hex[:12]}@{domain}>"


class MailboxMessage(models.Model):
    """A message the Mailbox sender kept instead of sending: the dashboard inbox."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="mailbox", db_index=False)
    message = models.OneToOneField(Message, models.CASCADE, related_name="mailbox_copy")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    raw = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "id"], name="delivery_mailbox_page")]

    def __str__(self) -> str:
        return f"mailbox copy of {self.message_id}"


class DkimKey(models.Model):
    """A DKIM signing key for one of the project's sending domains. Mail From that domain is
    signed with its newest active key (delivery.dkim); a key is activated once its DNS record
    is found (or by hand)."""

    class Algorithm(models.TextChoices):
        RSA = "rsa", "RSA 2048 (understood everywhere)"
        ED25519 = "ed25519", "Ed25519 (small and fast; sign with RSA too for older receivers)"

    project = models.ForeignKey(Project, models.CASCADE, related_name="dkim_keys")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    domain = models.CharField(max_length=253)  # ASCII (IDNA), lower case
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices, default=Algorithm.RSA)
    private_key_encrypted = models.TextField()
    public_key = models.TextField()  # the DNS record's p= value
    active = models.BooleanField(default=False)
    # The last "check DNS": when, and what it found (a list of {check, status, text}).
    checked_at = models.DateTimeField(null=True, blank=True)
    check_result = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "domain", "selector"], name="delivery_dkim_selector"
            )
        ]
        ordering = ["domain", "-created_at"]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def dns_record(self) -> str:
        kind = "ed25519" if self.algorithm == self.Algorithm.ED25519 else "rsa"
        return f"v=DKIM1; k={kind}; p={self.public_key}"

    @property
    def private_pem(self) -> bytes:
        return decrypt(self.private_key_encrypted).encode("ascii")
