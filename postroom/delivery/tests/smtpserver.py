"""A real SMTP server on loopback for the delivery tests (aiosmtpd, in a thread).

Recipients script the answer: defer@ -> 451, reject@ -> 550, hangup@ -> connection dropped
during DATA. Everything accepted is kept in `received` as (rcpt, raw bytes).
"""

from __future__ import annotations

import socket
from contextlib import closing

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedHandler:
    def __init__(self, pipelining: bool) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.sessions = 0
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads pipelined commands correctly, but never says so
            return [responses[0], "250-PIPELINING", *responses[1:]]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "defer":
            return "451 4.3.0 Try again later"
        if local == "reject":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("hangup@") for r in envelope.rcpt_tos):
            server.transport.close()
            return "421 closing"
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, envelope.original_content))
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"right"
    # handled=False: let aiosmtpd answer "535 Authentication credentials invalid" itself.
    return AuthResult(success=ok, handled=False)


class SmtpServer:
    def __init__(self, require_auth: bool = False, pipelining: bool = True) -> None:
        self.handler = ScriptedHandler(pipelining)
        self.port = free_port()
        kwargs = {}
        if require_auth:
            kwargs = {
                "authenticator": authenticator,
                "auth_require_tls": False,
                "auth_required": True,
            }
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[tuple[str, bytes]]:
        return self.handler.received
