"""What a report says, read from the store, the ledger and the audit log: one
:class:`ReviewReport` per review (read one review at a time, so ``--all`` over a large store
holds one review's actions, never all of them) and a :class:`Cover` that adds them up.

The rules the report states in words are here as code, in one place:

- RAG: green completed; amber open or in progress and not overdue; red overdue (open past its
  due date) or blocked; grey withdrawn. A recommendation takes its worst action's colour
  (red, then amber, then green; grey when every action is withdrawn).
- Implementation rate: of the actions in the plan (withdrawn ones left out), the share
  completed, and the share completed on time (completed on or before the due date it has now,
  an agreed extension included).
- Chasing: the messages the outbox sent about an action, counted from the audit log's
  ``notification.enqueue`` events (each names the actions its message carried: a firing links
  one message only) and the outbox's delivery states.
- The trend: each action's status replayed from its audit events (create, status changes,
  re-imports), month by month; an action with no events counts from its creation, completed on
  its completion date.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from dhr_workflow import reviews
from dhr_workflow.batching import chunked
from dhr_workflow.errors import InvalidInput, NotFound
from dhr_workflow.models import (
    Action,
    ActionStatus,
    ActionUpdate,
    Agency,
    AuditEvent,
    Contact,
    ExtensionRequest,
    Notification,
    Recommendation,
    Review,
    ReviewStatus,
)

# The reader's scope, as the web app's pages apply it (one rule for pages and reports).
from dhr_workflow.overview import _visible as visible
from dhr_workflow.signin import Scope
from dhr_workflow.targets import add_months
from dhr_workflow.text import one_line

GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"
RAGS = (RED, AMBER, GREEN, GREY)  # worst first
RAG_WORDS = {GREEN: "Green", AMBER: "Amber", RED: "Red", GREY: "Grey"}
RAG_RULES = {
    GREEN: "completed",
    AMBER: "open or in progress, and not past its due date (or with no due date)",
    RED: "overdue (open past its due date) or blocked",
    GREY: "withdrawn",
}
# Messages that chase an action; calendar updates and extension notices do not.
CHASERS = {
    "due_soon": ("reminder", "reminders"),
    "overdue": ("overdue reminder", "overdue reminders"),
    "escalation": ("escalation", "escalations"),
    "update_request": ("request for an update", "requests for an update"),
    "needs_review": ("needs-review reminder", "needs-review reminders"),
}
NO_AGENCY = "No lead agency"
TREND_POINTS = 36  # months shown; a longer life is shown by quarter


@dataclass(frozen=True)
class Request:
    """What to report on: one review (by ref) or all open ones, for whom, and when."""

    review: str | None  # None: every open review the reader may see
    as_of: dt.date
    since: dt.date
    tz: ZoneInfo
    scope: Scope | None = None  # None: everything (coordinators, partnership chairs, the CLI)
    family: bool = False

    @property
    def next_until(self) -> dt.date:
        """The end of the next period: as long as the one reported on, at most a year."""
        length = min(max((self.as_of - self.since).days, 28), 366)
        return self.as_of + dt.timedelta(days=length)

    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.since, dt.time(), self.tz)

    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.as_of + dt.timedelta(days=1), dt.time(), self.tz)


def check(req: Request) -> None:
    if req.since > req.as_of:
        raise InvalidInput(f"--since {req.since} is after --as-of {req.as_of}")
    if req.family and req.review is None:
        raise InvalidInput("a family report is about one review: give --review REF, not --all")


# --- rows ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Chase:
    """What was done to chase one action: messages by kind, and where they stand."""

    sent: int = 0
    escalations: int = 0
    waiting: int = 0  # pending or being retried
    failed: int = 0
    last_sent: dt.date | None = None
    kinds: dict[str, int] = field(default_factory=dict)  # sent, by template

    def words(self) -> str:
        if not (self.sent or self.waiting or self.failed):
            return "No reminder sent"
        parts = [f"{n} {CHASERS[t][n != 1]}" for t, n in self.kinds.items()]
        text = ", ".join(parts) if parts else "No reminder sent yet"
        if self.last_sent:
            text += f" (last {self.last_sent.day} {self.last_sent:%b %Y})"
        if self.waiting:
            text += f"; {self.waiting} waiting to be sent"
        if self.failed:
            text += f"; {self.failed} could not be delivered"
        return text


@dataclass(slots=True)
class Row:
    """One action as every format shows it (the CSV's row: docs/report-schema.md)."""

    action_id: int
    review_ref: str
    review_title: str
    recommendation_id: int | None
    recommendation_ref: str
    recommendation_text: str
    section: str
    action_ref: str
    text: str
    lead_agency: str | None
    owner: str | None
    target_text: str | None
    due_date: dt.date | None
    status: str
    completed_on: dt.date | None
    outcome: str | None
    reasons: list[str]
    created: dt.date
    rag: str = AMBER
    days_overdue: int | None = None
    on_time: bool | None = None
    chase: Chase = field(default_factory=Chase)

    @property
    def agency(self) -> str:
        return self.lead_agency or NO_AGENCY

    @property
    def ref(self) -> str:
        return self.action_ref or self.recommendation_ref or str(self.action_id)

    @property
    def needs_review(self) -> bool:
        return bool(self.reasons) and self.status not in _CLOSED


_CLOSED = (ActionStatus.COMPLETED.value, ActionStatus.WITHDRAWN.value)


def rag(status: str, due: dt.date | None, as_of: dt.date) -> str:
    """An action's RAG rating on ``as_of`` (see the module's docstring)."""
    if status == ActionStatus.WITHDRAWN:
        return GREY
    if status == ActionStatus.COMPLETED:
        return GREEN
    if status == ActionStatus.BLOCKED or (due is not None and due < as_of):
        return RED
    return AMBER


def worst(rags: list[str]) -> str:
    for colour in RAGS:
        if colour in rags and colour != GREY:
            return colour
    return GREY


def on_time(status: str, due: dt.date | None, completed: dt.date | None) -> bool | None:
    """Completed on or before the due date; None when not completed or nothing to compare."""
    if status != ActionStatus.COMPLETED or due is None or completed is None:
        return None
    return completed <= due


# --- the rates and counts --------------------------------------------------------------------


@dataclass
class Rate:
    """Counts for an agency or a review, and its implementation rate."""

    name: str
    actions: int = 0  # withdrawn ones included
    withdrawn: int = 0
    completed: int = 0
    on_time: int = 0
    overdue: int = 0
    rag: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RAGS, 0))

    def add(self, row: Row) -> None:
        self.actions += 1
        self.rag[row.rag] += 1
        self.withdrawn += row.status == ActionStatus.WITHDRAWN
        self.completed += row.status == ActionStatus.COMPLETED
        self.on_time += row.on_time is True
        self.overdue += row.days_overdue is not None

    def merge(self, other: Rate) -> None:
        self.actions += other.actions
        self.withdrawn += other.withdrawn
        self.completed += other.completed
        self.on_time += other.on_time
        self.overdue += other.overdue
        for colour, n in other.rag.items():
            self.rag[colour] += n

    @property
    def in_plan(self) -> int:
        return self.actions - self.withdrawn

    @property
    def completed_pct(self) -> float | None:
        return 100 * self.completed / self.in_plan if self.in_plan else None

    @property
    def on_time_pct(self) -> float | None:
        return 100 * self.on_time / self.in_plan if self.in_plan else None


