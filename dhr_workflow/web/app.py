"""The HTTP application: the partnership's web app, feeds, /healthz and /metrics.

Pages are server-rendered Jinja2 with GOV.UK Frontend's components and work without JavaScript.
A route reads the request, checks who may do it (:meth:`Web.person`, :meth:`Web.form`), calls
the same service function as the CLI, and renders. Anything a person may not see is a 404.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from jinja2 import ChoiceLoader, Environment, PackageLoader, PrefixLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dhr_workflow import signin
from dhr_workflow.config import Settings
from dhr_workflow.db import Store
from dhr_workflow.engine import load_rules
from dhr_workflow.errors import UserError
from dhr_workflow.ruleset import RuleSet
from dhr_workflow.signin import Principal
from dhr_workflow.templates import Templates
from dhr_workflow.transports import Transport, make_transport
from dhr_workflow.web import filters

log = logging.getLogger("dhr_workflow.web")
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "dhr_session"
_T = TypeVar("_T")


class SignInNeeded(Exception):
    """The page needs a signed-in person: they are sent to /signin and back."""


class Hidden(Exception):
    """Not there, or not for this person: both look the same (404)."""


class FormExpired(Exception):
    """A POST without the session's CSRF token."""


class TooLarge(Exception):
    """A request body over its limit (see :class:`BodyLimit`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class Web:
    """What every route needs: the store, settings, the clock, templates and the mailer."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        transport: Callable[[], Transport] | None = None,
        rules: Callable[[], tuple[RuleSet, Templates]] | None = None,
    ) -> None:
        self.store, self.settings = store, settings
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.transport = transport or (lambda: make_transport(settings))
        # The daemon passes the rule set it runs (reloaded on SIGHUP); alone, read the files.
        self.rules = rules or (
            lambda: load_rules(settings.rules_dir, settings.templates_dir, settings.tz)
        )
        self.templates = _environment()

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        return self.now().astimezone(self.settings.tz).date()

    async def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Database work in a worker thread: the event loop also runs the scheduler."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    # --- who is asking ----------------------------------------------------------------
    async def person(self, request: Request) -> Principal | None:
        if "person" not in request.state._state:
            request.state.person = await self.run(self._resume, request.session.get("sid"))
            if request.state.person is None:
                request.session.pop("sid", None)
        found: Principal | None = request.state.person
        return found

    def _resume(self, token: str | None) -> Principal | None:
        if not token:
            return None
        now = self.now()
        with self.store.reading() as s:
            person, stale = signin.resume(s, token, now=now)
        if person is not None and stale:
            with self.store.transaction() as s:
                signin.touch(s, token, now=now)
        return person

    async def require(self, request: Request, *, edit: bool = False) -> Principal:
        """The signed-in person; with ``edit``, only a coordinator (anyone else: 404)."""
        person = await self.person(request)
        if person is None:
            raise SignInNeeded
        if edit and not person.coordinator:
            raise Hidden
        return person

    async def form(self, request: Request, **limits: Any) -> FormData:
        """The POSTed form, refused unless it carries this session's CSRF token."""
        form = await request.form(**limits)
        sent = form.get("csrf_token")
        expected = request.session.get("csrf")
        if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, expected)):
            raise FormExpired
        return form

    # --- pages ------------------------------------------------------------------------
    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        person: Principal | None = getattr(request.state, "person", None)
        body = self.templates.get_template(template).render(
            request=request,
            person=person,
            csrf_token=csrf_token(request),
            nonce=request.scope.get("csp_nonce", ""),
            today=self.today(),
            tz=self.settings.tz,
            partnership=self.settings.partnership,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(body, status_code=status_code)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def _environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [
                PackageLoader("dhr_workflow.web", "templates"),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        # Pages (.html) escape everything; the sign-in email's plain-text part must not.
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return env


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)  # after a POST: GET the result


class SecurityHeaders:
    """Headers every response carries: a strict CSP with a nonce for the one inline script
    GOV.UK's page template needs, no framing, no referrer (sign-in links are in URLs), and no
    caching of pages that may hold plan text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = scope["csp_nonce"] = secrets.token_urlsafe(16)
        page = not scope["path"].startswith(("/static/", "/feeds/", "/metrics", "/healthz"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _csp(nonce).encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                ]
                if page:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Request bodies are read only up to a limit: forms up to 64 KB, plan uploads up to
    DHR_UPLOAD_LIMIT_MB. Anyone may POST to /signin, and an unbounded body would be read and
    held in full before any check. Counted as it arrives, so a chunked body cannot dodge it."""

    FORM = 64 * 1024

    def __init__(self, app: ASGIApp, upload: int) -> None:
        self.app, self.upload = app, upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.upload + self.FORM if scope["path"] == "/import" else self.FORM
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        declared, seen = (int(length) if length.isdigit() else 0), 0

        async def counted() -> Message:
            nonlocal seen
            if declared > limit:  # refused before a byte is read
                raise TooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _csp(nonce: str) -> str:
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def create_app(web: Web, routes: Sequence[BaseRoute], session_key: str) -> Starlette:
    secure = web.settings.public_base_url.startswith("https://")

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        # The path as it was sent (still percent-encoded): a review ref may hold "/" or "?".
        raw = request.scope.get("raw_path") or request.url.path.encode()
        target = raw.decode("latin-1") + (f"?{request.url.query}" if request.url.query else "")
        request.session["next"] = target
        return RedirectResponse("/signin", status_code=303)

    async def not_found(request: Request, exc: Exception) -> Response:
        await web.person(request)  # the header shows who is signed in, if anyone
        return web.page(request, "errors/404.html", status_code=404)

    async def expired(request: Request, exc: Exception) -> Response:
        return web.page(request, "errors/expired.html", status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return await not_found(request, exc)
        return web.page(
            request, "errors/problem.html", status_code=exc.status_code, detail=exc.detail
        )

    async def too_large(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TooLarge)
        return web.page(request, "errors/too_large.html", status_code=413, limit=exc.limit)

    async def user_error(request: Request, exc: Exception) -> Response:
        # A service refusing something no form check caught: still one clear sentence.
        return web.page(request, "errors/problem.html", status_code=400, detail=str(exc))

    return Starlette(
        routes=[*routes, Mount("/static", StaticFiles(directory=STATIC), name="static")],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, upload=int(web.settings.upload_limit_mb * 1024 * 1024)),
            Middleware(
                SessionMiddleware,
                secret_key=session_key,
                session_cookie=SESSION_COOKIE,
                max_age=int(signin.IDLE_TIMEOUT.total_seconds()),
                same_site="lax",
                https_only=secure,
            ),
        ],
        exception_handlers={
            SignInNeeded: sign_in_first,
            Hidden: not_found,
            FormExpired: expired,
            TooLarge: too_large,
            HTTPException: http_error,
            UserError: user_error,
        },
    )
