"""'Check DNS' for a sending domain: its DKIM record, SPF and DMARC, with results a person
can act on. dnspython, with a short timeout: a web request waits for it."""

from __future__ import annotations

import dns.exception
import dns.resolver

from postroom.delivery.models import DkimKey

OK, WARN, ERROR = "ok", "warn", "error"
TIMEOUT = 4.0


def txt_records(name: str) -> list[str] | None:
    """The TXT strings at `name`, each record joined; [] when there are none; None when
    the lookup itself failed (timeout, no answer from the servers)."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = TIMEOUT
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError):
        return None
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def tags(record: str) -> dict[str, str]:
    out = {}
    for part in record.split(";"):
        name, _, value = part.partition("=")
        out[name.strip().lower()] = "".join(value.split())
    return out


def check_dkim(key: DkimKey) -> dict:
    records = txt_records(key.record_name)
    if records is None:
        return result("DKIM", WARN, f"No answer for {key.record_name}: try again in a minute.")
    keys = [tags(r) for r in records if "p" in tags(r)]
    if not keys:
        return result(
            "DKIM",
            ERROR,
            f"No DKIM record at {key.record_name}: publish the TXT record shown below.",
        )
    if any(k.get("p") == key.public_key for k in keys):
        return result("DKIM", OK, f"{key.record_name} publishes this key.")
    return result(
        "DKIM",
        ERROR,
        f"{key.record_name} publishes a different key: replace it with the record shown below.",
    )


def check_spf(domain: str) -> dict:
    records = txt_records(domain)
    if records is None:
        return result("SPF", WARN, f"No answer for {domain}.")
    spf = [r for r in records if r.lower().startswith("v=spf1")]
    if not spf:
        return result(
            "SPF",
            WARN,
            f"{domain} has no SPF record. Add one that names your "
            "relay, e.g. v=spf1 include:… ~all",
        )
    if len(spf) > 1:
        return result(
            "SPF",
            ERROR,
            f"{domain} has {len(spf)} SPF records; receivers then "
            "ignore them all (RFC 7208). Merge them into one.",
        )
    return result("SPF", OK, spf[0])


def check_dmarc(domain: str) -> dict:
    records = txt_records(f"_dmarc.{domain}")
    if records is None:
        return result("DMARC", WARN, f"No answer for _dmarc.{domain}.")
    dmarc = [r for r in records if r.lower().startswith("v=dmarc1")]
    if not dmarc:
        return result(
            "DMARC",
            WARN,
            f"No DMARC record at _dmarc.{domain}. Gmail and Yahoo "
            "ask bulk senders for one, e.g. v=DMARC1; p=none; rua=mailto:…",
        )
    policy = tags(dmarc[0]).get("p", "none")
    return result("DMARC", OK, f"Policy {policy}: {dmarc[0]}")


def result(check: str, status: str, text: str) -> dict:
    return {"check": check, "status": status, "text": text}


def check_domain(key: DkimKey) -> list[dict]:
    return [check_dkim(key), check_spf(key.domain), check_dmarc(key.domain)]
