"""Email address checks shared by contacts, imports and the API."""

from __future__ import annotations

import hashlib
import re

import idna
from email_validator import EmailNotValidError, validate_email


def one_line(text: str) -> str:
    """Collapse all whitespace (CR and LF included) to single spaces: for names that may end
    up in mail headers."""
    return " ".join((text or "").split())


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """The one spelling Postroom stores: trimmed, lower case, IDN domain in Unicode form.

    Raises InvalidEmail with a reason a person can act on. No DNS lookups: this runs per row
    of an import and per API call, and deliverability is the bounce handler's business.
    """
    value = (raw or "").strip()
    if not value:
        raise InvalidEmail("The email address is empty.")
    for separator in (";", ",", "\t", "|"):
        if separator in value:
            raise InvalidEmail(
                f"{value!r} contains {separator!r}: it looks like several values in one field."
            )
    plain = plain_address(value)
    if plain is not None:
        return plain
    try:
        # strict=True enforces the 64-character limit on the local part.
        result = validate_email(value, check_deliverability=False, strict=True)
    except EmailNotValidError as e:
        raise InvalidEmail(str(e)) from None
    return result.normalized.lower()


# The everyday address, checked without email-validator: plain ASCII, letters, digits and
# . _ + - before the @, letter-and-digit labels with inner hyphens after it, an alphabetic
# top-level domain. A strict subset of what email-validator accepts, normalised the same way
# (test_emails.py holds the two together); everything else goes to the validator, which costs
# about 28 us an address against 1 us here: the difference between a million-row import
# spending half a minute or a second on syntax.
PLAIN_ADDRESS = re.compile(
    r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
# Top-level domains email-validator refuses (its SPECIAL_USE_DOMAIN_NAMES); they go to it.
SPECIAL_USE_TLDS = ("arpa", "invalid", "local", "localhost", "onion", "test")


def plain_address(value: str) -> str | None:
    """`value` lower-cased if it is a plain address that needs no closer look, else None."""
    if not value.isascii() or len(value) > 254:
        return None
    address = value.lower()
    if PLAIN_ADDRESS.fullmatch(address) is None:
        return None
    local, _, domain = address.rpartition("@")
    # Punycode and other "ab--" labels, and special-use domains: the validator decides.
    if len(local) > 64 or "--" in domain or domain.rpartition(".")[2] in SPECIAL_USE_TLDS:
        return None
    if len(domain) > 253:
        return None
    return address


def normalise_sender_email(raw: str) -> str:
    """A From or Reply-To address: normalised, and ASCII before the @, which every relay and
    mailbox can take (an internationalised domain is fine: it goes out in ASCII)."""
    address = normalise_email(raw)
    if not address.rpartition("@")[0].isascii():
        raise InvalidEmail(
            f"{address!r}: use an address with plain ASCII before the @ to send from; "
            "most relays cannot send from others."
        )
    return address


def lookup_email(raw: str) -> str | None:
    """`raw` as Postroom stores addresses, to look one up; None when it cannot be one."""
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return None


def hash_email(address: str) -> str:
    """SHA-256 (hex) of an address as Postroom stores it (normalise_email): how the suppression
    list still knows an address after the contact who had it was erased. Not a secret: a
    known address can be hashed and compared, which is what the list needs, and it means
    the hash is shown to no one."""
    return hashlib.sha256(address.encode()).hexdigest()


def is_valid_email(raw: str) -> bool:
    try:
        normalise_email(raw)
    except InvalidEmail:
        return False
    return True


def ascii_domain(address: str) -> str:
    """The address with its domain in ASCII (IDNA), as envelopes and headers carry it:
    ann@bücher.de -> ann@xn--bcher-kva.de. The local part is left as it is: one that is not
    ASCII needs SMTPUTF8 (RFC 6531) all the way."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidEmail(f"{domain!r} is not a valid domain name: {e}") from None
    return f"{local}@{domain}"
