"""A strict, scripted SMTP relay on loopback for the SMTP client's tests (a thread per
connection, plain sockets), where aiosmtpd is too lenient to tell a pipelining client from
a lock-step one.

- With `strict_pipelining` it answers a MAIL only once the RCPT and DATA behind it have
  arrived: a client that waits for each reply waits forever (its timeout fails the test).
- It refuses a MAIL inside an open transaction (503), so a client that forgets RSET after a
  refused DATA is caught.
- Recipients script the answers: reject@ (RCPT 550), defer@ (RCPT 451), baddata@ (DATA 554),
  toobig@ (end of data 552), drop@ (hangs up after the body), dropfirst@ (the same, the
  first time only), bye@ (421 after the body).
- `max_connections` answers 421 to the greeting of connections beyond it.
- `idle_close` says 421 and hangs up on a client that is silent that many seconds.
- `greeting`, `esmtp=False` (EHLO refused, HELO taken) and `refuse_rset` script the rest.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    mail_params: str
    rcpt: str
    data: bytes  # as sent, dots undone


@dataclass
class Relay:
    extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME")
    strict_pipelining: bool = True
    max_connections: int = 100
    idle_close: float | None = None
    greeting: str = "220 relay.test ESMTP"
    esmtp: bool = True  # False: EHLO is refused, HELO works (an old relay)
    refuse_rset: bool = False
    slow_end_of_data: float = 0.0  # seconds before answering the final dot
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every command line, in order
    connections: int = 0  # accepted and greeted with 220

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open_connections = 0
        self.stopping = False
        self.dropped: set[str] = set()  # dropfirst@ recipients already hung up on once

    def __enter__(self) -> Relay:
        threading.Thread(target=self.accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping = True
        self.listener.close()

    def accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open_connections += 1
            refused = self.open_connections > self.max_connections
            if not refused:
                self.connections += 1
        try:
            if refused:
                conn.sendall(b"421 4.7.0 Too many connections from your address\r\n")
                return
            conn.settimeout(self.idle_close or 30)
            Session(self, conn).run()
        except (OSError, ConnectionError):
            pass
        finally:
            with self.lock:
                self.open_connections -= 1
            conn.close()


class Hangup(Exception):
    pass


class Session:
    def __init__(self, relay: Relay, conn: socket.socket):
        self.relay = relay
        self.conn = conn
        self.file = conn.makefile("rb")
        self.mail: tuple[str, str] | None = None
        self.rcpt: str | None = None

    def say(self, line: str) -> None:
        self.conn.sendall(line.encode() + b"\r\n")

    def line(self) -> str:
        try:
            raw = self.file.readline()
        except TimeoutError:
            self.say("421 4.4.2 relay.test Error: timeout exceeded")
            raise Hangup from None
        if not raw:
            raise Hangup
        text = raw.decode("utf-8").rstrip("\r\n")
        with self.relay.lock:
            self.relay.commands.append(text)
        return text

    def run(self) -> None:
        self.say(self.relay.greeting)
        try:
            pending: list[str] = []
            while True:
                command = pending.pop(0) if pending else self.line()
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "MAIL" and self.relay.strict_pipelining:
                    # Answer nothing until the rest of the group is here.
                    pending = [self.line(), self.line()]
                if not self.handle(verb, command):
                    return
        except Hangup:
            return

    def handle(self, verb: str, command: str) -> bool:
        if verb == "EHLO" and not self.relay.esmtp:
            self.say("502 5.5.2 Error: command not recognized")
        elif verb == "HELO":
            self.say("250 relay.test")
        elif verb == "EHLO":
            lines = ["relay.test", *self.relay.extensions]
            for i, text in enumerate(lines):
                self.say(f"250{'-' if i < len(lines) - 1 else ' '}{text}")
        elif verb == "MAIL":
            if self.mail is not None:
                self.say("503 5.5.1 Error: nested MAIL command")
            else:
                address, _, params = command[len("MAIL FROM:") :].partition(" ")
                self.mail = (address.strip("<>"), params)
                self.say("250 2.1.0 Ok")
        elif verb == "RCPT":
            self.rcpt_to(command[len("RCPT TO:") :].strip("<>"))
        elif verb == "DATA":
            return self.data()
        elif verb == "RSET" and self.relay.refuse_rset:
            self.say("502 5.5.2 Error: command not recognized")
        elif verb == "RSET":
            self.mail = self.rcpt = None
            self.say("250 2.0.0 Ok")
        elif verb == "NOOP":
            self.say("250 2.0.0 Ok")
        elif verb == "QUIT":
            self.say("221 2.0.0 Bye")
            return False
        else:
            self.say("502 5.5.2 Error: command not recognized")
        return True

    def rcpt_to(self, address: str) -> None:
        local = address.split("@")[0]
        if self.mail is None:
            self.say("503 5.5.1 Error: need MAIL command")
        elif local == "reject":
            self.say("550 5.1.1 <reject@example.org>: Recipient address rejected")
        elif local == "defer":
            self.say("451 4.3.0 Try again later")
        else:
            self.rcpt = address
            self.say("250 2.1.5 Ok")

    def data(self) -> bool:
        if self.rcpt is None:
            # The transaction stays open when MAIL was taken: the client must RSET.
            self.say("554 5.5.1 Error: no valid recipients")
            return True
        if self.rcpt.startswith("baddata@"):
            self.say("554 5.7.1 Not today")
            return True  # the transaction stays open: the client must RSET
        self.say("354 End data with <CR><LF>.<CR><LF>")
        chunks = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise Hangup
            if raw == b".\r\n":
                break
            chunks.append(raw[1:] if raw.startswith(b".") else raw)
        (mail_from, params), rcpt = self.mail, self.rcpt
        self.mail = self.rcpt = None
        local = rcpt.split("@")[0]
        time.sleep(self.relay.slow_end_of_data)
        if local == "drop":
            raise Hangup
        if local == "dropfirst" and rcpt not in self.relay.dropped:
            self.relay.dropped.add(rcpt)
            raise Hangup
        if local == "bye":
            self.say("421 4.3.2 Shutting down")
            raise Hangup
        if local == "toobig":
            self.say("552 5.3.4 Message size exceeds fixed limit")
            return True
        with self.relay.lock:
            self.relay.received.append(Received(mail_from, params, rcpt, b"".join(chunks)))
            n = len(self.relay.received)
        self.say(f"250 2.0.0 Ok: queued as R{n}")
        return True
