"""The engine's data: what a tick found (hits), what it sends (messages), who it could not
reach (gaps), and the context it runs in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from dhr_workflow import links
from dhr_workflow.messages import Attachment
from dhr_workflow.recipients import Subject
from dhr_workflow.ruleset import Notify
from dhr_workflow.templates import Rendered, Templates

# The built-in rule that follows up earlier invitations (dhr_workflow.invitations). Defined
# here, not there: the digests read the template's name when they load, and invitations
# imports this module, so keeping it here lets either be imported first.
CALENDAR_RULE = "calendar"
CALENDAR_TEMPLATE = "calendar_update"


class Hit(NamedTuple):
    """One rule firing for one subject in one period (not yet written).

    A catch-up tick holds one per open action and rule (hundreds of thousands), a Monday's
    weekly digest 80,000 at a million actions: a named tuple (made in a fifth of the time a
    frozen dataclass takes, and as small), the subject's facts inline rather than a Subject
    object each, and the step, notify, period and superseded values shared between hits.
    """

    rule: str
    subject_type: str
    subject_id: int
    period_key: str
    step: str | None
    notify: tuple[Notify, ...]
    review_id: int  # with the two below: what the recipients' roles depend on
    agency_id: int | None = None
    owner_contact_id: int | None = None
    superseded: tuple[str, ...] = ()  # lower period keys recorded without a message
    since: dt.date | None = None  # review reports: the start of the period reported on
    sent: tuple[str, ...] = ()  # ladder steps already sent for this due date ("-30d", ...)
    first: bool = False  # the action's owner and agency lead have not been told before

    @property
    def subject(self) -> Subject:
        return Subject(self.review_id, self.agency_id, self.owner_contact_id)


@dataclass
class Message:
    rule: str
    steps: list[str]
    template: str
    to: list[str]
    cc: list[str]
    calendar: bool
    hits: list[Hit]
    review: str | None = None
    rendered: Rendered | None = None
    subject: str | None = None  # kept when commit lets go of the rendered bodies
    # Actions this recipient hears about for the first time, in an escalation (FirstNotice).
    first: set[int] = field(default_factory=set)
    links: list[links.NewLink] = field(default_factory=list)  # stored when enqueued
    reply_to: str | None = None  # the review's coordinator
    attachment: Attachment | None = None  # the partnership report's PDF

    @property
    def action_ids(self) -> list[int]:
        return sorted({h.subject_id for h in self.hits if h.subject_type == "action"})

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "step": ",".join(s for s in self.steps if s) or None,
            "template": self.template,
            "to": self.to,
            "cc": self.cc,
            "subject": self.subject,
            "actions": self.action_ids,
            "review": self.review,
            "calendar": self.calendar,
        }


@dataclass
class Gap:
    rule: str
    role: str
    hits: list[Hit] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        actions = sorted({h.subject_id for h in self.hits if h.subject_type == "action"})
        reviews = sorted({h.subject_id for h in self.hits if h.subject_type == "review"})
        return {"rule": self.rule, "role": self.role, "actions": actions, "review_ids": reviews}


@dataclass
class TickResult:
    at: dt.datetime
    messages: list[Message]
    gaps: list[Gap]
    hits: list[Hit]
    unsent: list[Hit]  # hits nobody could be told about (every recipient a gap)
    rules: list[str] = field(default_factory=list)  # the rules evaluated (for tick marks)

    @property
    def superseded(self) -> int:
        return sum(len(h.superseded) for h in self.hits)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "messages": [m.to_json() for m in self.messages],
            "gaps": [g.to_json() for g in self.gaps],
            "superseded": self.superseded,
        }


@dataclass(frozen=True)
class Context:
    """What evaluation needs besides the store: time, zone, calendar region, templates."""

    at: dt.datetime
    tz: ZoneInfo
    region: str
    templates: Templates
    partnership: str | None = None
    mail_from: str = "dhr-workflow@localhost"  # the ORGANIZER of calendar invitations
    # Where people reach the web app: links in messages start with it (none without it).
    base_url: str | None = None
    # The partnership report's PDF goes with its email up to this size (0: never attached).
    report_attach_mb: float = 0.0
    report_marking: str = ""

    @property
    def today(self) -> dt.date:
        return self.at.astimezone(self.tz).date()


class FirstNotice(Notify):
    """Who must hear about an action when a tick's first message about it is a step that does
    not address them (an escalation reached after downtime, or for a plan imported late):
    its owner and agency lead, in the same tick and the same words, told it is the first."""


Key = tuple[str, str, int, str]


def key(hit: Hit) -> Key:
    """The hit's firing-ledger key: (rule, subject type, subject id, period)."""
    return (hit.rule, hit.subject_type, hit.subject_id, hit.period_key)
