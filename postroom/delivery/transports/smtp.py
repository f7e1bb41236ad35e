"""SMTP on smtplib, one connection per batch, reconnecting when the server drops it.

Written on smtplib rather than Django's SMTP backend, which aborts a whole batch when one
recipient is refused and never reconnects. Each message is its own MAIL/RCPT/DATA exchange,
so one refused recipient fails only that recipient, with the server's answer kept.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl

from postroom.delivery.models import Message, Sender
from postroom.delivery.transports.base import (
    DEFERRED,
    FAILED,
    SENT,
    Outcome,
    SenderUnavailable,
    Transport,
)

DEFAULT_PORTS = {Sender.Security.TLS: 465, Sender.Security.STARTTLS: 587, Sender.Security.NONE: 25}
# The relay's id for the message, as Postfix ("queued as 4Xyz"), Exim ("id=1a2b") say it.
QUEUED_AS = re.compile(r"(?:queued as|id=)\s*<?([\w.@-]+)>?", re.IGNORECASE)
# Lost connections and timeouts: try again later, the recipient is not at fault.
CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, TimeoutError)


def answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"[:500]


def classify(code: int, text: bytes | str) -> Outcome:
    response = answer(code, text)
    if 200 <= code < 300:
        match = QUEUED_AS.search(response)
        return Outcome(SENT, response, provider_id=match.group(1) if match else "")
    return Outcome(DEFERRED if 400 <= code < 500 else FAILED, response)


class SmtpTransport(Transport):
    conn: smtplib.SMTP | None = None

    def _new_connection(self) -> tuple[smtplib.SMTP, list[str]]:
        """Connect, greet, secure and log in; the server's answers, for test_connection."""
        s = self.sender
        port = s.port or DEFAULT_PORTS[s.security]
        lines = []
        # Only when TLS is used: building a context costs about 19 ms (bench/send.py).
        context = ssl.create_default_context() if s.security != Sender.Security.NONE else None
        try:
            if s.security == Sender.Security.TLS:
                conn = smtplib.SMTP_SSL(timeout=s.timeout, context=context)
            else:
                conn = smtplib.SMTP(timeout=s.timeout)
            lines.append(answer(*conn.connect(s.host, port)))
            lines.append(answer(*conn.ehlo()))
            if s.security == Sender.Security.STARTTLS:
                lines.append(answer(*conn.starttls(context=context)))
                lines.append(answer(*conn.ehlo()))
            if s.username:
                lines.append(answer(*conn.login(s.username, s.password)))
        except smtplib.SMTPAuthenticationError as e:
            raise SenderUnavailable(f"login refused: {answer(e.smtp_code, e.smtp_error)}") from e
        except smtplib.SMTPResponseException as e:
            said = answer(e.smtp_code, e.smtp_error)
            raise SenderUnavailable(f"{s.host}:{port} said {said}") from e
        except (OSError, smtplib.SMTPException) as e:
            raise SenderUnavailable(f"cannot connect to {s.host}:{port}: {e}") from e
        return conn, lines

    def open(self) -> None:
        self.conn, _ = self._new_connection()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                self.conn.close()
            self.conn = None

    def send(self, message: Message, envelope_from: str, raw: bytes) -> Outcome:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn, _ = self._new_connection()
            try:
                return self._transaction(envelope_from, message.to_email, raw)
            except CONNECTION_ERRORS as e:
                # The server hung up or went quiet: reconnect once, then give up for now.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    return Outcome(DEFERRED, f"connection lost: {e}"[:500])
        raise AssertionError("unreachable")

    def _transaction(self, mail_from: str, rcpt_to: str, raw: bytes) -> Outcome:
        conn = self.conn
        code, text = conn.mail(mail_from)
        if code != 250:
            conn.rset()
            return classify(code, text)
        code, text = conn.rcpt(rcpt_to)
        if code not in (250, 251):
            conn.rset()
            return classify(code, text)
        try:
            code, text = conn.data(raw)
        except smtplib.SMTPDataError as e:  # DATA itself refused
            conn.rset()
            return classify(e.smtp_code, e.smtp_error)
        return classify(code, text)

    def test_connection(self) -> list[str]:
        conn, lines = self._new_connection()
        try:
            lines.append(answer(*conn.noop()))
        finally:
            conn.close()
        return lines
