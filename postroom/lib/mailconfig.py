"""Parse POSTROOM_SMTP_URL into Django's EMAIL_* settings for system mail (resets, invitations).

smtp://user:pass@host:25            plain SMTP
smtp+starttls://user:pass@host:587  STARTTLS
smtps://user:pass@host:465          implicit TLS
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def parse_smtp_url(url: str) -> dict:
    parts = urlsplit(url)
    schemes = {"smtp": (False, False), "smtp+starttls": (True, False), "smtps": (False, True)}
    if parts.scheme not in schemes:
        raise ValueError(
            f"POSTROOM_SMTP_URL: unknown scheme {parts.scheme!r}, use one of {sorted(schemes)}"
        )
    use_tls, use_ssl = schemes[parts.scheme]
    default_port = 465 if use_ssl else (587 if use_tls else 25)
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname or "localhost",
        "EMAIL_PORT": parts.port or default_port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_USE_SSL": use_ssl,
    }
