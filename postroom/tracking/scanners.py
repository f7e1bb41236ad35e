"""Telling a person's open or click from a machine's. Mail security gateways (Microsoft Defender
Safe Links, Mimecast, Proofpoint, Barracuda, …) fetch every link and image of a message as it
arrives, before anyone reads it; some say who they are in their User-Agent, most do not but
come within seconds of the send. Both are flagged (Event.machine), never dropped: a person can
open a message within seconds too."""

from __future__ import annotations

import re
from datetime import datetime

from django.conf import settings
from django.utils import timezone

# Agents that announce themselves as scanners, crawlers or command-line clients.
SCANNER_AGENTS = re.compile(
    r"barracuda|mimecast|proofpoint|symantec|messagelabs|trend ?micro|sophos|fireeye|"
    r"forcepoint|cisco|ironport|zscaler|safelinks|bitdefender|kaspersky|eset|mcafee|"
    r"bot\b|spider|crawl|preview|python-requests|python-urllib|curl/|wget/|go-http-client|"
    r"okhttp|java/|libwww|headless",
    re.IGNORECASE,
)


def is_machine(sent_at: datetime | None, user_agent: str) -> bool:
    """True when the hit came within SCANNER_SECONDS of the send, or from a scanner's agent
    (or from no agent at all: browsers and mail clients always send one)."""
    if not user_agent or SCANNER_AGENTS.search(user_agent):
        return True
    if sent_at is None:
        return False
    return (timezone.now() - sent_at).total_seconds() < settings.SCANNER_SECONDS