@dataclass
class RecGroup:
    id: int | None
    ref: str
    text: str
    section: str
    rows: list[Row] = field(default_factory=list)

    @property
    def rag(self) -> str:
        return worst([r.rag for r in self.rows])


@dataclass(frozen=True)
class Note:
    at: dt.datetime
    action_id: int
    ref: str
    agency: str
    author: str
    text: str


@dataclass(frozen=True)
class Extension:
    action_id: int
    ref: str
    agency: str
    requested_by: str
    asked_on: dt.date
    current_due: dt.date | None
    proposed_due: dt.date
    reason: str
    state: str
    decided_by: str | None
    decided_on: dt.date | None
    note: str | None


@dataclass(frozen=True)
class Point:
    """The trend on one day: actions in the plan, completed, completed on time."""

    day: dt.date
    in_plan: int
    completed: int
    on_time: int

    @property
    def completed_pct(self) -> float:
        return 100 * self.completed / self.in_plan if self.in_plan else 0.0

    @property
    def on_time_pct(self) -> float:
        return 100 * self.on_time / self.in_plan if self.in_plan else 0.0


@dataclass
class ReviewReport:
    """Everything one review's section shows."""

    ref: str
    title: str
    partnership: str | None
    status: str
    plan_agreed_on: dt.date | None
    published_on: dt.date | None
    recommendations: list[RecGroup]
    total: Rate
    by_agency: list[Rate]
    overdue: list[Row]
    completed_since: list[Row]
    due_next: list[Row]
    needs_review: list[Row]
    notes: list[Note]
    extensions: list[Extension]
    quarters: list[tuple[str, int, int]]  # (label, due, completed)
    trend: list[Point]

    @property
    def rows(self) -> Iterator[Row]:
        for rec in self.recommendations:
            yield from rec.rows

    @property
    def size(self) -> int:
        return self.total.actions


