"""A real SMTP server on loopback for tests (aiosmtpd in a thread), with injectable faults."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    data: bytes

    def parsed(self) -> EmailMessage:
        """Parsed with the standard library's strict policy: any defect raises."""
        msg = message_from_bytes(self.data, policy=policy.strict)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Handler:
    """Collects messages. ``refuse`` maps an address to a reply for RCPT; ``data_reply`` makes
    DATA answer with that reply; ``drop_after`` drops the connection at the next message once N
    have been accepted; ``rcpt_delay``/``data_delay`` make the server slow (seconds)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    drop_after: int | None = None
    rcpt_delay: float = 0.0
    data_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        with self.lock:
            if self.drop_after is not None and len(self.received) >= self.drop_after:
                self.drop_after = None
                server.transport.close()  # the connection drops mid-batch, before accepting
                return "421 closing"
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                )
            )
        return "250 Message accepted"


def authenticator(users: dict[str, str]) -> Any:
    def check(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if users.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check


class SmtpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        security: str = "none",
        server_tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        port: int | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.handler = handler
        self.port = port or free_port()
        # aiosmtpd offers SMTPUTF8 unless told not to; many relays do not
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if security == "starttls":
            kwargs.update(tls_context=server_tls, require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=server_tls)
        if users is not None:
            kwargs.update(
                authenticator=authenticator(users),
                auth_required=True,
                auth_require_tls=security == "starttls",  # implicit TLS is not seen as TLS
            )
        self.controller = Controller(
            handler, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **kwargs
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
