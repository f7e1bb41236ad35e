from __future__ import annotations

import pytest

from postroom.lib.emails import InvalidEmail, hash_email, is_valid_email, normalise_email


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


# --- the plain-address fast path ---------------------------------------------------------------

from email_validator import EmailNotValidError, validate_email  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from postroom.lib.emails import plain_address  # noqa: E402


def validator_says(raw: str) -> str | None:
    """The reference: what email-validator makes of `raw` (as normalise_email stores it)."""
    try:
        return validate_email(raw, check_deliverability=False, strict=True).normalized.lower()
    except EmailNotValidError:
        return None


@pytest.mark.parametrize(
    "raw",
    [
        "Ann.Lee+news@Example.COM",
        "a_b-c@sub.example.org",
        "x@xn--bcher-kva.de",  # punycode: left to the validator
        "a@b.test",  # special-use: left to the validator
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example.c0m",
        "a@example",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 63 + ".com",
        "a@" + "b" * 64 + ".com",
        "a@" + ("b" * 60 + ".") * 5 + "com",
        "ann@ab--cd.com",
    ],
)
def test_the_fast_path_agrees_with_the_validator(raw: str) -> None:
    fast = plain_address(raw)
    if fast is not None:
        assert fast == validator_says(raw)
    assert normalise_email_or_none(raw) == validator_says(raw)


def normalise_email_or_none(raw: str) -> str | None:
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return None


ADDRESS_ALPHABET = "aAbz09_+-.@-" + "xn"


@settings(max_examples=3000, deadline=None, database=None)
@given(
    st.text(ADDRESS_ALPHABET, min_size=1, max_size=20),
    st.lists(st.text("abZ09-", min_size=1, max_size=64), min_size=1, max_size=4),
    st.sampled_from(["com", "de", "test", "local", "c0", "x", "museum", "org-"]),
)
def test_the_fast_path_never_accepts_what_the_validator_refuses(
    local: str, labels: list[str], tld: str
) -> None:
    raw = f"{local}@{'.'.join([*labels, tld])}"
    fast = plain_address(raw)
    if fast is not None:
        assert fast == validator_says(raw), raw


def test_the_hash_of_an_address_is_its_sha256_in_hex() -> None:
    from hashlib import sha256

    assert hash_email("ann@example.com") == sha256(b"ann@example.com").hexdigest()
    assert hash_email("x@bücher.de") == sha256("x@bücher.de".encode()).hexdigest()
    assert hash_email(normalise_email(" Ann@Example.COM ")) == hash_email("ann@example.com")
