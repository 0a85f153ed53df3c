"""Mail transports. They only send, or raise :class:`DeliveryError`; the outbox records.

    DeliveryError(message, permanent)
    ├── permanent=True   5xx replies, every recipient refused, a non-ASCII address and a
    │                    server without SMTPUTF8: retrying will not help
    └── permanent=False  connection refused or dropped, timeouts, 4xx replies: retry later

A transport is used as an async context manager for one batch, so SMTP keeps one connection
open for the batch and reconnects if the server drops it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Protocol

import aiosmtplib

from dhr_workflow.config import Settings


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def __aenter__(self) -> Transport: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        """Send to ``recipients``; returns the recipients refused (address -> reply) when
        others were accepted; raises DeliveryError when nothing was delivered."""
        ...


class FileTransport:
    """Writes each message as an .eml file (the embedded default: no mail server needed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def __aenter__(self) -> FileTransport:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DeliveryError(
                f"cannot create {self.directory}: {exc.strerror}", permanent=False
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        name = str(message["Message-ID"]).strip("<>").replace("/", "_").replace("@", "_at_")
        final = self.directory / f"{name}.eml"
        tmp = self.directory / f".{name}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(message.as_bytes())
            tmp.replace(final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DeliveryError(f"cannot write {final}: {exc.strerror}", permanent=False) from None
        return {}


class MemoryTransport:
    """Keeps messages in a list: for unit tests that need no server."""

    def __init__(self, fail: DeliveryError | None = None) -> None:
        self.sent: list[tuple[EmailMessage, list[str]]] = []
        self.fail = fail

    async def __aenter__(self) -> MemoryTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        if self.fail is not None:
            raise self.fail
        self.sent.append((message, recipients))
        return {}


class SmtpTransport:
    """aiosmtplib, one connection per batch, security chosen explicitly (never opportunistic:
    aiosmtplib's default would silently stay in plain text if STARTTLS is not offered)."""

    def __init__(self, settings: Settings, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context
        self.client: aiosmtplib.SMTP | None = None

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        return aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout,
            use_tls=s.smtp_security == "tls", start_tls=s.smtp_security == "starttls",
            username=s.smtp_username, password=password, tls_context=self.tls_context,
        )  # fmt: skip

    async def __aenter__(self) -> SmtpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await asyncio.wait_for(self.client.quit(), self.settings.smtp_timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self.client.close()
            # Closing a (TLS) transport finishes on later turns of the event loop; give it
            # those turns, or a loop that ends right after the batch leaves the socket open.
            await asyncio.sleep(0.05)
        self.client = None

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self.client is None or not self.client.is_connected:
            self.client = self._client()
            try:
                await asyncio.wait_for(self.client.connect(), self.settings.smtp_timeout)
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise DeliveryError(
                    f"SMTP login refused ({exc.code}): check DHR_SMTP_USERNAME/DHR_SMTP_PASSWORD",
                    permanent=False,
                ) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._drop()
                raise DeliveryError(
                    f"cannot connect to {self.settings.smtp_host}:"
                    f"{self.settings.smtp_port}: {_reason(exc)}",
                    permanent=False,
                ) from None
        return self.client

    async def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        client = await self._connected()
        try:
            # aiosmtplib's timeout is per socket operation; bound the whole send.
            async with asyncio.timeout(self.settings.smtp_timeout * 2):
                refused, _reply = await client.send_message(message, recipients=recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            permanent = all(r.code >= 500 for r in exc.recipients)
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise DeliveryError(f"all recipients refused: {detail}", permanent=permanent) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code} {exc.message}", permanent=exc.code >= 500
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            # Raised before anything is sent (the connection stays usable), and the server's
            # extensions do not change between attempts: for a non-ASCII address without
            # SMTPUTF8, retrying for hours would only delay telling the coordinator.
            raise DeliveryError(_unsupported(exc, recipients), permanent=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()  # reconnect for the next message
            raise DeliveryError(f"SMTP connection lost: {_reason(exc)}", permanent=False) from None
        return {addr: f"{r.code} {r.message}" for addr, r in refused.items()}


def _unsupported(exc: aiosmtplib.SMTPNotSupported, recipients: list[str]) -> str:
    wide = [r for r in recipients if not r.isascii()]
    if "SMTPUTF8" in str(exc) and wide:
        return (
            f"{', '.join(wide)}: an address with non-ASCII characters needs a mail server "
            "that offers SMTPUTF8, and this one does not (use a plain ASCII address for this "
            "contact, or a server with SMTPUTF8)"
        )
    return f"the mail server does not support what this message needs: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if text:
        return text[0]
    # asyncio's timeouts carry no text: "TimeoutError" would read as a program fault.
    return "timed out" if isinstance(exc, TimeoutError) else exc.__class__.__name__


def make_transport(settings: Settings) -> Transport:
    if settings.mail_transport == "smtp":
        return SmtpTransport(settings)
    return FileTransport(settings.mail_dir)
