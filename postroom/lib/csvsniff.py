"""What a delimited text file is, guessed from its first bytes: encoding, delimiter, header.

Each guess is shown to the person importing and can be overridden, so the rules stay simple
and predictable rather than clever:

- encoding: a byte-order mark decides (UTF-8, UTF-16); else bytes that decode as UTF-8 are
  UTF-8; else Windows-1252, which is what Excel writes in Western locales (Latin-1 only when a
  byte has no Windows-1252 meaning). No statistical detector (charset-normalizer and friends):
  among these four candidates the rules above are exact, and a guess that varies with the text
  would make the same file import differently on a different day.
- delimiter: the candidate that splits the sample into the most rows of one, constant width;
  csv.Sniffer was tried on our fixtures and misses ragged files and one-column files.
- header: the first row names columns when it holds no address while later rows do.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass

SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1")
# Bytes Windows-1252 leaves undefined: a file holding them is read as Latin-1.
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@dataclass
class Sniffed:
    encoding: str
    delimiter: str
    has_header: bool


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _looks_like_utf16_without_bom(sample):
        return "utf-16-le" if sample[1:2] == b"\x00" else "utf-16-be"
    try:
        # A sample shorter than the file may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) < SAMPLE_BYTES)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if CP1252_UNDEFINED.intersection(sample):
        return "latin-1"
    return "cp1252"


def _looks_like_utf16_without_bom(sample: bytes) -> bool:
    """Mostly-ASCII text in UTF-16 has a NUL in every other byte."""
    head = sample[:2000]
    if len(head) < 4:
        return False
    return head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4


def decode_sample(sample: bytes, encoding: str) -> str:
    """The sample as text, cut at its last complete line (the read may end mid-line)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text = decoder.decode(sample, final=len(sample) < SAMPLE_BYTES)
    if len(sample) >= SAMPLE_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text


def sample_rows(text: str, delimiter: str, limit: int = 200) -> list[list[str]]:
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= limit:
                break
    except csv.Error:
        pass  # a broken quote in the sample: judge by the rows before it
    return rows


def detect_delimiter(text: str) -> str:
    """The delimiter giving the most rows of one width greater than one (ties: the order of
    DELIMITERS); a comma when nothing splits the rows (one address per line)."""
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        widths = Counter(len(row) for row in sample_rows(text, delimiter))
        width, rows = max(widths.items(), key=lambda item: (item[1], item[0]), default=(0, 0))
        score = (rows, width) if width > 1 else (0, 0)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def looks_like_email(value: str) -> bool:
    value = value.strip()
    at = value.find("@")
    return 0 < at < len(value) - 3 and "." in value[at:] and " " not in value


def detect_header(rows: list[list[str]], known_header: callable | None = None) -> bool:
    """True when the first row names the columns: it has a cell a header would have (as
    `known_header` judges), or it holds no address while later rows do."""
    if not rows:
        return False
    first, rest = rows[0], rows[1:20]
    if any(looks_like_email(cell) for cell in first):
        return False  # an address is data, even beside a cell that reads like a header
    if known_header is not None and any(known_header(cell) for cell in first):
        return True
    return any(looks_like_email(cell) for row in rest for cell in row)


def sniff(sample: bytes, known_header: callable | None = None) -> Sniffed:
    encoding = detect_encoding(sample)
    text = decode_sample(sample, encoding)
    delimiter = detect_delimiter(text)
    has_header = detect_header(sample_rows(text, delimiter, limit=20), known_header)
    return Sniffed(encoding=encoding, delimiter=delimiter, has_header=has_header)