@dataclass
class Cover:
    """The reviews added up: per review, per agency, per quarter and month."""

    reviews: list[tuple[str, str, Rate]] = field(default_factory=list)  # ref, title, rate
    total: Rate = field(default_factory=lambda: Rate("All reviews"))
    agencies: dict[str, Rate] = field(default_factory=dict)
    quarters: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    months: dict[dt.date, list[int]] = field(default_factory=dict)
    overdue: int = 0
    notes: int = 0
    completed_since: int = 0
    due_next: int = 0
    needs_review: int = 0
    extensions: int = 0

    def add(self, rep: ReviewReport, months: dict[dt.date, list[int]]) -> None:
        self.reviews.append((rep.ref, rep.title, rep.total))
        self.total.merge(rep.total)
        for r in rep.by_agency:
            self.agencies.setdefault(r.name, Rate(r.name)).merge(r)
        for row in rep.rows:
            _quarter_add(self.quarters, row)
        for day, counts in months.items():
            into = self.months.setdefault(day, [0, 0, 0])
            for i, n in enumerate(counts):
                into[i] += n
        self.overdue += len(rep.overdue)
        self.notes += len(rep.notes)
        self.completed_since += len(rep.completed_since)
        self.due_next += len(rep.due_next)
        self.needs_review += len(rep.needs_review)
        self.extensions += len(rep.extensions)

    def by_agency(self) -> list[Rate]:
        return sorted(self.agencies.values(), key=_agency_order)

    def quarter_series(self, req: Request) -> list[tuple[str, int, int]]:
        return _quarter_series(self.quarters, req)

    def trend(self, req: Request) -> list[Point]:
        return _points(self.months, req)


# --- reading ---------------------------------------------------------------------------------


def find_reviews(session: Session, req: Request) -> list[Review]:
    """The reviews the report covers: the one named, or every open one with something the
    reader may see. One they may not see is not found, exactly as one that does not exist."""
    if req.review is not None:
        try:
            review = reviews.get(session, req.review)
        except NotFound:
            raise NotFound(f"no review with ref {req.review!r} you may see") from None
        if not _may_see(session, review, req.scope):
            raise NotFound(f"no review with ref {req.review!r} you may see")
        return [review]
    stmt = select(Review).where(Review.status == ReviewStatus.OPEN.value).order_by(Review.ref)
    if req.scope is not None:
        seen = select(Action.review_id).where(visible(req.scope)).distinct()
        stmt = stmt.where(or_(Review.id.in_(list(req.scope.review_ids)), Review.id.in_(seen)))
    return list(session.scalars(stmt))


