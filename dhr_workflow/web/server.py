"""uvicorn as the daemon runs it on an open port: bounded connections and read time.

What uvicorn 0.54 (h11 protocol; httptools is not installed) bounds by itself, read in its
source: ``timeout_keep_alive`` closes an idle connection only *after* a response (the timer is
armed in ``on_response_complete``), so a client that connects and sends its headers a byte at a
time is never timed out; ``limit_concurrency`` answers 503 only once a whole request head has
arrived, so such clients are never refused either, and each keeps a file handle. 1,100 of them
under a 1,024-file limit left the sender unable to open the database and the accept loop
logging "Too many open files" hundreds of thousands of times.

:class:`GuardedH11` adds the two missing bounds to uvicorn's own h11 protocol:

- a **connection cap**: beyond ``max_connections`` open connections a new one is answered
  ``503 Service Unavailable`` (``Retry-After``) and closed at once (after reading what the
  client sent, so it sees the answer rather than a reset), which keeps file handles for the
  scheduler, the sender and the database whatever arrives on the port;
- a **read timeout**: a request's headers must arrive within ``read_timeout`` of the first
  byte (or of the connection), and a body may not pause longer than that between parts;
  otherwise the connection is closed. A client that is waiting for its answer is never cut.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("dhr_workflow.http")

BACKLOG = 128  # the listen queue; also how many connections one accept pass takes at most
# File handles the daemon needs besides HTTP connections: the database pools (a SQLite
# connection holds three), SMTP, logs, the interpreter's own.
RESERVED_FILES = 256
REFUSED_LINGER = 1.0  # seconds a refused connection may take to send its request
MAX_LINGERING = 64  # refused connections waiting for that at once; beyond, closed at once

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\n"
    b"connection: close\r\n"
    b"content-length: 20\r\n"
    b"\r\n"
    b"Service Unavailable\n"
)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a read timeout (see the module)."""

    max_connections: ClassVar[int] = 200
    read_timeout: ClassVar[float] = 10.0
    lingering: ClassVar[int] = 0  # refused connections not yet closed, across the server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = False
        self.read_timer: asyncio.TimerHandle | None = None
        self.reading_head = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self.refused:  # its request has arrived: the 503 is on its way, close
            self.transport.close()
            return
        super().data_received(data)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self.refused:
            type(self).lingering -= 1
            return
        super().connection_lost(exc)

    # --- the cap ----------------------------------------------------------------------------
    def _refuse(self, transport: asyncio.Transport) -> None:
        self.refused, self.transport = True, transport
        type(self).lingering += 1
        # One identical line per refusal: the daemon's log filter keeps a flood to one a minute.
        log.warning(
            "HTTP connection refused (503): %d connections open, the limit "
            "(DHR_HTTP_MAX_CONNECTIONS)",
            self.max_connections,
        )
        transport.write(REFUSAL)
        if type(self).lingering > MAX_LINGERING:
            transport.close()
        else:
            self.read_timer = self.loop.call_later(REFUSED_LINGER, transport.close)

    # --- the read timeout -------------------------------------------------------------------
    def _watch(self) -> None:
        """After each read: a head not yet complete keeps its first deadline (sending a byte at
        a time does not extend it); a body's deadline moves with each part; a request that is
        complete (the application has it) has none."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if not self.reading_head:
                self.reading_head = True
                self._start_timer()
        elif state is h11.SEND_BODY:
            self.reading_head = False
            self._start_timer()
        else:
            self.reading_head = False
            self._stop_timer()

    def _start_timer(self) -> None:
        self._stop_timer()
        self.read_timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def _stop_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _timed_out(self) -> None:
        self.read_timer = None
        if self.flow.read_paused:  # we stopped reading (the application is behind), not it
            self._start_timer()
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        # Between requests uvicorn's keep-alive timer runs; the next head starts its own
        # deadline with its first byte.
        self.reading_head = False
        self._stop_timer()
        super().on_response_complete()


def connection_limit(wanted: int, files: int | None = None) -> int:
    """``wanted`` connections, or fewer if the process's file limit would not leave the
    daemon its own file handles (a warning says so)."""
    if files is None:
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if files == resource.RLIM_INFINITY:
        return wanted
    room = files - RESERVED_FILES - BACKLOG - MAX_LINGERING
    if wanted <= room:
        return wanted
    allowed = max(room, 8)
    log.warning(
        "DHR_HTTP_MAX_CONNECTIONS=%d does not fit the open-file limit (%d): serving at most %d "
        "connections at once; raise LimitNOFILE (systemd) or ulimit -n",
        wanted,
        files,
        allowed,
    )
    return allowed


def protocol(max_connections: int, read_timeout: float) -> type[GuardedH11]:
    """The protocol class for one server (the limits are class attributes: uvicorn builds a
    protocol per connection from the class)."""
    limits = {"max_connections": max_connections, "read_timeout": read_timeout, "lingering": 0}
    return type("GuardedH11", (GuardedH11,), limits)


def config(
    app: Any,
    *,
    host: str,
    port: int,
    max_connections: int,
    read_timeout: float,
    forwarded_allow_ips: str,
) -> uvicorn.Config:
    """The uvicorn configuration the daemon serves with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(connection_limit(max_connections), read_timeout),
        backlog=BACKLOG,
        timeout_keep_alive=5,
        log_level="warning",
        lifespan="off",
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )
