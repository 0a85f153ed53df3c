"""The daemon's HTTP side: the partnership's web app, iCal feeds, /healthz and /metrics.

app.py        the application, who is asking, CSRF, security headers, error pages
forms.py      every form's fields and the errors people see
auth.py       sign-in by email link, sign-out
act.py        /act/<token>: what a message's links open (progress, done, more time)
dashboard.py, reviews.py, actions.py, directory.py, imports.py, upcoming.py
              one module of pages per area
reports.py    /report: the board report as a download
feeds.py      /feeds/<token>.ics
ops.py        /healthz, /metrics
server.py     the HTTP server's connection cap and read timeout (on uvicorn's h11 protocol)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from starlette.applications import Starlette

from dhr_workflow import signin
from dhr_workflow.config import Settings
from dhr_workflow.db import Store
from dhr_workflow.ruleset import RuleSet
from dhr_workflow.templates import Templates
from dhr_workflow.transports import Transport
from dhr_workflow.web import (
    act,
    actions,
    app,
    auth,
    dashboard,
    directory,
    feeds,
    imports,
    ops,
    reports,
    reviews,
    upcoming,
)
from dhr_workflow.web.ops import Health, Metrics

__all__ = ["Health", "Metrics", "create_app"]


def create_app(
    store: Store,
    settings: Settings,
    health: Health,
    metrics: Metrics,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    transport: Callable[[], Transport] | None = None,
    rules: Callable[[], tuple[RuleSet, Templates]] | None = None,
) -> Starlette:
    web = app.Web(store, settings, clock=clock, transport=transport, rules=rules)
    routes = [
        *ops.routes(store, health, metrics),
        *feeds.routes(store, settings, clock=clock),
        *auth.routes(web),
        *act.routes(web),
        *dashboard.routes(web),
        *reviews.routes(web),
        *actions.routes(web),
        *imports.routes(web),
        *directory.routes(web),
        *upcoming.routes(web),
        *reports.routes(web),
    ]
    return app.create_app(web, routes, _session_key(store, settings, web.now()))


def _session_key(store: Store, settings: Settings, now: dt.datetime) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    with store.transaction() as s:
        return signin.shared_secret(s, "session_key", now=now)