def _may_see(session: Session, review: Review, scope: Scope | None) -> bool:
    if scope is None or review.id in scope.review_ids:
        return True
    found = session.scalar(
        select(Action.id).where(Action.review_id == review.id, visible(scope)).limit(1)
    )
    return found is not None


def count_actions(session: Session, ids: list[int], scope: Scope | None) -> int:
    """How many actions the report will show (for the progress bar)."""
    where: list[ColumnElement[bool]] = [Action.review_id.in_(ids), visible(scope)]
    return int(session.scalar(select(func.count()).select_from(Action).where(*where)) or 0)


def chase_index(session: Session, req: Request) -> dict[int, Chase]:
    """Every action's chasing up to the end of ``as_of``, in one pass over the log's enqueue
    events (read in batches: a digest's event may name thousands of actions)."""
    states: dict[int, tuple[str, str, dt.datetime | None]] = {}
    found = session.execute(
        select(Notification.id, Notification.template, Notification.state, Notification.sent_at)
        .where(Notification.template.in_(list(CHASERS)))
        .execution_options(yield_per=5000)
    )
    for note_id, template, state, sent_at in found:
        states[note_id] = (template, state, sent_at)
    chases: dict[int, Chase] = {}
    if not states:
        return chases
    events = session.execute(
        select(AuditEvent.subject, AuditEvent.data)
        .where(AuditEvent.kind == "notification.enqueue", AuditEvent.at < req.end())
        .execution_options(yield_per=1000)
    )
    for subject, data in events:
        known = states.get(_id(subject))
        if known is None:
            continue
        for action_id in _carried(data):
            _count(chases.setdefault(action_id, Chase()), known, req)
    return chases


