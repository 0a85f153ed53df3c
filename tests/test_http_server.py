"""The daemon's HTTP server (uvicorn with web/server.py's guard) against clients that are slow
or too many: a real server on loopback in a thread, raw sockets as clients. And the log
filter that keeps a fault repeating in a loop to one line a minute."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from dhr_workflow.logs import RepeatFilter
from dhr_workflow.web import server
from tests.smtp_server import free_port

TIMEOUT = 0.6  # the read timeout the test server runs with (seconds)


async def _slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0")))
    return PlainTextResponse("ok")


async def _echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


@dataclass
class Running:
    port: int
    server: uvicorn.Server

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return sock


@pytest.fixture
def http() -> Iterator[Running]:
    """The guarded server (3 connections at most, a 0.6 s read timeout) in a thread."""
    app = Starlette(routes=[Route("/slow", _slow), Route("/echo", _echo, methods=["POST"])])
    port = free_port()
    config = server.config(
        app, host="127.0.0.1", port=port, max_connections=3, read_timeout=TIMEOUT,
        forwarded_allow_ips="127.0.0.1",
    )  # fmt: skip
    running = Running(port, uvicorn.Server(config))
    thread = threading.Thread(target=running.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield running
    running.server.should_exit = True
    thread.join(10)


def _closed_after(sock: socket.socket) -> tuple[bytes, float]:
    """What the server sends before it closes, and after how long."""
    start, data = time.monotonic(), b""
    sock.settimeout(5)
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic() - start


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and the content-length's worth of body)."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
         if line.startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return _response(sock)


def test_a_silent_connection_is_closed_after_the_read_timeout(http: Running) -> None:
    with http.connect() as sock:
        data, after = _closed_after(sock)
    assert data == b""
    assert TIMEOUT * 0.8 <= after <= TIMEOUT + 1


def test_headers_sent_a_byte_at_a_time_do_not_extend_it(http: Running) -> None:
    with http.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\n")
        start, closed = time.monotonic(), False
        while time.monotonic() - start < TIMEOUT * 4:
            try:
                sock.sendall(b"X")  # a byte every 0.1 s: never idle, never finished
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        if not closed:
            closed = _closed_after(sock)[0] == b""
    assert closed
    assert time.monotonic() - start <= TIMEOUT * 3


def test_a_body_that_stalls_is_cut_and_a_steady_one_is_read(http: Running) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
    with http.connect() as sock:  # parts closer together than the timeout: fine
        sock.sendall(head)
        for _ in range(5):
            time.sleep(TIMEOUT / 3)
            sock.sendall(b"ab")
        answer = _response(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"10")
    with http.connect() as sock:  # half the body, then silence
        sock.sendall(head + b"abcde")
        data, after = _closed_after(sock)
    assert not data.startswith(b"HTTP/1.1 200")
    assert after <= TIMEOUT + 1


def test_a_client_waiting_for_a_slow_answer_is_not_cut(http: Running) -> None:
    with http.connect() as sock:
        answer = _get(sock, f"/slow?s={TIMEOUT * 2}")
        assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT / 2)  # kept alive between requests
        assert _get(sock, "/slow").startswith(b"HTTP/1.1 200")


def test_connections_beyond_the_cap_get_503_at_once(http: Running) -> None:
    held = [http.connect() for _ in range(3)]
    try:
        time.sleep(0.1)
        with http.connect() as extra:
            start = time.monotonic()
            answer = _get(extra, "/slow")
            waited = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"retry-after: 5" in answer
        assert waited < 0.5
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)  # the held connections closed: room again
    with http.connect() as sock:
        assert _get(sock, "/slow").startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("wanted", "files", "allowed"),
    [
        (200, 1024, 200),  # systemd's default limit leaves room for 200
        (1000, 1024, 576),  # lowered: 256 kept for the daemon, 128 backlog, 64 lingering
        (200, 65536, 200),
        (5000, 65536, 5000),
        (200, 256, 8),  # a limit too small for anything: a few connections, with a warning
    ],
)
def test_connection_limit_fits_the_file_limit(wanted: int, files: int, allowed: int) -> None:
    assert server.connection_limit(wanted, files) == allowed


def _record(message: str, level: int = logging.ERROR, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_repeated_identical_warnings_are_rate_limited() -> None:
    now = [0.0]
    limit = RepeatFilter(window=60, clock=lambda: now[0])
    flood = [limit.filter(_record("socket.accept() out of system resource")) for _ in range(5000)]
    assert flood.count(True) == 1
    assert limit.filter(_record("something else"))  # other messages still pass
    assert all(limit.filter(_record("tick", logging.INFO)) for _ in range(3))  # INFO untouched
    now[0] = 61.0
    later = _record("socket.accept() out of system resource")
    assert limit.filter(later)
    assert later.getMessage() == (
        "socket.accept() out of system resource (and 4999 more like it, not logged)"
    )
