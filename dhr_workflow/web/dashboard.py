"""The dashboard: every open review's counts, overdue actions by agency, the needs-review
queue, extension requests waiting for a decision (for those who may decide them) and messages
that failed."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import extensions, overview
from dhr_workflow.signin import Principal, Scope
from dhr_workflow.web.app import Web


def routes(web: Web) -> list[Route]:
    async def dashboard(request: Request) -> Response:
        person = await web.require(request)
        data = await web.run(_dashboard, web, person)
        return web.page(request, "dashboard.html", title="Dashboard", **data)

    return [Route("/", dashboard)]


def _dashboard(web: Web, person: Principal) -> dict[str, Any]:
    scope, today = person.scope, web.today()
    with web.store.reading() as s:
        return {
            "reviews": overview.review_counts(s, today, scope),
            "overdue": overview.overdue_by_agency(s, today, scope),
            "flagged": overview.needs_review(s, scope),
            "failed": overview.failed_messages(s) if person.reads_all else [],
            "extensions": extensions.pending(s, _deciding(person)) if _decides(person) else [],
        }


def _decides(person: Principal) -> bool:
    return person.coordinator or bool(person.coordinated_ids)


def _deciding(person: Principal) -> Scope | None:
    """The actions whose extension requests this person decides: those they may edit."""
    return None if person.coordinator else Scope(frozenset(), person.coordinated_ids)
