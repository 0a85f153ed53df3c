"""HTTP: iCal feeds, /healthz and /metrics (Starlette, served by uvicorn in the daemon's loop)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from dhr_workflow import feeds
from dhr_workflow.config import Settings
from dhr_workflow.db import Store
from dhr_workflow.models import Notification


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter(
            "dhr_ticks_total", "Rule evaluations", ["rule"], registry=self.registry
        )
        self.enqueued = Counter(
            "dhr_messages_enqueued_total", "Messages enqueued", registry=self.registry
        )
        self.outcomes = Counter(
            "dhr_messages_total", "Delivery outcomes", ["outcome"], registry=self.registry
        )
        self.send_seconds = Histogram(
            "dhr_send_batch_seconds", "Time to send one batch", registry=self.registry
        )
        self.backlog = Gauge(
            "dhr_outbox_backlog", "Messages pending or sending", registry=self.registry
        )
        self.dead = Gauge("dhr_outbox_dead", "Messages given up on", registry=self.registry)
        self.job_errors = Counter(
            "dhr_job_errors_total", "Jobs that raised", ["job"], registry=self.registry
        )


@dataclass
class Health:
    """What the daemon knows about itself, for /healthz."""

    scheduler_running: bool = False
    last_tick: dict[str, str] = field(default_factory=dict)
    job_errors: dict[str, str] = field(default_factory=dict)
    rules_loaded_at: str | None = None


def _outbox_state(store: Store, now: dt.datetime) -> dict[str, Any]:
    with store.reading() as s:
        s.execute(text("SELECT 1"))
        waiting = Notification.state.in_(["pending", "sending"])
        backlog = s.scalar(select(func.count()).select_from(Notification).where(waiting)) or 0
        oldest = s.scalar(select(func.min(Notification.created_at)).where(waiting))
        dead = (
            s.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.state.in_(["dead", "failed"]))
            )
            or 0
        )
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    age = (now - oldest).total_seconds() if oldest else 0.0
    return {"backlog": backlog, "oldest_pending_seconds": round(age, 1), "dead": dead}


def create_app(store: Store, settings: Settings, health: Health, metrics: Metrics) -> Starlette:
    async def healthz(request: Request) -> Response:
        body: dict[str, Any] = {
            "scheduler_running": health.scheduler_running,
            "last_tick": health.last_tick,
            "job_errors": health.job_errors,
            "rules_loaded_at": health.rules_loaded_at,
        }
        try:
            body |= await asyncio.to_thread(_outbox_state, store, dt.datetime.now(dt.UTC))
            body["database"] = "ok"
        except Exception as exc:  # any database failure makes us unhealthy, with the reason
            body["database"] = f"unreachable: {exc.__class__.__name__}"
        healthy = body["database"] == "ok" and health.scheduler_running
        body["status"] = "ok" if healthy else "unhealthy"
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics_endpoint(request: Request) -> Response:
        try:
            state = await asyncio.to_thread(_outbox_state, store, dt.datetime.now(dt.UTC))
            metrics.backlog.set(state["backlog"])
            metrics.dead.set(state["dead"])
        except Exception:  # noqa: S110 - metrics still answer while the database is down
            pass
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    cache = FeedCache()
    versions = VersionCache(settings.feed_cache_seconds)
    misses = MissLimiter()

    async def feed(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if misses.blocked(client, time.monotonic()):
            return PlainTextResponse(
                "Too Many Requests",
                status_code=429,
                headers={"Retry-After": str(int(misses.window))},
            )
        secret = request.path_params["token"]
        include = request.query_params.get("include") == "completed"
        tag = versions.get((secret, include), time.monotonic())
        if tag is None:
            tag = await asyncio.to_thread(
                _for_token, feeds.fingerprint, store, settings, secret, include
            )
            if tag is not None:  # only live tokens: a guess always costs the same
                versions.put((secret, include), tag, time.monotonic())
        if tag is None:
            misses.record(client, time.monotonic())
            return PlainTextResponse("Not Found", status_code=404)  # no hint why
        headers = {"ETag": tag, "Cache-Control": "private, max-age=900"}
        if _matches(request.headers.get("if-none-match"), tag):
            return Response(status_code=304, headers=headers)  # no render at all
        body = cache.get(tag)
        if body is None:
            body = await asyncio.to_thread(
                _for_token, feeds.render, store, settings, secret, include
            )
            if body is None:
                return PlainTextResponse("Not Found", status_code=404)
            cache.put(tag, body)
        return Response(body, media_type="text/calendar; charset=utf-8", headers=headers)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics_endpoint),
            Route("/feeds/{token}.ics", feed),
        ]
    )


def _matches(header: str | None, tag: str) -> bool:
    """If-None-Match: a list of tags, weak ones ("W/...") compared weakly, or "*"."""
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or tag in candidates


class MissLimiter:
    """Slows down token guessing: a client with too many unknown-token requests in a window
    gets 429 until the window passes. Bounded memory: the oldest clients are forgotten."""

    def __init__(self, limit: int = 30, window: float = 60.0, clients: int = 10_000) -> None:
        self.limit, self.window, self.clients = limit, window, clients
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, client: str, now: float) -> None:
        times = self.seen.setdefault(client, deque())
        self.seen.move_to_end(client)
        times.append(now)
        while len(times) > self.limit + 1:
            times.popleft()
        while len(self.seen) > self.clients:
            self.seen.popitem(last=False)

    def blocked(self, client: str, now: float) -> bool:
        times = self.seen.get(client)
        if not times:
            return False
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) > self.limit


class VersionCache:
    """Live feeds' version stamps for a few seconds, so that a burst of clients polling one
    feed costs one query and a 304 costs none. Bounded; a change or a revocation shows within
    ``ttl`` seconds."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self.tags: OrderedDict[tuple[str, bool], tuple[str, float]] = OrderedDict()

    def get(self, key: tuple[str, bool], now: float) -> str | None:
        found = self.tags.get(key)
        if found is None or now - found[1] >= self.ttl:
            return None
        return found[0]

    def put(self, key: tuple[str, bool], tag: str, now: float) -> None:
        self.tags[key] = (tag, now)
        self.tags.move_to_end(key)
        while len(self.tags) > self.size:
            self.tags.popitem(last=False)


class FeedCache:
    """Rendered feeds by version stamp: calendar clients poll the same feed again and again."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.bodies: OrderedDict[str, bytes] = OrderedDict()

    def get(self, tag: str) -> bytes | None:
        body = self.bodies.get(tag)
        if body is not None:
            self.bodies.move_to_end(tag)
        return body

    def put(self, tag: str, body: bytes) -> None:
        self.bodies[tag] = body
        while len(self.bodies) > self.size:
            self.bodies.popitem(last=False)


_T = TypeVar("_T")


def _for_token(
    make: Callable[..., _T], store: Store, settings: Settings, secret: str, include: bool
) -> _T | None:
    """``make`` (the feed's version stamp or its body) for a live token, or None."""
    with store.reading() as s:
        token = feeds.lookup(s, secret)
        if token is None:
            return None
        return make(s, token, include_completed=include, detail=settings.feed_detail)
