"""Keyset pagination: pages by "id below the last one seen", so page 20,000 costs what page 1
costs. Cursors are opaque tokens in URLs; the ids inside them stay internal."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import QuerySet

T = TypeVar("T")


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"k{value}".encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> int | None:
    """The id inside a cursor, or None for a missing or malformed one (first page)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(raw[1:]) if raw.startswith("k") else None
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # older items
    prev_cursor: str | None  # newer items

    @property
    def has_other_pages(self) -> bool:
        return bool(self.next_cursor or self.prev_cursor)


def keyset_page(
    qs: QuerySet, *, after: str | None = None, before: str | None = None, size: int = 50
) -> Page:
    """Newest first by id. `after` = the next (older) page after that cursor; `before` = the
    previous (newer) page. One query of size + 1 rows either way."""
    older_than, newer_than = decode_cursor(after), decode_cursor(before)
    if newer_than is not None:
        rows = list(qs.filter(id__gt=newer_than).order_by("id")[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            items=rows,
            next_cursor=encode_cursor(rows[-1].id) if rows else None,
            prev_cursor=encode_cursor(rows[0].id) if rows and has_newer else None,
        )
    if older_than is not None:
        qs = qs.filter(id__lt=older_than)
    rows = list(qs.order_by("-id")[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return Page(
        items=rows,
        next_cursor=encode_cursor(rows[-1].id) if rows and has_older else None,
        prev_cursor=encode_cursor(rows[0].id) if rows and older_than is not None else None,
    )


def filters_without_cursors(params) -> str:
    """A list's query string with its page cursors left out: what the pager's links keep
    (templates/_pager.html)."""
    kept = params.copy()
    for cursor in ("after", "before"):
        kept.pop(cursor, None)
    return kept.urlencode()
