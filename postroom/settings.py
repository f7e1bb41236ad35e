"""Postroom settings: one flat file, every knob an environment variable.

The defaults run embedded: SQLite in POSTROOM_DATA_DIR, a generated secret key kept beside it,
system mail written to files. So one can check out the code, `pip install .`, `postroom up`,
and it works.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from postroom.lib.env import envbool, envint, envsecret, envstr, persisted_secret
from postroom.lib.mailconfig import parse_smtp_url

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(envstr("POSTROOM_DATA_DIR", "data")).resolve()
# Images uploaded for emails, served publicly at /i/<code>.<ext> (content.views.image_file).
UPLOADS_DIR = Path(envstr("POSTROOM_UPLOADS_DIR", str(DATA_DIR / "uploads"))).resolve()
UPLOAD_MAX_BYTES = envint("POSTROOM_UPLOAD_MAX_BYTES", 5 * 1024 * 1024)
# Contact import files, kept until IMPORT_KEEP_DAYS after their import finished.
IMPORTS_DIR = Path(envstr("POSTROOM_IMPORTS_DIR", str(DATA_DIR / "imports"))).resolve()
# The largest import file, after unzipping (a million six-column rows is about 80 MB).
IMPORT_MAX_BYTES = envint("POSTROOM_IMPORT_MAX_BYTES", 1024 * 1024 * 1024)
IMPORT_KEEP_DAYS = envint("POSTROOM_IMPORT_KEEP_DAYS", 7)

SECRET_KEY = envsecret("SECRET_KEY") or persisted_secret(DATA_DIR / "secret_key")
DEBUG = envbool("DEBUG", False)
SITE_URL = envstr("SITE_URL", "http://localhost:8000").rstrip("/")
# A domain whose mail is piped to `postroom inbound`: List-Unsubscribe then offers a mailto
# (unsubscribe+<token>@INBOUND_DOMAIN) beside the one-click URL.
INBOUND_DOMAIN = envstr("POSTROOM_INBOUND_DOMAIN", "").strip().lower()
# Where bounces of mail sent through SMTP senders go: the envelope sender (Return-Path) of each
# message is bounce+<signed message id>@BOUNCE_DOMAIN, and mail to it is piped to
# `postroom bounce` (or `postroom inbound`). Empty: the From address, and no bounce handling.
BOUNCE_DOMAIN = envstr("POSTROOM_BOUNCE_DOMAIN", INBOUND_DOMAIN).strip().lower()
# A mailbox the worker reads bounces from once a minute, for mail servers that cannot pipe to
# `postroom bounce`: imaps://user:pass@host[:port][/folder] or pop3s://user:pass@host[:port].
BOUNCE_MAILBOX = envsecret("POSTROOM_BOUNCE_MAILBOX") or ""
# Soft bounces (mailbox full, try later) within SOFT_BOUNCE_DAYS that suppress an address.
SOFT_BOUNCE_LIMIT = envint("POSTROOM_SOFT_BOUNCE_LIMIT", 3)
SOFT_BOUNCE_DAYS = envint("POSTROOM_SOFT_BOUNCE_DAYS", 30)
# Opens and clicks this soon after sending are flagged as a scanner's (tracking.scanners).
SCANNER_SECONDS = envint("POSTROOM_SCANNER_SECONDS", 10)
# Health alerts (ops.alerts) are also posted here as JSON, signed with the secret if one is set.
ALERT_WEBHOOK_URL = envstr("POSTROOM_ALERT_WEBHOOK_URL", "")
ALERT_WEBHOOK_SECRET = envsecret("POSTROOM_ALERT_WEBHOOK_SECRET")
# /metrics asks for this bearer token; without one, it answers loopback and staff only.
METRICS_TOKEN = envsecret("POSTROOM_METRICS_TOKEN")
# Webhooks may post to private, loopback and link-local addresses (webhooks.targets).
WEBHOOKS_ALLOW_PRIVATE = envbool("POSTROOM_WEBHOOKS_ALLOW_PRIVATE", False)
# An endpoint whose every delivery failed for this long is disabled and its admins emailed.
WEBHOOK_DISABLE_AFTER_HOURS = envint("POSTROOM_WEBHOOK_DISABLE_AFTER_HOURS", 24)
# Open-pixel hits written together, a batch per transaction (tracking.hits); off: one each.
HIT_BATCHES = envbool("POSTROOM_HIT_BATCHES", True)
# Track API calls written together, a batch per transaction (tracking.fasttrack); off: one each.
TRACK_BATCHES = envbool("POSTROOM_TRACK_BATCHES", True)
SITE_NAME = envstr("SITE_NAME", "Postroom")
# Default: the host of SITE_URL and the loopback names. Never "*": the Host header would then
# be whatever a client sends.
ALLOWED_HOSTS = [
    h
    for h in envstr(
        "ALLOWED_HOSTS", f"{urlsplit(SITE_URL).hostname},localhost,127.0.0.1,[::1]"
    ).split(",")
    if h
]
CSRF_TRUSTED_ORIGINS = [SITE_URL] + [o for o in envstr("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Only trust X-Forwarded-For when a proxy we run sets it (used for login throttling); the
# client address is then the entry our proxy appended, the last one.
USE_X_FORWARDED_FOR = envbool("USE_X_FORWARDED_FOR", False)
REGISTRATION_OPEN = envbool("REGISTRATION_OPEN", False)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    # Its Swagger UI files, served from here: the API docs page needs no CDN.
    "ninja",
    "postroom.accounts",
    "postroom.contacts",
    "postroom.imports",
    "postroom.delivery",
    "postroom.content",
    "postroom.tracking",
    "postroom.campaigns",
    "postroom.signups",
    "postroom.ops",
    "postroom.webhooks",
    "postroom.automations",
]

MIDDLEWARE = [
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

ROOT_URLCONF = "postroom.urls"
WSGI_APPLICATION = "postroom.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "postroom.accounts.context_processors.projects",
                "postroom.campaigns.context_processors.stalled_campaigns",
            ]
        },
    }
]

# Default database engine is SQLite, so one can just install and `postroom up`.
# DATABASE_URL=postgres://user@host:5432/name selects PostgreSQL.
DATABASE_URL = envstr("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            # Django's SQLite backend, each transaction begun on the writers' turn
            # (postroom/lib/sqlite): writers of every process go in one at a time, no sleeping.
            "ENGINE": "postroom.lib.sqlite",
            "NAME": DATA_DIR / "postroom.sqlite3",
            # Kept open between requests: opening the file and setting it up cost a web
            # request about as much as the work of a track call.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at
                # BEGIN so two writers cannot deadlock. The timeout bounds a writer's wait in
                # SQLite, and for its process's other writers (postroom/lib/sqlite/turns.py).
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed logins allowed in LOGIN_THROTTLE_WINDOW seconds: per address from one client IP
# (tight: stops guessing), per client IP (any addresses), and per address from anywhere
# (loose, so that a stranger cannot lock the owner out with a few bad tries).
LOGIN_THROTTLE_PER_EMAIL_AND_IP = envint("LOGIN_THROTTLE_PER_EMAIL_AND_IP", 5)
LOGIN_THROTTLE_PER_IP = envint("LOGIN_THROTTLE_PER_IP", 30)
LOGIN_THROTTLE_PER_EMAIL = envint("LOGIN_THROTTLE_PER_EMAIL", 50)
LOGIN_THROTTLE_WINDOW = envint("LOGIN_THROTTLE_WINDOW", 900)

# The largest request body read into memory: the send API takes up to 10 MB of attachments,
# which base64 makes 13.4 MB. A bigger body is a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("POSTROOM_MAX_REQUEST_BYTES", 16 * 1024 * 1024)

# API rate limits (accounts.middleware), counted in the database so every web process sees
# the same count: requests per secret key, and per public key and client address (browsers
# calling track), in each window of API_RATE_WINDOW seconds. 0 turns a limit off.
API_RATE_WINDOW = envint("POSTROOM_API_RATE_WINDOW", 60)
API_RATE_LIMIT = envint("POSTROOM_API_RATE_LIMIT", 120_000)
API_RATE_LIMIT_PUBLIC = envint("POSTROOM_API_RATE_LIMIT_PUBLIC", 600)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SITE_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve static files straight from the installed package: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# System mail (password resets, invitations). Campaign mail goes through senders, not this.
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Postroom <postroom@localhost>")
SMTP_URL = envsecret("POSTROOM_SMTP_URL")
if SMTP_URL:
    globals().update(parse_smtp_url(SMTP_URL))
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = DATA_DIR / "mail"

# The worker writes a heartbeat this often; doctor and the health page call it stale after
# WORKER_STALE_AFTER seconds without one.
WORKER_HEARTBEAT_INTERVAL = envint("WORKER_HEARTBEAT_INTERVAL", 10)
WORKER_STALE_AFTER = envint("WORKER_STALE_AFTER", 60)
WEB_WORKERS = envint("WEB_WORKERS", 2)
# A sending campaign with queued recipients and room under its sender's limits that hands
# nothing over for this long is stalled: admins are emailed, the dashboard and doctor say so.
CAMPAIGN_STALL_AFTER = envint("CAMPAIGN_STALL_AFTER", 900)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
