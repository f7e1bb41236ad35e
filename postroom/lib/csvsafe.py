"""CSV cells that spreadsheets will not run: a cell starting with = + - @ (or a tab or carriage
return, which some programs strip first) is prefixed with a quote, as OWASP advises."""

from __future__ import annotations

import csv

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value


class _Echo:
    """A file that hands back what is written to it."""

    def write(self, value: str) -> str:
        return value


def line_writer():
    """A csv.writer whose writerow returns the formatted line instead of writing it: for
    responses and files streamed a row at a time (exports, reports)."""
    return csv.writer(_Echo())
