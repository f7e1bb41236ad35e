"""DKIM signing (RFC 6376, relaxed/relaxed), with RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

Written on `cryptography` (OpenSSL) rather than dkimpy, which signs RSA in pure Python at
about 7 ms a message: here RSA-2048 costs ~0.2 ms and Ed25519 ~0.02 ms (bench/render.py).
dkimpy stays the reference: the tests verify our signatures with it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

RSA, ED25519 = "rsa", "ed25519"
# Signed when present. List-Unsubscribe-Post must be signed for mailbox providers to offer
# one-click unsubscribe (RFC 8058, section 4).
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "precedence",
    "auto-submitted",
)
WSP = re.compile(rb"[ \t]+")
# Spaces runs, once tabs are spaces: a pattern with a literal start, which the regex engine
# finds fast (matching every lone space instead cost ~1 ms on a 45 KB message).
SPACES = re.compile(rb"  +")


def generate(algorithm: str) -> tuple[bytes, str]:
    """A new key: (private key PEM, the DNS record's p= value)."""
    if algorithm == ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, base64.b64encode(public).decode("ascii")


def dns_record(algorithm: str, public: str) -> str:
    return f"v=DKIM1; k={'ed25519' if algorithm == ED25519 else 'rsa'}; p={public}"


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: spaces runs to one space, none at line ends, no trailing empty lines."""
    body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = SPACES.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def relaxed_header(name: str, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, space runs to one, trimmed."""
    value = WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.lower().encode("ascii") + b":" + value


def split_headers(head: bytes) -> list[tuple[str, bytes]]:
    """(name, raw value) of each header, continuation lines kept in the value."""
    headers: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            headers.append((name.decode("ascii", "replace").strip(), value))
    return headers


@dataclass
class Signer:
    domain: str
    selector: str
    algorithm: str
    private_pem: bytes

    def __post_init__(self) -> None:
        self.key = serialization.load_pem_private_key(self.private_pem, password=None)

    def sign(self, raw: bytes, now: int | None = None) -> bytes:
        """`raw` with a DKIM-Signature header in front."""
        end = raw.index(b"\r\n\r\n")
        head, body = raw[: end + 2], raw[end + 4 :]
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        present = {}
        for name, value in split_headers(head):
            # RFC 6376 5.4.2: with a header given twice, the last one is signed.
            present[name.lower()] = (name, value)
        signed = [h for h in SIGNED_HEADERS if h in present]
        algo = "ed25519-sha256" if self.algorithm == ED25519 else "rsa-sha256"
        tags = [
            "v=1",
            f"a={algo}",
            "c=relaxed/relaxed",
            f"d={self.domain}",
            f"s={self.selector}",
            f"t={now or int(time.time())}",
            "h=" + ":".join(signed),
            f"bh={body_hash}",
            "b=",
        ]
        # The header is signed as it will be written, folded, with b= empty (RFC 6376 3.7).
        value = " " + fold_tags(tags)
        data = b"".join(relaxed_header(h, present[h][1]) + b"\r\n" for h in signed)
        data += relaxed_header("dkim-signature", value.encode("ascii"))
        signature = base64.b64encode(self.signature(data)).decode("ascii")
        header = "DKIM-Signature:" + value + fold_base64(signature, len(value.rsplit("\n", 1)[-1]))
        return header.encode("ascii") + b"\r\n" + raw

    def signature(self, data: bytes) -> bytes:
        if self.algorithm == ED25519:
            return self.key.sign(hashlib.sha256(data).digest())
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def fold_tags(tags: list[str], width: int = 76) -> str:
    """Tags joined by "; ", a line break before a tag that would not fit. A long h= breaks
    before its colons, where folding whitespace is allowed; no other tag is broken."""
    lines, line = [], "DKIM-Signature: "
    for i, tag in enumerate(tags):
        pieces = tag.split(":") if tag.startswith("h=") else [tag]
        for j, piece in enumerate(pieces):
            text = (
                (":" if j else "")
                + piece
                + ("; " if j == len(pieces) - 1 and i < len(tags) - 1 else "")
            )
            if len(line) + len(text.rstrip()) > width and line.strip():
                lines.append(line.rstrip())
                line = "\t"
            line += text
    lines.append(line)
    return "\r\n".join(lines)[len("DKIM-Signature: ") :]


def fold_base64(value: str, used: int, width: int = 76) -> str:
    """The signature after "b=" (`used` characters already on its line): verifiers drop it
    whole, breaks and all, so it may be cut anywhere."""
    first = width - used
    chunks = [value[:first]] if first > 0 else [""]
    chunks += [value[i : i + 72] for i in range(max(first, 0), len(value), 72)]
    return "\r\n\t".join(chunks)
