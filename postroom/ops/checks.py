"""Misconfiguration as Django system checks with stable ids (shown by `postroom doctor`,
`postroom check` and the health page)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import connection


@register()
def check_site_url(app_configs, **kwargs) -> list:
    parts = urlsplit(settings.SITE_URL)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [
            Error(
                f"SITE_URL {settings.SITE_URL!r} is not an absolute http(s) URL.",
                hint="Set SITE_URL to the address people use, e.g. https://mail.example.com.",
                id="postroom.E001",
            )
        ]
    return []


@register()
def check_data_dir(app_configs, **kwargs) -> list:
    if connection.vendor == "sqlite" and not os.access(settings.DATA_DIR, os.W_OK):
        return [
            Error(
                f"The data directory {settings.DATA_DIR} is not writable.",
                hint="Set POSTROOM_DATA_DIR to a directory this user can write.",
                id="postroom.E002",
            )
        ]
    return []


@register(deploy=True)
def check_system_mail(app_configs, **kwargs) -> list:
    if not settings.SMTP_URL:
        return [
            Warning(
                "No SMTP relay configured for system mail: password resets and invitations "
                f"are written to files in {settings.EMAIL_FILE_PATH} instead of being sent.",
                hint="Set POSTROOM_SMTP_URL, e.g. smtp+starttls://user:pass@smtp.example.com:587.",
                id="postroom.W001",
            )
        ]
    return []


@register(deploy=True)
def check_debug(app_configs, **kwargs) -> list:
    if settings.DEBUG:
        return [Warning("DEBUG is on: error pages show internals.", id="postroom.W002")]
    return []


@register()
def check_sqlite_version(app_configs, **kwargs) -> list:
    import sqlite3

    # The send loop writes a batch's results with UPDATE ... FROM (delivery.sending).
    if connection.vendor == "sqlite" and (sqlite3.sqlite_version_info < (3, 33)):
        return [
            Error(
                f"SQLite {sqlite3.sqlite_version} is too old: Postroom needs 3.33 or newer.",
                hint="Use Debian 12 or newer (SQLite 3.40), or PostgreSQL (DATABASE_URL).",
                id="postroom.E003",
            )
        ]
    return []
