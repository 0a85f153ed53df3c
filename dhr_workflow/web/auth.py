"""Sign-in by email link, and sign-out.

The page answers the same whether or not an address may sign in, and the email goes out after
the response, so neither the words nor the timing tell a stranger who is a contact. Opening a
link shows a button rather than signing in at once: mail scanners that follow links must not
spend a single-use link before its owner clicks it.
"""

from __future__ import annotations

import logging
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import signin
from dhr_workflow.messages import POLICY
from dhr_workflow.signin import Principal
from dhr_workflow.templates import clean_header
from dhr_workflow.transports import DeliveryError
from dhr_workflow.web.app import Web, redirect
from dhr_workflow.web.forms import Reader
from dhr_workflow.web.limits import MissLimiter

log = logging.getLogger("dhr_workflow.web.signin")
# Per client address: enough for a few typos, too few to probe who is a contact.
CLIENT_LIMIT, CLIENT_WINDOW = 10, 900.0


def routes(web: Web) -> list[Route]:
    asked = MissLimiter(limit=CLIENT_LIMIT, window=CLIENT_WINDOW)

    async def start(request: Request) -> Response:
        if await web.person(request) is not None:
            return redirect(_next(request))
        if request.method == "GET":
            return web.page(request, "signin/start.html", title="Sign in")
        reader = Reader(await web.form(request))
        email = reader.email("email")
        if reader.errors:
            return web.page(
                request, "signin/start.html", 400, title="Sign in", errors=reader.errors,
                email=reader.raw("email"),
            )  # fmt: skip
        client = request.client.host if request.client else "?"
        if not asked.allow(client, web.now().timestamp()):
            return web.page(request, "signin/too_many.html", 429, title="Too many requests")
        page = web.page(request, "signin/check_email.html", title="Check your email", email=email)
        # Everything that depends on who the address belongs to happens after the answer.
        page.background = BackgroundTask(_request_and_send, web, email, client)
        return page

    async def link(request: Request) -> Response:
        secret = request.path_params["token"]
        if request.method == "GET":
            email = await web.run(_link_email, web, secret)
            if email is None:
                return web.page(request, "signin/used.html", 400, title="Link expired or used")
            return web.page(request, "signin/confirm.html", title="Sign in", email=email)
        await web.form(request)
        started = await web.run(_use_link, web, secret)
        if started is None:
            return web.page(request, "signin/used.html", 400, title="Link expired or used")
        target = _next(request)
        request.session.clear()  # a new session: nothing from before signing in carries over
        request.session["sid"] = started
        return redirect(target)

    async def signout(request: Request) -> Response:
        # A GET only asks (another site must not be able to sign a person out); POST does it.
        if request.method == "GET":
            if await web.person(request) is None:
                return web.page(request, "signin/signed_out.html", title="You have signed out")
            return web.page(request, "signin/signout.html", title="Sign out")
        await web.form(request)
        token = request.session.get("sid")
        if token:
            await web.run(_end, web, token)
        request.session.clear()
        request.state.person = None
        return web.page(request, "signin/signed_out.html", title="You have signed out")

    return [
        Route("/signin", start, methods=["GET", "POST"]),
        Route("/signin/{token}", link, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["GET", "POST"]),
    ]


def _next(request: Request) -> str:
    """Where to go after signing in: the page asked for, if it is one of ours."""
    target = request.session.pop("next", None)
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


def _request_link(web: Web, email: str, client: str) -> tuple[str, Principal] | None:
    with web.store.transaction() as s:
        asked = signin.request_link(s, email, now=web.now(), client=client)
    return (asked.secret, asked.person) if asked.secret and asked.person else None


def _link_email(web: Web, secret: str) -> str | None:
    with web.store.reading() as s:
        return signin.link_email(s, secret, now=web.now())


def _use_link(web: Web, secret: str) -> str | None:
    with web.store.transaction() as s:
        started = signin.use_link(s, secret, now=web.now())
    return started[0] if started else None


def _end(web: Web, token: str) -> None:
    with web.store.transaction() as s:
        signin.end(s, token, now=web.now())


def signin_url(web: Web, secret: str) -> str:
    return f"{web.settings.public_base_url}/signin/{secret}"


def signin_message(web: Web, secret: str, person: Principal) -> EmailMessage:
    url = signin_url(web, secret)
    context = {"name": person.name, "url": url, "minutes": 15}
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name="DHR action plans", addr_spec=web.settings.mail_from)
    msg["To"] = clean_header(person.email, 320)
    msg["Subject"] = "Your sign-in link for DHR action plans"
    msg["Date"] = format_datetime(web.now())
    msg["Message-ID"] = f"<signin-{uuid.uuid4().hex}@dhr-workflow>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(web.templates.get_template("email/signin.txt").render(context))
    msg.add_alternative(
        web.templates.get_template("email/signin.html").render(context), subtype="html"
    )
    return msg


async def _request_and_send(web: Web, email: str, client: str) -> None:
    found = await web.run(_request_link, web, email, client)
    if found is not None:
        await _send_link(web, *found)


async def _send_link(web: Web, secret: str, person: Principal) -> None:
    message = signin_message(web, secret, person)
    try:
        async with web.transport() as transport:
            await transport.send(message, [person.email])
    except (DeliveryError, OSError) as exc:
        # The link itself is never logged: it would let a log reader sign in.
        log.warning("sign-in email to %s not delivered: %s", person.email, exc)
