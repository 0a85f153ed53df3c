"""Operations endpoints: /healthz and /metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select, text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dhr_workflow import db
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


def _database_state(store: Store, body: dict[str, Any]) -> str:
    """The database's health: "ok", or why the store cannot be used; adds the outbox figures
    to ``body`` when it can read them. A SQLite file deleted, replaced or made read-only under
    the daemon is unhealthy even though the connections it holds still answer (they reach the
    old file)."""
    state = store.file_state()
    try:
        body |= _outbox_state(store, dt.datetime.now(dt.UTC))
    except Exception as exc:  # any database failure makes us unhealthy, with the reason
        return db.FILE_PROBLEMS[state][0] if state else f"unreachable: {exc.__class__.__name__}"
    return db.FILE_PROBLEMS[state][0] if state else "ok"


def routes(store: Store, health: Health, metrics: Metrics) -> list[Route]:
    async def healthz(request: Request) -> Response:
        # Read once: the scheduler can start while the database is checked, and the answer's
        # status must agree with the body it sends.
        running = health.scheduler_running
        body: dict[str, Any] = {
            "scheduler_running": running,
            "last_tick": health.last_tick,
            "job_errors": health.job_errors,
            "rules_loaded_at": health.rules_loaded_at,
        }
        body["database"] = await asyncio.to_thread(_database_state, store, body)
        healthy = body["database"] == "ok" and running
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

    return [Route("/healthz", healthz), Route("/metrics", metrics_endpoint)]
