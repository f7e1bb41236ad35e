"""Keyset pagination: pages by "id below the last one seen", so page 20,000 costs what page 1
costs. Cursors are opaque tokens in URLs; the ids inside them stay internal."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Q, QuerySet

T = TypeVar("T")


def encode_cursor(value: int, at: dt.datetime | None = None) -> str:
    text = f"k{value}" if at is None else f"t{micros(at)}.{value}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> int | None:
    """The id inside a cursor, or None for a missing or malformed one (first page)."""
    key = decode_key(token)
    return key[-1] if key else None


def decode_key(token: str | None) -> tuple | None:
    """(id,) or (time, id) from a cursor; None for a missing or malformed one."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw.startswith("k"):
            return (int(raw[1:]),)
        if raw.startswith("t"):
            at, _, value = raw[1:].partition(".")
            return (EPOCH + dt.timedelta(microseconds=int(at)), int(value))
    except (ValueError, UnicodeDecodeError, OverflowError):
        pass
    return None


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def micros(at: dt.datetime) -> int:
    return (at - EPOCH) // dt.timedelta(microseconds=1)


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # older items
    prev_cursor: str | None  # newer items

    @property
    def has_other_pages(self) -> bool:
        return bool(self.next_cursor or self.prev_cursor)


def keyset_page(
    qs: QuerySet,
    *,
    after: str | None = None,
    before: str | None = None,
    size: int = 50,
    by: str | None = None,
) -> Page:
    """Newest first by id, or by the time field `by` and then id (a list filtered by a time
    range: an index on that field finds the range, where walking ids would read every newer
    row first). `after` = the next (older) page after that cursor; `before` = the previous
    (newer) page. One query of size + 1 rows either way."""
    order = (by, "id") if by else ("id",)
    older_than, newer_than = key_of(after, by), key_of(before, by)
    if newer_than is not None:
        qs = qs.filter(beyond(order, newer_than, newer=True))
        rows = list(qs.order_by(*order)[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            items=rows,
            next_cursor=cursor_of(rows[-1], by) if rows else None,
            prev_cursor=cursor_of(rows[0], by) if rows and has_newer else None,
        )
    if older_than is not None:
        qs = qs.filter(beyond(order, older_than, newer=False))
    rows = list(qs.order_by(*[f"-{f}" for f in order])[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return Page(
        items=rows,
        next_cursor=cursor_of(rows[-1], by) if rows and has_older else None,
        prev_cursor=cursor_of(rows[0], by) if rows and older_than is not None else None,
    )


def key_of(token: str | None, by: str | None) -> tuple | None:
    """A cursor's key if it is of this list's kind (a cursor from a list ordered otherwise is
    ignored: the first page)."""
    key = decode_key(token)
    return key if key is not None and len(key) == (2 if by else 1) else None


def cursor_of(row, by: str | None) -> str:
    return encode_cursor(row.id, getattr(row, by) if by else None)


def beyond(order: tuple[str, ...], key: tuple, newer: bool) -> Q:
    """Rows after `key` in the order: (t, id) > (t0, id0) is t >= t0 and (t > t0 or id > id0);
    the first half is what an index on t can seek to."""
    op = "gt" if newer else "lt"
    if len(order) == 1:
        return Q(**{f"id__{op}": key[0]})
    field, (at, value) = order[0], key
    return Q(**{f"{field}__{op}e": at}) & (Q(**{f"{field}__{op}": at}) | Q(**{f"id__{op}": value}))


def filters_without_cursors(params) -> str:
    """A list's query string with its page cursors left out: what the pager's links keep
    (templates/_pager.html)."""
    kept = params.copy()
    for cursor in ("after", "before"):
        kept.pop(cursor, None)
    return kept.urlencode()
