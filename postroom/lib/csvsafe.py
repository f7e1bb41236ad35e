"""CSV cells that spreadsheets will not run: a cell starting with = + - @ (or a tab or carriage
return, which some programs strip first) is prefixed with a quote, as OWASP advises."""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value
