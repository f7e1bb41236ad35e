"""The base of every API request schema (bodies and queries): text that can be stored.

PostgreSQL's text and jsonb refuse NUL (U+0000), and UTF-8 has no lone surrogates (U+D800 to
U+DFFF), which JSON can still send ("\\ud800"). Met in a database write or an encoder deep
inside a send, either is a 500; met here, on every field of every request schema, it is a 422
that names the field.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ninja import Schema
from pydantic import field_validator
from pydantic_core import PydanticCustomError

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """The first character in `value` that text cannot hold (or a number JSON cannot: NaN,
    Infinity), and where it is:
    ("plan", "U+0000") for {"plan": "a\\x00"}. Strings are searched, and lists and objects of
    them (keys too), however deep, without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            found = UNSTORABLE.search(item)
            if found:
                return path, f"U+{ord(found.group()):04X}"
        elif isinstance(item, float) and not math.isfinite(item):
            return path, repr(item)  # JSON has no NaN or Infinity, though Python reads them
        elif isinstance(item, dict | list | tuple):
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in reversed(list(children)):
                stack.append((f"{path}.{key}" if path else str(key), child))
                stack.append((path, key))  # popped first: a key is checked before its value
    return None


class InputSchema(Schema):
    """Base every request body and query schema on this: each field is searched before it is
    parsed, so the error names the field as sent (`data`, with `plan: U+0000` in its message)."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        found = find_unstorable(value)
        if found is not None:
            where, char = found
            raise PydanticCustomError(
                "unstorable_text",
                "{message}",
                {"message": f"{where + ': ' if where else ''}{char} is not allowed here."},
            )
        return value
