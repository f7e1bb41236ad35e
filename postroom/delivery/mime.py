"""Build the message a relay receives, with the standard library's email package.

Every header value passes through one_line(): user text never reaches a header with a CR or LF.

build_mime() builds one message from scratch: the reference. The send loop uses MimeTemplate
instead: the stdlib builds an Email's message once (bodies, boundary, shared headers), and each
recipient only gets its own To, Date and Message-ID, folded and encoded by the same stdlib
policy (tests/test_mime.py holds the two to the same output).
"""

from __future__ import annotations

import re
from base64 import b64decode, b64encode
from binascii import b2a_qp
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formataddr, formatdate

from postroom.content.render import compile_prepared
from postroom.delivery.models import Email, Message
from postroom.lib.emails import ascii_domain, one_line
from postroom.tracking.links import unsubscribe_mailto, unsubscribe_url

# RFC 5322 field names: printable ASCII without colon; we allow the usual letters, digits, "-".
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,75}$")

# Placeholders for the per-recipient headers while the stdlib builds the shared message.
SLOT_TO = "slot-to@postroom.invalid"
SLOT_DATE = "Thu, 01 Jan 1970 00:00:00 -0000"
SLOT_ID = "<slot-id@postroom.invalid>"
SLOT_SUBJECT = "slot-subject-postroom"
SLOT_TEXT = "slot-text-postroom"
SLOT_HTML = "slot-html-postroom"
SLOT_UNSUBSCRIBE = "https://slot.postroom.invalid/unsubscribe"
# Values the stdlib writes out unchanged (a dot-atom address, a plain id, short enough never
# to be folded): these skip its header parser, anything else goes through it.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
ADDRESS = rf"{ATEXT}(?:\.{ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
PLAIN_TO = re.compile(rf"{ADDRESS}|[A-Za-z0-9-]+(?: [A-Za-z0-9-]+)* <{ADDRESS}>")
PLAIN_ID = re.compile(r"<[A-Za-z0-9.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
PLAIN_MAX = 60


def is_marketing(email: Email) -> bool:
    """Campaigns and automations: unsubscribe headers and footer (RFC 2369, RFC 8058)."""
    return email.kind in (Email.Kind.CAMPAIGN, Email.Kind.AUTOMATION)


def _message(
    email: Email,
    to: str,
    date: str,
    message_id: str,
    unsubscribe: list[str],
    slots: bool = False,
):
    """The stdlib's message; with `slots`, slot markers where each recipient's own subject
    and bodies go (a personalised Email), its parts quoted-printable."""
    msg = EmailMessage()
    msg["From"] = formataddr((one_line(email.from_name), ascii_domain(email.from_email)))
    msg["To"] = to
    msg["Subject"] = SLOT_SUBJECT if slots else one_line(email.subject)
    msg["Date"] = date
    msg["Message-ID"] = message_id
    if email.reply_to:
        msg["Reply-To"] = ascii_domain(one_line(email.reply_to))
    if is_marketing(email):
        # One click in the mail client unsubscribes (a POST to the URL, RFC 8058).
        msg["List-Unsubscribe"] = ", ".join(unsubscribe)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if email.kind == Email.Kind.CAMPAIGN:
        msg["Precedence"] = "bulk"
    if email.kind == Email.Kind.AUTOMATION:
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    for name, value in (email.headers or {}).items():
        if HEADER_NAME.match(name):
            msg[name] = one_line(str(value))
    if slots:
        msg.set_content(SLOT_TEXT + "\n", cte="quoted-printable")
        if email.html:
            msg.add_alternative(SLOT_HTML + "\n", subtype="html", cte="quoted-printable")
    else:
        msg.set_content(email.text or "")
        if email.html:
            msg.add_alternative(email.html, subtype="html")
    # Attachments make it multipart/mixed; base64 never holds a slot marker's "-".
    for attachment in email.attachments or []:
        maintype, _, subtype = attachment["content_type"].partition("/")
        msg.add_attachment(
            b64decode(attachment["content"]),
            maintype=maintype,
            subtype=subtype,
            filename=one_line(attachment["filename"]),
        )
    return msg


def to_header(message: Message) -> str:
    address = ascii_domain(message.to_email)
    if not address.isascii():  # formataddr() takes ASCII only
        local, _, domain = address.rpartition("@")
        return str(Address(one_line(message.to_name), username=local, domain=domain))
    return formataddr((one_line(message.to_name), address))


def needs_smtputf8(address: str) -> bool:
    """A local part that is not ASCII (jörg@example.com): no 7-bit header or envelope can
    carry it, only SMTPUTF8 (RFC 6531) with UTF-8 headers (RFC 6532)."""
    return not ascii_domain(address).isascii()


def id_domain(email: Email) -> str:
    """The domain of the From address in ASCII, for Message-IDs."""
    return ascii_domain(email.from_email).rsplit("@", 1)[-1]


def build_mime(email: Email, message: Message) -> bytes:
    msg = _message(
        email,
        to_header(message),
        formatdate(localtime=False),
        message.message_id(id_domain(email)),
        unsubscribe_values(message.code),
    )
    return msg.as_bytes(policy=SMTP)


def header_line(name: str, value: str, plain: re.Pattern, utf8: bool = False) -> bytes:
    """`Name: value` CRLF as the stdlib's SMTP policy writes it (folded, RFC 2047 encoded);
    with `utf8`, as its SMTPUTF8 policy does (UTF-8 as it is)."""
    if len(value) <= PLAIN_MAX and plain.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    # What msg[name] = value and as_bytes(policy=SMTP) do, CR/LF check included.
    policy = SMTPUTF8 if utf8 else SMTP
    return policy.fold_binary(*policy.header_store_parse(name, value))


def subject_line(subject: str) -> bytes:
    """`Subject: …` CRLF. ASCII is folded at spaces; anything else is RFC 2047 base64
    encoded-words, cut between characters. Written here because the stdlib's header
    machinery costs ~0.4 ms for a non-ASCII value, per recipient (bench/render.py)."""
    subject = one_line(subject)
    # ASCII as it is, unless it holds what a reader would decode as an encoded-word, a
    # control character, or a word too long to fold.
    plain = subject.isascii() and subject.isprintable() and "=?" not in subject
    if plain and all(len(word) <= 900 for word in subject.split(" ")):
        lines, line = [], "Subject:"
        for word in subject.split(" "):
            if len(line) + 1 + len(word) > 78 and line != "Subject:":
                lines.append(line)
                line = ""
            line += " " + word
        return ("\r\n".join([*lines, line]) + "\r\n").encode("ascii")
    words, chunk = [], b""
    for char in subject:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 39:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    encoded_words = [f"=?utf-8?b?{b64encode(w).decode('ascii')}?=" for w in words]
    return ("Subject: " + "\r\n ".join(encoded_words) + "\r\n").encode("ascii")


def unsubscribe_values(code, url: str = "") -> list[str]:
    """The List-Unsubscribe values of a message: its page (`url`, when made already) and,
    with an inbound domain, its mailto."""
    mailto = unsubscribe_mailto(code)
    return [f"<{url or unsubscribe_url(code)}>"] + ([f"<{mailto}>"] if mailto else [])


def unsubscribe_line(values: list[str]) -> bytes:
    """`List-Unsubscribe: <url>, <mailto:…>`, each on a line of its own when they do not
    fit on the first (as the stdlib folds it: a URL cannot be broken)."""
    line = f"List-Unsubscribe: {', '.join(values)}\r\n"
    if len(line) > 80:
        line = "List-Unsubscribe:\r\n " + ",\r\n ".join(values) + "\r\n"
    return line.encode("ascii")


def qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends, by binascii's C encoder (the stdlib's quoprimime
    is pure Python: milliseconds for a newsletter). Printable ASCII on one line (a tracked
    link, most values) only needs its "=" escaped and soft breaks: done here, 4x faster."""
    if text.isascii() and text.isprintable() and not text.endswith(" "):
        return qp_printable(text.replace("=", "=3D")).encode("ascii")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    # binascii ends its soft line breaks as the text ends its lines; a text with none of
    # its own gets "=\n", which SMTP wants as "=\r\n".
    encoded = b2a_qp(text.encode("utf-8"), istext=True).replace(b"=\n", b"=\r\n")
    lines = encoded.split(b"\r\n")
    if any(len(line) > 76 for line in lines):
        # binascii lets a line reach 77 when it encodes a trailing space (=20) last.
        encoded = b"\r\n".join(short_lines(line) for line in lines)
    return encoded


def short_lines(line: bytes) -> bytes:
    """One encoded line cut with soft breaks into lines of at most 76, between escapes."""
    out = []
    while len(line) > 76:
        cut = 75
        if line[cut - 1 : cut] == b"=":
            cut -= 1
        elif line[cut - 2 : cut - 1] == b"=":
            cut -= 2
        out.append(line[:cut] + b"=")
        line = line[cut:]
    return b"\r\n".join([*out, line])


def soft_end(piece: bytes) -> bytes:
    """An encoded chunk that does not end a line gets a soft line break, so that the next
    chunk starts a line of its own; its last line is cut first if the "=" would make it 77."""
    if piece.endswith(b"\r\n"):
        return piece
    last = piece.rfind(b"\r\n") + 2 if b"\r\n" in piece else 0
    if len(piece) - last >= 76:
        cut = len(piece) - 3  # before the last three bytes: never inside an =XX escape
        if piece[cut - 1 : cut] == b"=":
            cut -= 1
        elif piece[cut - 2 : cut - 1] == b"=":
            cut -= 2
        piece = piece[:cut] + b"=\r\n" + piece[cut:]
    return piece + b"=\r\n"


def qp_printable(text: str) -> str:
    """Cut into lines of at most 75 (76 with the soft break that follows), never inside an
    =XX escape."""
    if len(text) <= 75:
        return text
    lines, start = [], 0
    while len(text) - start > 75:
        cut = start + 75
        for back in (1, 2):  # keep "=3D" whole
            if text[cut - back] == "=":
                cut -= back
                break
        lines.append(text[start:cut])
        start = cut
    lines.append(text[start:])
    return "=\r\n".join(lines)


class QpBody:
    """A body part, quoted-printable, from the chunks a template rendered it in.

    Each chunk is encoded on its own and, unless it ends a line, followed by a soft line
    break (RFC 2045 allows one anywhere), so a chunk's encoding does not depend on what
    came before it. The template's constant text comes back as the same string objects
    for every recipient: it is encoded once and remembered; only the values in between
    (names, custom fields) are encoded per recipient (bench/render.py: ~4x faster).
    """

    def __init__(self) -> None:
        self.encoded: dict[str, bytes] = {}
        self.learning = True

    def __call__(self, chunks: list[str], recipient: dict[str, bytes] | None = None) -> bytes:
        """`recipient`: this recipient's values encoded so far, shared by the HTML and the
        text part (their links, names: the same values twice)."""
        out = []
        seen = {} if recipient is None else recipient
        for chunk in chunks:
            if not chunk:
                continue
            piece = self.encoded.get(chunk) or seen.get(chunk)
            if piece is None:
                piece = soft_end(qp(str(chunk)))  # str(): Markup's own replace() would escape
                if self.learning:
                    self.encoded[chunk] = piece
                else:
                    seen[chunk] = piece
            out.append(piece)
        if not out or not out[-1].endswith(b"\r\n"):
            out.append(b"\r\n")
        # The first recipient's render holds every constant of the template; later values
        # are this recipient's own, and kept no longer than their render.
        self.learning = False
        return b"".join(out)


class MimeTemplate:
    """One Email's message, built once by the stdlib; render() fills in one recipient's
    parts: To, Date and Message-ID always, and for a personalised Email (content app) the
    subject and the bodies, rendered in the sandbox with the recipient's data."""

    def __init__(self, email: Email):
        self.email = email
        self.domain = id_domain(email)
        self.personal = None
        if email.personalised:
            self.personal = compile_prepared(email.subject, email.html, email.text, email.links)
        self.marketing = is_marketing(email)
        raw = _message(
            email, SLOT_TO, SLOT_DATE, SLOT_ID, [f"<{SLOT_UNSUBSCRIBE}>"], slots=bool(self.personal)
        )
        raw = raw.as_bytes(policy=SMTP)
        end = raw.index(b"\r\n\r\n") + 2
        slots = [f"To: {SLOT_TO}\r\n", f"Date: {SLOT_DATE}\r\n", f"Message-ID: {SLOT_ID}\r\n"]
        if self.personal:
            slots.insert(1, f"Subject: {SLOT_SUBJECT}\r\n")
        if self.marketing:
            slots.append(f"List-Unsubscribe: <{SLOT_UNSUBSCRIBE}>\r\n")
        head_parts = split_at(raw[:end], slots)
        body_slots = [SLOT_TEXT, SLOT_HTML][: 1 + bool(email.html)] if self.personal else []
        body_parts = split_at(raw[end:], [f"{slot}\r\n" for slot in body_slots])
        # The body's first part follows the head's last: one list, values go in between.
        self.parts = [*head_parts[:-1], head_parts[-1] + body_parts[0], *body_parts[1:]]
        self.last_subject: tuple[str, bytes] = ("", b"")
        self.text_body, self.html_body = QpBody(), QpBody()

    def render(self, message: Message, context: dict | None = None) -> bytes:
        to = header_line("To", to_header(message), PLAIN_TO, utf8=needs_smtputf8(message.to_email))
        values = [
            to,
            f"Date: {formatdate(localtime=False)}\r\n".encode("ascii"),
            header_line("Message-ID", message.message_id(self.domain), PLAIN_ID),
        ]
        if self.marketing:
            # The one the footer links to, when the context has it already.
            # The page the footer links to, when the context has made it already.
            url = (context or {}).get("unsubscribe_url", "")
            values.append(unsubscribe_line(unsubscribe_values(message.code, url)))
        if self.personal:
            subject, html, text = self.personal.render_chunks(context or {})
            values.insert(1, self.subject(subject))
            recipient: dict[str, bytes] = {}
            values.append(self.text_body(text, recipient))
            if self.email.html:
                values.append(self.html_body(html, recipient))
        out = [self.parts[0]]
        for value, part in zip(values, self.parts[1:], strict=True):
            out += (value, part)
        return b"".join(out)

    def subject(self, subject: str) -> bytes:
        # Most campaigns give every recipient the same subject: encode it once.
        if self.last_subject[0] != subject:
            self.last_subject = (subject, subject_line(subject))
        return self.last_subject[1]


def split_at(raw: bytes, slots: list[str]) -> list[bytes]:
    """`raw` cut at each slot line, in order: len(slots) + 1 pieces."""
    parts = []
    for slot in slots:
        before, found, raw = raw.partition(slot.encode("ascii"))
        if not found:
            raise AssertionError(f"the template lost its slot {slot!r}")
        parts.append(before)
    return [*parts, raw]


# This process's templates, by Email code (an Email never changes once its messages are
# queued): compiled once, and the constant parts of their bodies encoded once. A few MB.
TEMPLATES: dict[str, MimeTemplate] = {}


def template_for(email: Email) -> MimeTemplate:
    key = email.code.hex
    template = TEMPLATES.get(key)
    if template is None:
        if len(TEMPLATES) >= 64:
            TEMPLATES.clear()
        template = TEMPLATES[key] = MimeTemplate(email)
    return template
