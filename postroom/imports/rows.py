"""Reading an import file record by record, and turning each record into a contact row or a
reason to turn it away. Pure Python and no database: the worker (imports.actions) feeds it
chunks and writes what comes out."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.utils import timezone

from postroom.contacts.actions import ContactError, clean_tag_names
from postroom.contacts.models import FieldDefinition, FieldType, Status
from postroom.lib.csvsniff import DELIMITERS
from postroom.lib.emails import InvalidEmail, normalise_email, one_line

NAME_MAX = 100
TEXT_MAX = 2000  # FieldDefinition.coerce's limit for text fields
RAW_MAX = 1000
SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Record:
    """One record of the file: `line` is the physical line it starts on (a quoted field may
    hold line breaks, so a record can span several); `cells` None when it could not be read."""

    line: int
    last_line: int
    cells: list[str] | None
    error: str = ""


class RecordReader:
    """The file's records after the header, with their line numbers. Undecodable bytes do not
    stop the file: they reach the row as lone surrogates and that row is turned away.

    A quote left open swallows every line up to the next quote. When a record spans several
    lines and has the wrong number of values (`width`, the header's), its first line is turned
    away and the lines after it are read again, so one stray quote costs one row, not the rest
    of the file."""

    def __init__(self, path: Path, encoding: str, delimiter: str, has_header: bool, width: int = 0):
        # surrogateescape keeps bytes the encoding cannot read (UTF-16 cannot: it replaces).
        errors = "replace" if encoding.startswith("utf-16") else "surrogateescape"
        self.file = open(path, encoding=encoding, errors=errors, newline="")  # noqa: SIM115
        self.delimiter = delimiter
        self.physical = 0  # lines read from the file
        self.current: list[tuple[int, str]] = []  # the lines of the record being read
        self.pushed: deque[tuple[int, str]] = deque()
        self.reader = csv.reader(self._lines(), delimiter=delimiter)
        self.header: list[str] = []
        self.width = 0
        self.records = 0
        if has_header:
            first = self.next()
            while first is not None and not first.cells and not first.error:
                first = self.next()  # blank lines before the header
            # Stored as JSON: no NUL (PostgreSQL refuses it), no undecodable bytes.
            cells = (first.cells or []) if first else []
            self.header = [
                SURROGATE.sub("\ufffd", cell.replace("\x00", "")).strip() for cell in cells
            ]
        self.width = width or len(self.header)
        self.records = 0

    def _lines(self) -> Iterator[str]:
        while True:
            if self.pushed:
                number, line = self.pushed.popleft()
            else:
                line = self.file.readline()
                if not line:
                    return
                self.physical += 1
                number = self.physical
            self.current.append((number, line))
            yield line

    def next(self) -> Record | None:
        """The next record, None at the end of the file."""
        self.current = []
        try:
            cells, error = next(self.reader), ""
        except StopIteration:
            return None
        except csv.Error as e:
            cells, error = None, f"the line could not be read ({e})"
        lines, self.current = self.current, []
        self.records += 1
        first, last = lines[0][0], lines[-1][0]
        if len(lines) > 1 and self.width and (cells is None or len(cells) != self.width):
            # Read the swallowed lines again, with a fresh reader (this one may have hit the end).
            self.pushed.extendleft(reversed(lines[1:]))
            self.reader = csv.reader(self._lines(), delimiter=self.delimiter)
            error = (
                "a quote opened on this line is never closed; "
                "the lines after it were read on their own"
            )
            cells = _split_plain(lines[0][1], self.delimiter)
            return Record(line=first, last_line=first, cells=cells, error=error)
        return Record(line=first, last_line=last, cells=cells, error=error)

    def __iter__(self) -> Iterator[Record]:
        while (record := self.next()) is not None:
            yield record

    def close(self) -> None:
        self.file.close()


def _split_plain(line: str, delimiter: str) -> list[str]:
    """A line's values without quote handling: how a broken line is shown in the report."""
    return line.rstrip("\r\n").split(delimiter)


def estimate_rows(path: Path, has_header: bool) -> int:
    """About how many records follow the header, for the progress bar: the file's line ends,
    counted as bytes (80 MB in a few hundredths of a second; reading the records took two
    seconds). A quoted value holding a line break or a blank line makes it a little high;
    the import sets the exact count when it ends."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            lines += block.count(b"\n")
            last = block[-1:]
    if last not in (b"\n", b"\x00"):  # no line end after the last row (UTF-16 ends in \n\0)
        lines += 1
    return max(lines - (1 if has_header else 0), 0)


def read_preview(
    path: Path, encoding: str, delimiter: str, has_header: bool, limit: int = 10
) -> tuple[list[str], list[Record]]:
    reader = RecordReader(path, encoding, delimiter, has_header)
    try:
        records = []
        for record in reader:
            if record.cells or record.error:
                records.append(record)
            if len(records) >= limit:
                break
        return reader.header, records
    finally:
        reader.close()


class RowRejected(Exception):
    """The row is turned away; the message says why, naming the column."""


@dataclass
class ContactRow:
    line: int
    email: str
    first_name: str = ""
    last_name: str = ""
    status: str = ""
    consent_at: dt.datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    record: Record | None = None  # where it came from: the report's raw text, when skipped
    values: tuple | None = None  # its columns as a new contact (imports.actions.ContactValues)


STATUS_WORDS = {
    Status.SUBSCRIBED: (
        "subscribed",
        "yes",
        "y",
        "true",
        "1",
        "opted in",
        "opt-in",
        "optin",
        "active",
        "confirmed",
        "abonniert",
        "ja",
        "inscrit",
        "oui",
        "suscrito",
        "si",
        "sí",
    ),
    Status.UNSUBSCRIBED: (
        "unsubscribed",
        "no",
        "n",
        "false",
        "0",
        "opted out",
        "opt-out",
        "optout",
        "inactive",
        "abgemeldet",
        "nein",
        "désinscrit",
        "desinscrit",
        "non",
        "desuscrito",
    ),
    Status.BOUNCED: ("bounced", "cleaned", "hard bounce"),
    Status.COMPLAINED: ("complained", "spam", "spam complaint"),
}
STATUS_BY_WORD = {word: status for status, words in STATUS_WORDS.items() for word in words}

DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
SLASHED_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def parse_consent_date(value: str) -> dt.datetime:
    """ISO 8601 (date or date and time), DD.MM.YYYY, or D/M/YYYY when the day is over 12;
    an ambiguous 03/04/2024 is turned away rather than guessed."""
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("/", "-"))
    except ValueError:
        parsed = None
    if parsed is None and (m := DOTTED_DATE.fullmatch(text)):
        parsed = _date(int(m[3]), int(m[2]), int(m[1]), value)
    if parsed is None and (m := SLASHED_DATE.fullmatch(text)):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        if first > 12 >= second:
            parsed = _date(year, second, first, value)
        elif second > 12 >= first:
            parsed = _date(year, first, second, value)
        else:
            raise RowRejected(
                f"consent date {value!r} could be day/month or month/day: write it YYYY-MM-DD."
            )
    if parsed is None:
        raise RowRejected(f"consent date {value!r}: write it YYYY-MM-DD (or with a time).")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.UTC)
    return parsed


def _date(year: int, month: int, day: int, value: str) -> dt.datetime:
    try:
        return dt.datetime(year, month, day)
    except ValueError:
        raise RowRejected(f"consent date {value!r} is not a date.") from None


def other_delimiter(value: str, delimiter: str) -> str | None:
    """The delimiter a value that swallowed a whole row was probably written with."""
    for candidate in DELIMITERS:
        if candidate != delimiter and value.count(candidate) >= 1 and "@" in value:
            return candidate
    return None


def delimiter_hint(value: str, delimiter: str) -> str:
    candidate = other_delimiter(value, delimiter)
    if candidate is None:
        return ""
    shown = "tab" if candidate == "\t" else repr(candidate)
    return f" The file may use {shown} between values: choose it as the delimiter."


Apply = Callable[[ContactRow, str], None]


class RowParser:
    """Turns a record's cells into a ContactRow as the mapping says, or raises RowRejected.

    Each mapped column gets its setter once, here, rather than a dispatch on its target per
    cell: the parser runs for every row of a million-row file."""

    def __init__(
        self,
        mapping: list[dict[str, Any]],
        fields: dict[str, FieldDefinition],
        delimiter: str,
        width: int,
        emails_only: bool = False,
    ):
        self.delimiter = delimiter
        self.width = width
        self.email_index = next(i for i, e in enumerate(mapping) if e["target"] == "email")
        self.dates: dict[str, dt.datetime] = {}
        self.columns: list[tuple[int, Apply]] = []
        if emails_only:  # modes unsubscribe and suppress read the address alone
            return
        for index, entry in enumerate(mapping):
            target = entry["target"]
            if target in ("email", "ignore"):
                continue
            if target == "field":
                definition = fields.get(entry["field"]) or FieldDefinition(
                    key=entry["field"], label=entry["field"], type=entry.get("type", "text")
                )
                self.columns.append((index, field_setter(definition)))
            else:
                self.columns.append((index, getattr(self, f"set_{target}")))

    def parse(self, record: Record) -> ContactRow:
        cells = record.cells or []
        self.check_shape(cells)
        raw_email = cells[self.email_index] if self.email_index < len(cells) else ""
        try:
            email = normalise_email(raw_email)
        except InvalidEmail as e:
            hint = delimiter_hint(raw_email, self.delimiter)
            raise RowRejected(f"email: {e}{hint}") from None
        row = ContactRow(line=record.line, email=email)
        width = len(cells)
        for index, apply in self.columns:
            if index < width and (value := cells[index].strip()):
                apply(row, value)
        return row

    def check_shape(self, cells: list[str]) -> None:
        joined = "".join(cells)
        if "\x00" in joined:
            raise RowRejected("the row holds a NUL character: is the file really text?")
        if not joined.isascii() and SURROGATE.search(joined):
            raise RowRejected(
                "the row holds bytes the chosen encoding cannot read: pick another encoding."
            )
        if self.width and len(cells) < self.width:
            hint = delimiter_hint(cells[0] if cells else "", self.delimiter)
            raise RowRejected(
                f"the row has {len(cells)} values where the header has {self.width}.{hint}"
            )
        if self.width and len(cells) > self.width and any(c.strip() for c in cells[self.width :]):
            raise RowRejected(
                f"the row has {len(cells)} values where the header has {self.width}: "
                "is a value with the delimiter in it missing its quotes?"
            )

    def set_first_name(self, row: ContactRow, value: str) -> None:
        row.first_name = short_name("first_name", value)

    def set_last_name(self, row: ContactRow, value: str) -> None:
        row.last_name = short_name("last_name", value)

    def set_name(self, row: ContactRow, value: str) -> None:
        first, _, last = one_line(value).rpartition(" ")
        row.first_name = short_name("first_name", first or last)
        row.last_name = short_name("last_name", last if first else "")

    def set_status(self, row: ContactRow, value: str) -> None:
        status = STATUS_BY_WORD.get(value.lower())
        if status is None:
            raise RowRejected(f"status {value[:40]!r}: use subscribed or unsubscribed.")
        row.status = status

    def set_consent_at(self, row: ContactRow, value: str) -> None:
        # Files repeat their dates: parse each spelling once (bounded, for odd files).
        parsed = self.dates.get(value)
        if parsed is None:
            parsed = parse_consent_date(value)
            if len(self.dates) < 100_000:
                self.dates[value] = parsed
        row.consent_at = parsed

    def set_tags(self, row: ContactRow, value: str) -> None:
        try:
            row.tags = clean_tag_names(re.split(r"[,;|]", value))
        except ContactError as e:
            raise RowRejected(f"tags: {e.message}") from None


def field_setter(definition: FieldDefinition) -> Apply:
    key = definition.key
    if definition.type == FieldType.TEXT:

        def set_text(row: ContactRow, value: str) -> None:
            if len(value) > TEXT_MAX:
                raise RowRejected(f"{key}: longer than {TEXT_MAX} characters.")
            row.data[key] = value

        return set_text

    def set_typed(row: ContactRow, value: str) -> None:
        try:
            coerced = definition.coerce(value)
        except ValueError as e:
            raise RowRejected(str(e)) from None
        if coerced is not None:
            row.data[key] = coerced

    return set_typed


def short_name(column: str, value: str) -> str:
    value = one_line(value)
    if len(value) > NAME_MAX:
        raise RowRejected(f"{column}: longer than {NAME_MAX} characters.")
    return value


def printable(text: str) -> str:
    """`text` as a page, JSON or PostgreSQL can hold it: NUL spelled out, undecodable bytes
    (lone surrogates) as U+FFFD."""
    return SURROGATE.sub("\ufffd", text.replace("\x00", "\\0"))


def raw_text(record: Record, delimiter: str) -> str:
    """The record as it stood in the file, for the report."""
    return printable(delimiter.join(record.cells or []))[:RAW_MAX]
