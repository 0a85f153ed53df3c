"""What will be sent in the next 14 days, per recipient: the daemon's schedule simulated over
the store as it is now (see :mod:`dhr_workflow.upcoming`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dhr_workflow import engine, upcoming
from dhr_workflow.signin import Principal
from dhr_workflow.web.app import Hidden, Web

DAYS = 14
TEMPLATE_NAMES = {
    "due_soon": "Reminder: due soon",
    "overdue": "Overdue",
    "escalation": "Escalation",
    "needs_review": "Needs review",
    "partnership_report": "Partnership report",
    "family_update": "Family update",
    "update_request": "Request for an update",
    "calendar_update": "Calendar update",
    "delivery_failure": "Delivery failure",
}


def routes(web: Web) -> list[Route]:
    async def page(request: Request) -> Response:
        person = await web.require(request)
        if not person.reads_all:
            raise Hidden
        data = await web.run(_forecast, web, person)
        return web.page(request, "upcoming.html", title="What will be sent", **data)

    return [Route("/upcoming", page)]


def _forecast(web: Web, person: Principal) -> dict[str, Any]:
    ruleset, templates = web.rules()
    now = web.now()
    s = web.settings
    context = engine.Context(now, s.tz, s.holidays_region, templates, s.partnership, s.mail_from)
    with web.store.reading() as session:
        found = upcoming.forecast(session, ruleset, context, start=now, days=DAYS)
    people: dict[str, list[tuple[upcoming.Planned, str]]] = defaultdict(list)
    for message in found.messages:
        for address in message.to:
            people[address].append((message, "to"))
        for address in message.cc:
            people[address].append((message, "copy"))
    return {
        "gap_lines": [_gap_words(g) for g in found.gaps],
        "forecast": found,
        "people": sorted(people.items()),
        "days": DAYS,
        "template_names": TEMPLATE_NAMES,
    }


ROLE_WORDS = {
    "owner": "no owner or agency lead",
    "agency.lead": "no agency lead",
    "agency.manager": "no agency manager",
    "coordinator": "no DHR coordinator",
    "partnership.chair": "no partnership chair",
    "review.family_liaison": "no family liaison",
}


def _gap_words(gap: upcoming.PlannedGap) -> str:
    """A gap as a coordinator reads it: who is missing, or which review date is not set."""
    what = (
        f"{len(gap.action_ids)} action{'s' if len(gap.action_ids) != 1 else ''}"
        if gap.action_ids
        else f"{len(gap.review_ids)} review{'s' if len(gap.review_ids) != 1 else ''}"
    )
    if gap.role.startswith("review.") and gap.role.endswith("_on"):
        date = gap.role.removeprefix("review.").removesuffix("_on").replace("_", "-")
        return f"the {date} date is not set on {what} (rule {gap.rule})"
    return f"{ROLE_WORDS.get(gap.role, gap.role)} for {what} (rule {gap.rule})"