def _id(subject: str) -> int:
    try:
        return int(subject.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _carried(data: str) -> list[int]:
    try:
        carried = json.loads(data).get("actions")
    except (ValueError, AttributeError):
        return []
    return [a for a in carried if isinstance(a, int)] if isinstance(carried, list) else []


def _count(chase: Chase, known: tuple[str, str, dt.datetime | None], req: Request) -> None:
    template, state, sent_at = known
    if state == "sent" and sent_at is not None and sent_at < req.end():
        chase.sent += 1
        chase.escalations += template == "escalation"
        chase.kinds[template] = chase.kinds.get(template, 0) + 1
        day = sent_at.astimezone(req.tz).date()
        chase.last_sent = max(chase.last_sent or day, day)
    elif state in ("failed", "dead"):
        chase.failed += 1
    elif state != "sent":
        chase.waiting += 1


_COLUMNS = (
    Action.id, Action.ref, Action.text, Action.recommendation_id,
    Recommendation.ref, Recommendation.text, Recommendation.section, Agency.name,
    Action.owner_text, Contact.name, Action.target_text, Action.due_date, Action.status,
    Action.completed_on, Action.outcome, Action.review_reasons, Action.created_at,
)  # fmt: skip


def _rows(session: Session, review: Review, req: Request, chases: dict[int, Chase]) -> list[Row]:
    stmt = (
        select(*_COLUMNS)
        .outerjoin(Recommendation, Recommendation.id == Action.recommendation_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .outerjoin(Contact, Contact.id == Action.owner_contact_id)
        .where(Action.review_id == review.id, visible(req.scope))
        .order_by(Action.id)
    )
    out = []
    for (aid, ref, text, rec_id, rec_ref, rec_text, section, agency, owner, owner_name, target,
         due, status, completed, outcome, reasons, created) in session.execute(stmt):  # fmt: skip
        row = Row(
            aid, review.ref, review.title, rec_id, rec_ref or "", one_line(rec_text),
            section or "overview", ref or "", one_line(text), agency, owner or owner_name, target,
            due, status, completed, outcome, list(reasons or []),
            created.astimezone(req.tz).date(),
        )  # fmt: skip
        row.rag = rag(status, due, req.as_of)
        if status not in _CLOSED and due is not None and due < req.as_of:
            row.days_overdue = (req.as_of - due).days
        row.on_time = on_time(status, due, completed)
        row.chase = chases.get(aid) or Chase()
        out.append(row)
    return out


def gather(
    session: Session, review: Review, req: Request, chases: dict[int, Chase]
) -> tuple[ReviewReport, dict[dt.date, list[int]]]:
    """One review's report, and its trend's monthly counts (for the cover's trend)."""
    rows = _rows(session, review, req, chases)
    recs: dict[int | None, RecGroup] = {}
    for row in rows:
        key = row.recommendation_id
        if key not in recs:
            recs[key] = RecGroup(key, row.recommendation_ref, row.recommendation_text,
                                        row.section)  # fmt: skip
        recs[key].rows.append(row)
    total, agencies = Rate(review.ref), dict[str, Rate]()
    for row in rows:
        total.add(row)
        agencies.setdefault(row.agency, Rate(row.agency)).add(row)
    months = _replay(session, rows, req)
    quarters: dict[tuple[int, int], list[int]] = {}
    for row in rows:
        _quarter_add(quarters, row)
    report = ReviewReport(
        ref=review.ref, title=review.title, partnership=review.partnership,
        status=review.status, plan_agreed_on=review.plan_agreed_on,
        published_on=review.published_on,
        recommendations=sorted(recs.values(), key=lambda r: (r.id is None, r.id or 0)),
        total=total, by_agency=sorted(agencies.values(), key=_agency_order),
        **_lists(rows, req),
        notes=_notes(session, review, req), extensions=_extensions(session, review, req),
        quarters=_quarter_series(quarters, req), trend=_points(months, req),
    )  # fmt: skip
    return report, months


def _lists(rows: list[Row], req: Request) -> dict[str, list[Row]]:
    active = [r for r in rows if r.status not in _CLOSED]
    return {
        "overdue": sorted(
            (r for r in rows if r.days_overdue is not None),
            key=lambda r: (-(r.days_overdue or 0), r.action_id),
        ),
        "completed_since": sorted(
            (
                r
                for r in rows
                if r.status == ActionStatus.COMPLETED
                and r.completed_on is not None
                and req.since <= r.completed_on <= req.as_of
            ),
            key=lambda r: (r.completed_on, r.action_id),
        ),
        "due_next": sorted(
            (r for r in active if r.due_date and req.as_of <= r.due_date <= req.next_until),
            key=lambda r: (r.due_date, r.action_id),
        ),
        "needs_review": [r for r in rows if r.needs_review],
    }


def _agency_order(rate: Rate) -> tuple[bool, str]:
    return (rate.name == NO_AGENCY, rate.name.lower())


def _notes(session: Session, review: Review, req: Request) -> list[Note]:
    """Progress notes written from --since to the end of --as-of, newest first."""
    stmt = (
        select(
            ActionUpdate.at,
            Action.id,
            Action.ref,
            Agency.name,
            ActionUpdate.author,
            ActionUpdate.note,
        )
        .join(Action, Action.id == ActionUpdate.action_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .where(
            Action.review_id == review.id,
            visible(req.scope),
            ActionUpdate.at >= req.start(),
            ActionUpdate.at < req.end(),
        )
        .order_by(ActionUpdate.at.desc(), ActionUpdate.id.desc())
    )
    return [
        Note(at, aid, ref or str(aid), agency or NO_AGENCY, author, note.strip())
        for at, aid, ref, agency, author, note in session.execute(stmt)
    ]


def _extensions(session: Session, review: Review, req: Request) -> list[Extension]:
    """Requests for more time asked in the period, and any still waiting."""
    stmt = (
        select(ExtensionRequest, Action.ref, Agency.name)
        .join(Action, Action.id == ExtensionRequest.action_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .where(
            Action.review_id == review.id,
            visible(req.scope),
            ExtensionRequest.created_at < req.end(),
            or_(ExtensionRequest.created_at >= req.start(), ExtensionRequest.state == "pending"),
        )
        .order_by(ExtensionRequest.created_at, ExtensionRequest.id)
    )
    out = []
    for ext, ref, agency in session.execute(stmt):
        decided = ext.decided_at if ext.decided_at and ext.decided_at < req.end() else None
        out.append(
            Extension(
                ext.action_id, ref or str(ext.action_id), agency or NO_AGENCY, ext.requested_by,
                ext.created_at.astimezone(req.tz).date(), ext.current_due, ext.proposed_due,
                ext.reason, ext.state if decided or ext.state == "pending" else "pending",
                ext.decided_by if decided else None,
                decided.astimezone(req.tz).date() if decided else None,
                ext.decision_note if decided else None,
            )
        )  # fmt: skip
    return out


# --- quarters --------------------------------------------------------------------------------


def _quarter(day: dt.date) -> tuple[int, int]:
    return (day.year, (day.month - 1) // 3 + 1)


def _quarter_add(into: dict[tuple[int, int], list[int]], row: Row) -> None:
    if row.status == ActionStatus.WITHDRAWN:
        return
    if row.due_date is not None:
        into.setdefault(_quarter(row.due_date), [0, 0])[0] += 1
    if row.status == ActionStatus.COMPLETED and row.completed_on is not None:
        into.setdefault(_quarter(row.completed_on), [0, 0])[1] += 1


QUARTERS_SHOWN = 12


def _quarter_series(
    counts: dict[tuple[int, int], list[int]], req: Request
) -> list[tuple[str, int, int]]:
    """Due and completed per quarter, up to the quarter the next period ends in (the last
    QUARTERS_SHOWN of them)."""
    last = _quarter(req.next_until)
    keys = sorted(k for k in counts if k <= last)
    if not keys:
        return []
    year, q = keys[0]
    series = []
    while (year, q) <= last:
        due, done = counts.get((year, q), [0, 0])
        series.append((f"Q{q} {year}", due, done))
        year, q = (year + 1, 1) if q == 4 else (year, q + 1)
    return series[-QUARTERS_SHOWN:]


# --- the trend: replaying the audit log ------------------------------------------------------


@dataclass(slots=True)
class _State:
    day: dt.date
    status: str
    due: dt.date | None
    completed: dt.date | None


def _replay(session: Session, rows: list[Row], req: Request) -> dict[dt.date, list[int]]:
    """[in plan, completed, on time] on each month's last day (and on --as-of), from each
    action's history in the audit log."""
    histories: dict[int, list[_State]] = defaultdict(list)
    by_id = {r.action_id: r for r in rows}
    ids = list(by_id)
    for batch in chunked(ids):
        subjects = [f"action:{i}" for i in batch]
        events = session.execute(
            select(AuditEvent.subject, AuditEvent.at, AuditEvent.data)
            .where(AuditEvent.subject.in_(subjects), AuditEvent.kind.like("action.%"))
            .where(AuditEvent.at < req.end())
            .order_by(AuditEvent.seq)
        )
        for subject, at, data in events:
            _apply(histories[_id(subject)], at.astimezone(req.tz).date(), data)
    for aid, row in by_id.items():
        if not histories.get(aid):  # from before the audit log, or loaded in bulk
            histories[aid] = _assumed(row)
    days = _month_ends(min((h[0].day for h in histories.values() if h), default=req.as_of), req)
    months = {d: [0, 0, 0] for d in days}
    for history in histories.values():
        _tally(history, days, months)
    return months


def _apply(history: list[_State], day: dt.date, data: str) -> None:
    try:
        after = json.loads(data).get("after")
    except (ValueError, AttributeError):
        return
    if not isinstance(after, dict):
        return
    prev = history[-1] if history else _State(day, ActionStatus.OPEN.value, None, None)
    state = _State(
        day,
        str(after.get("status", prev.status)),
        _date(after["due_date"]) if "due_date" in after else prev.due,
        _date(after["completed_on"]) if "completed_on" in after else prev.completed,
    )
    if history and history[-1].day == day:
        history[-1] = state  # the day's last word
    else:
        history.append(state)


def _assumed(row: Row) -> list[_State]:
    if row.status == ActionStatus.COMPLETED and row.completed_on:
        opened = min(row.created, row.completed_on)
        return [
            _State(opened, ActionStatus.OPEN.value, row.due_date, None),
            _State(row.completed_on, row.status, row.due_date, row.completed_on),
        ]
    return [_State(row.created, row.status, row.due_date, row.completed_on)]


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _month_ends(first: dt.date, req: Request) -> list[dt.date]:
    days, year, month = [], first.year, first.month
    while True:
        nxt = dt.date(year + month // 12, month % 12 + 1, 1)
        end = nxt - dt.timedelta(days=1)
        if end >= req.as_of:
            days.append(req.as_of)
            break
        days.append(end)
        year, month = nxt.year, nxt.month
    return days


def _tally(history: list[_State], days: list[dt.date], months: dict[dt.date, list[int]]) -> None:
    i = 0
    for day in days:
        while i + 1 < len(history) and history[i + 1].day <= day:
            i += 1
        state = history[i]
        if state.day > day or state.status == ActionStatus.WITHDRAWN:
            continue
        counts = months[day]
        counts[0] += 1
        if state.status == ActionStatus.COMPLETED:
            counts[1] += 1
            if state.due and state.completed and state.completed <= state.due:
                counts[2] += 1


def _points(months: dict[dt.date, list[int]], req: Request) -> list[Point]:
    days = sorted(d for d in months if d <= req.as_of)
    if len(days) > TREND_POINTS:  # a long life: quarter ends, and the last day
        days = [d for d in days if d.month % 3 == 0 or d == days[-1]][-TREND_POINTS:]
    return [Point(d, *months[d]) for d in days]


# --- the whole walk --------------------------------------------------------------------------


def walk(session: Session, req: Request) -> Iterator[tuple[ReviewReport, dict[dt.date, list[int]]]]:
    """Each review's report in turn (ref order): one review's rows in memory at a time."""
    chases = chase_index(session, req)
    for review in find_reviews(session, req):
        yield gather(session, review, req, chases)
        session.expunge_all()  # the ORM keeps no review's rows once written


def default_since(as_of: dt.date) -> dt.date:
    """The period a report covers when none is given: six months, as the partnership report."""
    return add_months(as_of, -6)


def scope_words(scope: Scope | None) -> str:
    """Who the report is cut for, in words (nothing for a reader who sees everything)."""
    if scope is None:
        return ""
    if scope.agency_ids and scope.review_ids:
        return "only the actions of your reviews and of your agencies"
    if scope.review_ids:
        return "only the actions of your reviews"
    return "only the actions your agencies lead"


def audit_data(req: Request, fmt: str) -> tuple[str, dict[str, Any]]:
    """The subject and data of a ``report.generate`` event: what was asked, not the content."""
    subject = f"review:{req.review}" if req.review is not None else "reviews:all"
    scope: Any = "all"
    if req.scope is not None:
        scope = {"agency_ids": sorted(req.scope.agency_ids),
                 "review_ids": sorted(req.scope.review_ids)}  # fmt: skip
    return subject, {
        "format": fmt, "review": req.review, "as_of": req.as_of, "since": req.since,
        "family": req.family, "scope": scope,
    }  # fmt: skip
