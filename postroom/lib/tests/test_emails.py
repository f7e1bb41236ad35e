from __future__ import annotations

import pytest

from postroom.lib.emails import InvalidEmail, is_valid_email, normalise_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ann@Example.COM ", "ann@example.com"),
        ("x@xn--bcher-kva.de", "x@bücher.de"),
        ("x@BÜCHER.de", "x@bücher.de"),
        ("first.last+tag@example.co.uk", "first.last+tag@example.co.uk"),
    ],
)
def test_it_normalises(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a@b.com;Ann;Lee", "several values in one field"),
        ("a@b.com,Ann", "several values in one field"),
        ("a@b.com\tAnn", "several values in one field"),
        ("", "empty"),
        ("no-at-sign", "@-sign"),
        ("a@localhost", "period"),
        ("a" * 65 + "@example.com", "too long"),
    ],
)
def test_it_rejects_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidEmail, match=reason):
        normalise_email(raw)
    assert not is_valid_email(raw)
