"""iCal feeds at /feeds/<token>.ics: version-stamped, cached, and guarded against guessing."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dhr_workflow import feeds
from dhr_workflow.config import Settings
from dhr_workflow.db import Store
from dhr_workflow.web.limits import MissLimiter

_T = TypeVar("_T")


def routes(
    store: Store, settings: Settings, *, clock: Callable[[], dt.datetime] | None = None
) -> list[Route]:
    """The feed route. ``clock`` gives the time (the real one by default): a feed shows an
    overdue action again on the partnership's today."""
    cache = FeedCache()
    versions = VersionCache(settings.feed_cache_seconds)
    misses = MissLimiter()
    stamps: OneFlight[str | None] = OneFlight()
    now = clock or (lambda: dt.datetime.now(dt.UTC))

    async def feed(request: Request) -> Response:
        # The token is looked up first and the limit applies to misses only: everyone behind
        # one council's NAT shares an address, and one person's typos (or a guesser among
        # them) must not lock the others out of valid feeds. A miss costs the same one
        # indexed lookup whether the address is over its limit (429) or not (404).
        client = request.client.host if request.client else "?"
        secret = request.path_params["token"]
        include = request.query_params.get("include") == "completed"
        today = now().astimezone(settings.tz).date()
        # The day is in the key: a stamp cached before midnight is not reused after it.
        key = (secret, include, today)
        tag = versions.get(key, time.monotonic())
        if tag is None:
            # When the stamp expires under a burst of clients, they share one query rather
            # than each taking a worker thread and a database connection for the same answer.
            tag = await stamps.run(
                key,
                lambda: asyncio.to_thread(
                    _for_token, feeds.fingerprint, store, settings, secret, include, today
                ),
            )
            if tag is not None:  # only live tokens: a guess always costs the same
                versions.put(key, tag, time.monotonic())
        if tag is None:
            if misses.blocked(client, time.monotonic()):
                return PlainTextResponse(
                    "Too Many Requests",
                    status_code=429,
                    headers={"Retry-After": str(int(misses.window))},
                )
            misses.record(client, time.monotonic())
            return PlainTextResponse("Not Found", status_code=404)  # no hint why
        headers = {"ETag": tag, "Cache-Control": "private, max-age=900"}
        if _matches(request.headers.get("if-none-match"), tag):
            return Response(status_code=304, headers=headers)  # no render at all
        body = cache.get(tag)
        if body is None:
            body = await asyncio.to_thread(
                _for_token, feeds.render, store, settings, secret, include, today
            )
            if body is None:
                return PlainTextResponse("Not Found", status_code=404)
            cache.put(tag, body)
        return Response(body, media_type="text/calendar; charset=utf-8", headers=headers)

    return [Route("/feeds/{token}.ics", feed)]


def _matches(header: str | None, tag: str) -> bool:
    """If-None-Match: a list of tags, weak ones ("W/...") compared weakly, or "*"."""
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or tag in candidates


class VersionCache:
    """Live feeds' version stamps for a few seconds, so that a burst of clients polling one
    feed costs one query and a 304 costs none. Bounded; a change or a revocation shows within
    ``ttl`` seconds."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self.tags: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()

    def get(self, key: Hashable, now: float) -> str | None:
        found = self.tags.get(key)
        if found is None or now - found[1] >= self.ttl:
            return None
        return found[0]

    def put(self, key: Hashable, tag: str, now: float) -> None:
        self.tags[key] = (tag, now)
        self.tags.move_to_end(key)
        while len(self.tags) > self.size:
            self.tags.popitem(last=False)


class OneFlight(Generic[_T]):
    """Concurrent calls for one key share the first one's result (or its exception)."""

    def __init__(self) -> None:
        self.running: dict[Hashable, asyncio.Future[_T]] = {}

    async def run(self, key: Hashable, make: Callable[[], Awaitable[_T]]) -> _T:
        running = self.running.get(key)
        if running is not None:
            # Shielded: a client that goes away must not cancel the others' answer.
            return await asyncio.shield(running)
        task = asyncio.ensure_future(make())
        self.running[key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if self.running.get(key) is task:
                del self.running[key]


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


def _for_token(
    make: Callable[..., _T],
    store: Store,
    settings: Settings,
    secret: str,
    include: bool,
    today: dt.date,
) -> _T | None:
    """``make`` (the feed's version stamp or its body) for a live token, or None."""
    with store.reading() as s:
        token = feeds.lookup(s, secret)
        if token is None:
            return None
        return make(
            s,
            token,
            include_completed=include,
            detail=settings.feed_detail,
            today=today,
            base_url=settings.public_base_url,
        )
