"""Templates: reusable message designs of a project. One with a {{ content }} slot is a
layout that campaigns (and later transactional sends and automations) put their body in."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from postroom.accounts.models import Project
from postroom.content.render import SLOT


class Format(models.TextChoices):
    MARKDOWN = "markdown", "Markdown"
    HTML = "html", "HTML"
    MJML = "mjml", "MJML (responsive)"
    TEXT = "text", "Plain text"


class Template(models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="templates", db_index=False)
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.HTML)
    source = models.TextField()
    # The plain-text part as written; empty: made from the HTML.
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "id"], name="content_template_page")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_layout(self) -> bool:
        return bool(SLOT.search(self.source))


class Image(models.Model):
    """An image uploaded for emails: kept under UPLOADS_DIR, served publicly at its opaque
    URL (mail clients fetch images without logging in)."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="images", db_index=False)
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)  # as uploaded, for people
    extension = models.CharField(max_length=5)  # png, jpg, gif, webp: from the bytes
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "id"], name="content_image_page")]

    def __str__(self) -> str:
        return self.name

    @property
    def filename(self) -> str:
        return f"{self.code.hex}.{self.extension}"

    @property
    def url(self) -> str:
        return f"{settings.SITE_URL}/i/{self.filename}"
