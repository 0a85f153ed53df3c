"""Rule evaluation: a function of the store and ``at``. Reads only; :func:`commit` writes.

Semantics users rely on:
- the firing ledger's unique (rule, subject, period) makes every tick idempotent;
- a ladder fires only the highest step an action has reached; lower steps not yet fired are
  recorded as superseded, so catching up after downtime sends one message, not a backlog;
- a ladder period includes the due date, so a changed date restarts the ladder;
- ``repeat`` re-fires every interval while the action stays open;
- a recurring review rule fires for its latest occurrence not yet fired;
- completed and withdrawn actions never fire;
- firings of one tick are grouped into one message per rule, template and recipients.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVarTuple
from typing import cast as typing_cast
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, String, Table, bindparam, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from dhr_workflow import audit, calendar, links
from dhr_workflow.durations import latest_fire_time, parse_cron, slot_key
from dhr_workflow.errors import InvalidInput, TimeWentBack
from dhr_workflow.messages import Attachment
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    ActionUpdate,
    Agency,
    Contact,
    Firing,
    Invitation,
    Notification,
    Recommendation,
    Review,
    TickMark,
)
from dhr_workflow.recipients import Directory, Subject
from dhr_workflow.ruleset import FAMILY_SAFE, Every, Ladder, Notify, Rule, RuleSet, load_dir
from dhr_workflow.selection import action_clauses, review_clauses
from dhr_workflow.targets import add_months
from dhr_workflow.templates import Rendered, Templates, family_safe, sample_context

TEXT_SHORT = 160  # characters of action text in a message
FAILURE_TEMPLATE = "delivery_failure"  # sent by the outbox, so always checked


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule firing for one subject in one period (not yet written).

    A catch-up tick holds one per open action and rule (hundreds of thousands): slots, the
    subject's facts inline rather than a Subject object each, and the step, notify, period and
    superseded values shared between hits, not copied into each.
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


def load_rules(rules_dir: Path, templates_dir: Path, tz: ZoneInfo) -> tuple[RuleSet, Templates]:
    """The rule set and its templates, fully checked: every template a rule names exists and
    renders against a sample of the messages that rule sends, so a broken or misplaced one
    is found now, not when it is due to send."""
    templates = Templates(templates_dir)
    ruleset = load_dir(rules_dir, tz=tz)
    available = templates.names()
    for item in ruleset.entries():
        kind = "review" if isinstance(item, Rule) and item.scope == "review" else "action"
        for path, notify in _notifies(item):
            where = f"{ruleset.sources[item.id]}: {item.id}: {path}.template"
            if notify.template not in available:
                have = ", ".join(sorted(available)) or "none"
                raise InvalidInput(
                    f"{where}: template {notify.template!r} does not exist (have: {have})"
                )
            sample = sample_context(kind)
            if notify.template in FAMILY_SAFE:
                sample = family_safe(sample)
            try:
                templates.render(notify.template, sample)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{where}: {notify.template!r} does not fit a {kind} message: {exc}"
                ) from None
    templates.check({FAILURE_TEMPLATE}, "failure")
    templates.check({CALENDAR_TEMPLATE}, "action")
    # Sent by the web app when someone asks for more time and when it is decided.
    templates.check({"extension_request", "extension_decision"}, "extension")
    return ruleset, templates


def _notifies(item: Ladder | Rule) -> list[tuple[str, Notify]]:
    if isinstance(item, Ladder):
        return [
            (f"steps[{i}].notify[{j}]", n)
            for i, step in enumerate(item.steps)
            for j, n in enumerate(step.notify)
        ]
    return [(f"notify[{j}]", n) for j, n in enumerate(item.notify)]


# --- evaluation ------------------------------------------------------------------------------


def evaluate(
    session: Session,
    ruleset: RuleSet,
    ctx: Context,
    only: Sequence[str] | None = None,
    *,
    render: bool = True,
) -> TickResult:
    """Everything that should fire at ``ctx.at``, grouped and rendered. Writes nothing.

    ``render=False`` leaves rendering to :func:`commit`, which renders, writes and lets go of
    the messages a chunk at a time: a catch-up tick can hold thousands of long digests."""
    hits: list[Hit] = []
    for ladder in ruleset.ladders:
        if only is None or ladder.id in only:
            hits += _ladder_hits(session, ladder, ctx)
    for rule in ruleset.rules:
        if only is None or rule.id in only:
            hits += _rule_hits(session, rule, ctx)
    directory = Directory(session)
    messages, gaps, unsent = _group(hits, directory)
    gaps += unanchored(session, ruleset, only)
    if only is None or CALENDAR_RULE in only:
        messages += _invitation_updates(session)
    if render:
        _render(session, messages, ctx, directory)
    evaluated = [i for i in ruleset.ids if only is None or i in only]
    return TickResult(ctx.at, messages, gaps, hits, unsent, evaluated)


CALENDAR_RULE = "calendar"  # built in: follows up earlier invitations
CALENDAR_TEMPLATE = "calendar_update"


def _invitation_updates(session: Session) -> list[Message]:
    """A CANCEL or an updated REQUEST for every invitation whose action has moved on since
    (completed, withdrawn, re-dated: each bumps the action's sequence), one message per address."""
    rows = session.execute(
        select(
            Invitation.address, Action.id, Action.sequence, Action.review_id, Action.lead_agency_id
        )
        .join(Action, Action.id == Invitation.action_id)
        .where(Invitation.state == "active", Action.sequence > Invitation.sequence)
        .order_by(Invitation.address, Action.id)
    ).all()
    fired = _fired_keys(session, CALENDAR_RULE, "action")
    by_address: dict[str, Message] = {}
    for r in rows:
        period = f"seq{r.sequence}|{r.address}"
        if (r.id, period) in fired:
            continue
        msg = by_address.setdefault(
            r.address, Message(CALENDAR_RULE, [], CALENDAR_TEMPLATE, [r.address], [], True, [])
        )
        msg.hits.append(
            Hit(
                CALENDAR_RULE,
                "action",
                r.id,
                period,
                None,
                (),
                r.review_id,
                r.lead_agency_id,
            )
        )
    return list(by_address.values())


def _fired_keys(
    session: Session, rule_id: str, subject_type: str, *where: Any
) -> set[tuple[int, str]]:
    """The ledger keys already recorded for a rule, narrowed by ``where`` so a tick reads the
    periods that matter now, not the rule's whole history."""
    rows = session.execute(
        select(Firing.subject_id, Firing.period_key).where(
            Firing.rule_id == rule_id, Firing.subject_type == subject_type, *where
        )
    )
    return {(r.subject_id, r.period_key) for r in rows}


CHUNK = 5000  # actions selected (with their ledger keys) per query
_Ts = TypeVarTuple("_Ts")


def _by_id(session: Session, stmt: Select[*_Ts]) -> Iterator[Sequence[Row[*_Ts]]]:
    """The rows of ``stmt`` (which selects Action.id) CHUNK at a time in id order, so a rule
    over a large store never holds every candidate row, or every ledger key, at once."""
    last: int | None = None
    while True:
        page = stmt if last is None else stmt.where(Action.id > last)
        rows = session.execute(page.order_by(Action.id).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


class FirstNotice(Notify):
    """Who must hear about an action when a tick's first message about it is a step that does
    not address them (an escalation reached after downtime, or for a plan imported late):
    its owner and agency lead, in the same tick and the same words, told it is the first."""


OWN_ROLES = ("owner", "agency.lead")


def _first_notices(ladder: Ladder) -> list[FirstNotice | None]:
    """Per step: the notice its owner and agency lead get if it is the first they hear of an
    action, or None when the step addresses them itself."""
    notices: list[FirstNotice | None] = []
    for step in ladder.steps:
        roles = {r for n in step.notify for r in (*n.to, *n.cc)}
        tells = bool(roles & set(OWN_ROLES))
        notices.append(
            None
            if tells
            else FirstNotice(to=["owner"], cc=["agency.lead"], template=step.notify[0].template)
        )
    return notices


def _ladder_hits(session: Session, ladder: Ladder, ctx: Context) -> list[Hit]:
    # A ladder runs on its schedule: a tick between slots evaluates as of the latest slot.
    assert isinstance(ladder.schedule, str)
    slot = latest_fire_time(parse_cron(ladder.schedule, ctx.tz), ctx.at)
    if slot is None:
        return []
    today = slot.astimezone(ctx.tz).date()
    earliest = min((s.at for s in ladder.steps), key=lambda o: o.apply(dt.date(2024, 1, 15)))
    # Nothing is reached before the first step: bound the due dates in SQL.
    horizon = today + dt.timedelta(days=earliest.max_days() if earliest.n < 0 else 0)
    clauses = action_clauses(
        session, ladder.applies_to, today=today, now=ctx.at, tz=ctx.tz, region=ctx.region
    )
    stmt = select(
        Action.id, Action.due_date, Action.review_id, Action.lead_agency_id, Action.owner_contact_id
    ).where(*clauses, Action.due_date.is_not(None), Action.due_date <= horizon)
    steps = [(str(step.at), tuple(step.notify)) for step in ladder.steps]  # shared by hits
    first = _first_notices(ladder)
    order = {label: i for i, (label, _) in enumerate(steps)}  # to list sent steps in turn
    with_first: list[tuple[Notify, ...]] = [
        notify if notice is None else (*notify, notice)
        for (_, notify), notice in zip(steps, first, strict=True)
    ]
    reached: dict[dt.date, tuple[str, int, tuple[str, ...]] | None] = {}
    hits = []
    for rows in _by_id(session, stmt):
        fired = _ladder_fired(session, ladder.id, rows[0].id, rows[-1].id)
        for row in rows:
            if row.due_date not in reached:  # many actions share a due date
                reached[row.due_date] = _top_step(ladder, row.due_date, today, ctx.region)
            top = reached[row.due_date]
            done = fired.get(row.id, {})
            if top is None or top[0] in done:
                continue
            period, index, lower = top
            if done:
                lower = tuple(k for k in lower if k not in done)
            # Any step sent for this due date told the owner and agency lead, itself or with
            # the first notice that went with it.
            sent = tuple(
                sorted(
                    {_label(k) for k, outcome in done.items() if outcome == "fired"},
                    key=lambda label: order.get(label, len(order)),
                )
            )
            step, notify = steps[index]
            if not sent:
                notify = with_first[index]
            facts = (row.review_id, row.lead_agency_id, row.owner_contact_id)
            hits.append(
                Hit(
                    ladder.id,
                    "action",
                    row.id,
                    period,
                    step,
                    notify,
                    *facts,
                    lower,
                    sent=sent,
                    first=not sent,
                )
            )
    return hits


def _label(period_key: str) -> str:
    """The step a ladder period key belongs to: "2024-01-31|+1d|r2" -> "+1d"."""
    return period_key.split("|")[1]


def _ladder_fired(
    session: Session, ladder_id: str, first: int, last: int
) -> dict[int, dict[str, str]]:
    """The ledger keys (and outcome: fired or superseded) of actions ``first``..``last`` for
    their current due dates (keys start with the due date; older ones belong to a date that
    has since changed)."""
    current = Firing.period_key.like(cast(Action.due_date, String) + "|%")
    fired: dict[int, dict[str, str]] = defaultdict(dict)
    for i, k, outcome in session.execute(
        select(Firing.subject_id, Firing.period_key, Firing.outcome)
        .join(Action, Action.id == Firing.subject_id)
        .where(
            Firing.rule_id == ladder_id,
            Firing.subject_type == "action",
            Firing.subject_id.between(first, last),
            current,
            Firing.outcome.in_(["fired", "superseded"]),
        )
    ):
        fired[i][k] = outcome
    return fired


def _top_step(
    ladder: Ladder, due: dt.date, today: dt.date, region: str
) -> tuple[str, int, tuple[str, ...]] | None:
    """The highest step reached for ``due`` (period key, step index) and the lower keys it
    supersedes. Skipped steps are recorded; skipped repeats of the top step need no record
    (the latest repeat is what counts, and a long-overdue action would otherwise add one row
    per missed interval)."""
    keys = _reached(ladder, due, today, region)
    if not keys:
        return None
    period, index = keys[-1]
    return period, index, tuple(k for k, _ in keys[:-1] if "|r" not in k)


def _reached(ladder: Ladder, due: dt.date, today: dt.date, region: str) -> list[tuple[str, int]]:
    """(period key, step index) of every step and repeat reached by ``today``, by date: the
    last is the highest. Mixed units ("+9bd", "+12d") can reorder steps on some dates, so
    every step's date is worked out rather than stopping at the first unreached one."""
    reached: list[tuple[dt.date, int, str]] = []
    for index, step in enumerate(ladder.steps):
        when = step.at.apply(due, region)
        if when > today:
            continue
        reached.append((when, index, f"{due.isoformat()}|{step.at}"))
        if step.repeat is not None:
            k, again = 1, step.repeat.apply(when, region)
            while again <= today:
                reached.append((again, index, f"{due.isoformat()}|{step.at}|r{k}"))
                k, again = k + 1, step.repeat.apply(again, region)
    return [(key, index) for _, index, key in sorted(reached)]


def _rule_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    if rule.scope == "review":
        return _review_hits(session, rule, ctx)
    assert isinstance(rule.schedule, str)
    slot = latest_fire_time(parse_cron(rule.schedule, ctx.tz), ctx.at)
    if slot is None:
        return []
    period = slot_key(slot, ctx.tz)
    clauses = action_clauses(
        session, rule.applies_to, today=ctx.today, now=ctx.at, tz=ctx.tz, region=ctx.region
    )
    stmt = select(
        Action.id, Action.review_id, Action.lead_agency_id, Action.owner_contact_id
    ).where(*clauses)
    notify = tuple(rule.notify)  # shared by every hit
    hits = []
    for rows in _by_id(session, stmt):
        fired = _fired_keys(
            session,
            rule.id,
            "action",
            Firing.period_key == period,
            Firing.subject_id.between(rows[0].id, rows[-1].id),
        )
        hits += [
            Hit(
                rule.id,
                "action",
                r.id,
                period,
                None,
                notify,
                r.review_id,
                r.lead_agency_id,
                r.owner_contact_id,
            )
            for r in rows
            if (r.id, period) not in fired
        ]
    return hits


def _review_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    reviews = session.scalars(select(Review).where(*review_clauses(rule.applies_to))).all()
    fired = _fired_keys(session, rule.id, "review")
    hits = []
    for review in reviews:
        period, since = _review_period(rule, review, ctx)
        if period is not None and (review.id, period) not in fired:
            hits.append(
                Hit(
                    rule.id,
                    "review",
                    review.id,
                    period,
                    None,
                    tuple(rule.notify),
                    review.id,
                    since=since,
                )
            )
    return hits


def _review_period(rule: Rule, review: Review, ctx: Context) -> tuple[str | None, dt.date | None]:
    """The period a review rule fires for now, and the start of the period it reports on."""
    if isinstance(rule.schedule, str):
        slot = latest_fire_time(parse_cron(rule.schedule, ctx.tz), ctx.at)
        return (slot_key(slot, ctx.tz), None) if slot else (None, None)
    anchor = getattr(review, rule.schedule.anchor)
    occurrence = latest_occurrence(rule.schedule, anchor, ctx.today)
    if occurrence is None:
        return None, None
    return occurrence.isoformat(), max(anchor, previous_occurrence(rule.schedule, occurrence))


def unanchored(session: Session, ruleset: RuleSet, only: Sequence[str] | None) -> list[Gap]:
    """Recurring review rules that cannot run because a review lacks the date they count
    from: listed like gaps, so a report that never starts is not a silent skip."""
    gaps = []
    for rule in ruleset.rules:
        if not isinstance(rule.schedule, Every) or (only is not None and rule.id not in only):
            continue
        anchor = getattr(Review, rule.schedule.anchor)
        ids = list(
            session.scalars(
                select(Review.id).where(*review_clauses(rule.applies_to), anchor.is_(None))
            )
        )
        if ids:
            gap = Gap(rule.id, rule.schedule.from_)
            gap.hits = [Hit(rule.id, "review", i, "unanchored", None, (), i) for i in ids]
            gaps.append(gap)
    return gaps


def latest_occurrence(every: Every, anchor: dt.date | None, today: dt.date) -> dt.date | None:
    """The latest ``anchor + k * interval`` (k >= 1) on or before ``today``."""
    if anchor is None:
        return None
    n, unit = every.step()
    latest, k = None, 1
    while True:
        when = (
            add_months(anchor, n * k)
            if unit == "month"
            else anchor + dt.timedelta(days=n * k * (7 if unit == "week" else 1))
        )
        if when > today:
            return latest
        latest, k = when, k + 1


def previous_occurrence(every: Every, occurrence: dt.date) -> dt.date:
    n, unit = every.step()
    if unit == "month":
        return add_months(occurrence, -n)
    return occurrence - dt.timedelta(days=n * (7 if unit == "week" else 1))


# --- recipients and digests ------------------------------------------------------------------


def _group(hits: Iterable[Hit], directory: Directory) -> tuple[list[Message], list[Gap], list[Hit]]:
    """One message per recipient and template, listing every action it concerns for that
    recipient — and only those: a manager copied on one agency's escalation never sees
    another agency's actions."""
    messages: dict[tuple[Any, ...], Message] = {}
    gaps: dict[tuple[str, str], Gap] = {}
    unsent = []
    # Addresses depend only on the notify step and the subject's review/agency/owner, which
    # neighbouring actions often share (one plan's actions). Bounded: over a large store most
    # subjects are distinct and an unbounded cache would hold one entry per action.
    resolved: dict[tuple[int, int, int | None, int | None], Addresses] = {}
    for hit in hits:
        delivered = False
        # Who hears of this action for the first time: its owner and agency lead, if nobody
        # has told them before (escalation wording says so, and claims no earlier reminder).
        own = _own(hit, directory) if hit.first else ()
        for notify in hit.notify:
            cache_key = (id(notify), hit.review_id, hit.agency_id, hit.owner_contact_id)
            if cache_key not in resolved:
                if len(resolved) >= ADDRESS_CACHE:
                    resolved.clear()
                resolved[cache_key] = _addresses(notify, hit.subject, directory)
            to, cc, missing = resolved[cache_key]
            for role in missing:
                gaps.setdefault((hit.rule, role), Gap(hit.rule, role)).hits.append(hit)
            review_key = hit.subject_id if hit.subject_type == "review" else None
            for address in (*to, *cc):
                delivered = True
                key = (notify.template, address, review_key)
                msg = messages.setdefault(
                    key, Message(hit.rule, [], notify.template, [address], [], False, [])
                )
                if not msg.hits or msg.hits[-1] is not hit:  # twice only within one hit
                    msg.hits.append(hit)
                if address in own:
                    msg.first.add(hit.subject_id)
                # Invitations go to the addressees of a calendar step, not to copies.
                msg.calendar = msg.calendar or (notify.calendar == "invite" and address in to)
                if (hit.step or "") not in msg.steps:
                    msg.steps.append(hit.step or "")
        if not delivered:
            unsent.append(hit)
    return list(messages.values()), list(gaps.values()), unsent


def _own(hit: Hit, directory: Directory) -> tuple[str, ...]:
    subject = hit.subject
    return (*directory.resolve("owner", subject), *directory.resolve("agency.lead", subject))


ADDRESS_CACHE = 4096
Addresses = tuple[list[str], list[str], list[str]]  # to, cc, roles that resolved to nobody


def _addresses(notify: Notify, subject: Subject, directory: Directory) -> Addresses:
    missing: list[str] = []

    def each(roles: list[str]) -> list[str]:
        found: list[str] = []
        for role in roles:
            resolved = directory.resolve(role, subject)
            if not resolved:
                missing.append(role)
            found += [a for a in resolved if a not in found]
        return found

    to, cc = each(notify.to), each(notify.cc)
    if not to:  # nobody to address it to: the copies become the addressees
        to, cc = cc, []
    return sorted(to), sorted(a for a in cc if a not in to), missing


# --- rendering -------------------------------------------------------------------------------


def _render(
    session: Session,
    messages: list[Message],
    ctx: Context,
    directory: Directory | None = None,
) -> None:
    directory = directory or Directory(session)
    for start in range(0, len(messages), RENDER_CHUNK):
        chunk = messages[start : start + RENDER_CHUNK]
        digests = [m for m in chunk if m.hits[0].subject_type != "review"]
        _render_digests(session, digests, ctx, directory)
        reports = [m for m in chunk if m.hits[0].subject_type == "review"]
        _render_reports(session, reports, ctx, directory)


def _set_rendered(msg: Message, rendered: Rendered) -> None:
    msg.rendered, msg.subject = rendered, rendered.subject


# Messages whose actions carry no "report progress / done / more time" links: the coordinator's
# checklist (it links the action pages) and calendar follow-ups.
NO_LINKS = {"needs_review", CALENDAR_TEMPLATE}


def _render_digests(
    session: Session, digests: list[Message], ctx: Context, directory: Directory
) -> None:
    # A digest lists at most LISTED actions ("and N more"): past that an email stops being
    # one clear reminder, and rendering stays cheap however large the backlog.
    wanted = {i for m in digests for i in m.action_ids[:LISTED]}
    rows = {r.id: r for r in action_rows(session, Action.id.in_(sorted(wanted)))} if wanted else {}
    for msg in digests:
        ids = msg.action_ids
        hits = {h.subject_id: h for h in msg.hits}
        listed = [
            _for_recipient(action_context(rows[i], ctx.today), hits[i], msg, ctx)
            for i in ids[:LISTED]
        ]
        refs = {a["review"] for a in listed}
        msg.review = refs.pop() if len(refs) == 1 and len(ids) <= LISTED else None
        context = {"actions": listed, "more": len(ids) - len(listed), "total": len(ids)}
        common = _common(msg, ctx, directory)
        _set_rendered(msg, ctx.templates.render(msg.template, common | context))


def _for_recipient(action: dict[str, Any], hit: Hit, msg: Message, ctx: Context) -> dict[str, Any]:
    """What one recipient's message says about one action: its page, their own links to act
    on it, whether this is the first they hear of it, and which reminders went before."""
    action["sent_steps"] = list(hit.sent)
    action["first_notice"] = hit.subject_id in msg.first
    action["page"] = f"{ctx.base_url}/actions/{hit.subject_id}" if ctx.base_url else None
    action["links"] = {}
    if ctx.base_url and msg.template not in NO_LINKS:
        for purpose in links.PURPOSES:
            made = links.make(hit.subject_id, msg.to[0], purpose)
            msg.links.append(made)
            action["links"][purpose] = ctx.base_url + links.path(made)
    return action


def _render_reports(
    session: Session, reports: list[Message], ctx: Context, directory: Directory
) -> None:
    # Review summaries a chunk of reviews at a time: a backlog of thousands of reports must
    # not hold every action of every review in memory at once.
    for start in range(0, len(reports), REVIEW_CHUNK):
        chunk = reports[start : start + REVIEW_CHUNK]
        summaries = review_contexts(session, chunk, ctx)
        pdfs: dict[str, Any] = {}  # one PDF per review, however many get its report
        for msg in chunk:
            summary = summaries[id(msg)]
            msg.review = summary["review"]["ref"]
            if msg.template == REPORT_TEMPLATE and ctx.report_attach_mb > 0:
                attached = _report_pdf(session, msg, ctx, pdfs)
                msg.attachment = attached.attachment
                summary = summary | {"attachment_line": attached.line}
            if msg.template in FAMILY_SAFE:
                summary = family_safe(summary)
            common = _common(msg, ctx, directory)
            _set_rendered(msg, ctx.templates.render(msg.template, common | summary))


REPORT_TEMPLATE = "partnership_report"


def _report_pdf(session: Session, msg: Message, ctx: Context, made: dict[str, Any]) -> Any:
    """The review's PDF report (as `report --review REF --format pdf` writes it) for its
    report email, made once per review and tick; larger than allowed: a sentence instead."""
    from dhr_workflow.reports.attach import partnership_report_pdf  # WeasyPrint: load late

    ref = msg.review or ""
    if ref not in made:
        made[ref] = partnership_report_pdf(
            session, review=ref, as_of=ctx.today, since=_since(msg, ctx.today), tz=ctx.tz,
            partnership=ctx.partnership, marking=ctx.report_marking,
            limit_mb=ctx.report_attach_mb,
        )  # fmt: skip
    return made[ref]


# Messages rendered (and, in commit, written and let go) at a time: the rows they list and
# their bodies are held for one chunk, not for a whole catch-up tick.
RENDER_CHUNK = 50
REVIEW_CHUNK = 100
LISTED = 50


def _common(msg: Message, ctx: Context, directory: Directory) -> dict[str, Any]:
    """What every message says: who it is for, and whom to answer (the review's coordinator,
    also its Reply-To; the partnership's when the message spans several reviews)."""
    reviews = {h.review_id for h in msg.hits}
    found = directory.coordinator(reviews.pop() if len(reviews) == 1 else None)
    coordinator = {"name": found[0], "email": found[1]} if found else None
    msg.reply_to = found[1] if found else None
    recipient = msg.to[0]
    return {
        "rule": msg.rule,
        "step": ",".join(msg.steps),
        "today": ctx.today,
        "partnership": ctx.partnership,
        "coordinator": coordinator,
        "recipient": {"name": directory.name(recipient), "email": recipient},
        "web": ctx.base_url,
        "more": 0,
    }


def action_rows(
    session: Session, *where: Any, order: Any = None, limit: int | None = None
) -> Sequence[Row[*tuple[Any, ...]]]:
    """The columns messages show, as plain rows (no ORM objects: digests can be large)."""
    rec = aliased(Recommendation)
    stmt = (
        select(
            Action.id,
            Review.ref.label("review"),
            rec.ref.label("recommendation"),
            rec.text.label("rec_text"),
            Action.ref,
            Action.text,
            Agency.name.label("agency"),
            Action.owner_text,
            Contact.name.label("owner_name"),
            Action.due_date,
            Action.target_text,
            Action.status,
            Action.completed_on,
            Action.review_reasons,
        )
        .join(Review, Review.id == Action.review_id)
        .outerjoin(rec, rec.id == Action.recommendation_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .outerjoin(Contact, Contact.id == Action.owner_contact_id)
        .where(*where)
        .order_by(*(order if order is not None else (Action.id,)))
        .limit(limit)
    )
    return session.execute(stmt).all()


def action_context(row: Row[*tuple[Any, ...]], today: dt.date) -> dict[str, Any]:
    text = " ".join((row.text or row.rec_text or "").split())
    due = row.due_date
    return {
        "id": row.id, "review": row.review, "recommendation": row.recommendation,
        "ref": row.ref or row.recommendation or "", "text": text,
        "text_short": shorten(text, TEXT_SHORT),
        "rec_text": " ".join((row.rec_text or "").split()),
        "lead_agency": row.agency, "owner": row.owner_text or row.owner_name,
        "due_date": due, "days": (due - today).days if due else None,
        "target_text": row.target_text, "status": row.status,
        "completed_on": row.completed_on, "reasons": list(row.review_reasons or []),
        # set per recipient in digests (_for_recipient)
        "first_notice": False, "links": {}, "page": None,
    }  # fmt: skip


def shorten(text: str, width: int) -> str:
    """At most ``width`` characters, cut between words (never mid-word), with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:.-") + "…"


def review_contexts(
    session: Session, messages: list[Message], ctx: Context
) -> dict[int, dict[str, Any]]:
    """The partnership report's and family update's summary of each message's review: counts
    by status, and the overdue, recently completed, due-soon and needs-review lists (each
    capped at LISTED, with its full count). One query for all the reviews of a tick."""
    ids = sorted({m.hits[0].subject_id for m in messages})
    if not ids:
        return {}
    reviews = {r.id: r for r in session.scalars(select(Review).where(Review.id.in_(ids)))}
    by_review: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in action_rows(session, Action.review_id.in_(ids)):
        by_review[row.review].append(action_context(row, ctx.today))
    earliest = min(_since(m, ctx.today) for m in messages)
    notes = _progress(session, ids, dt.datetime.combine(earliest, dt.time(), ctx.tz), ctx.at)
    # The audit log's head in the chair's report: a copy kept outside the database (an anchor).
    found = audit.head(session)
    head = {"seq": found.seq, "hash": found.hash} if found else None
    summaries = {}
    for m in messages:
        review = reviews[m.hits[0].subject_id]
        summary = _summary(review, by_review, m, ctx.today)
        since = _since(m, ctx.today)
        items = [n for n in notes.get(review.id, []) if n["at"].astimezone(ctx.tz).date() >= since]
        summary["progress_since"], summary["progress_since_count"] = items[:LISTED], len(items)
        summary["audit_head"] = head
        summaries[id(m)] = summary
    return summaries


def _since(msg: Message, today: dt.date) -> dt.date:
    """The start of the period a report covers (its previous occurrence, else six months)."""
    return msg.hits[0].since or add_months(today, -6)


def _progress(
    session: Session, review_ids: list[int], since: dt.datetime, until: dt.datetime
) -> dict[int, list[dict[str, Any]]]:
    """Progress notes from ``since`` up to the report's own time, newest first, per review
    (for "Progress since the last report")."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = session.execute(
        select(
            Action.review_id,
            Action.id,
            Action.ref,
            ActionUpdate.at,
            ActionUpdate.note,
            ActionUpdate.author,
            Agency.name,
        )
        .join(Action, Action.id == ActionUpdate.action_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .where(Action.review_id.in_(review_ids), ActionUpdate.at >= since, ActionUpdate.at <= until)
        .order_by(ActionUpdate.at.desc(), ActionUpdate.id.desc())
    )
    for review_id, action_id, ref, at, note, author, agency in rows:
        found[review_id].append(
            {"id": action_id, "ref": ref or str(action_id), "at": at, "note": note,
             "note_short": shorten(" ".join(note.split()), TEXT_SHORT), "author": author,
             "lead_agency": agency}
        )  # fmt: skip
    return found


def _summary(
    review: Review, by_review: dict[str, list[dict[str, Any]]], msg: Message, today: dt.date
) -> dict[str, Any]:
    listed = by_review.get(review.ref, [])
    closed = {s.value for s in CLOSED_STATUSES}
    counts = {s.value: sum(1 for a in listed if a["status"] == s) for s in ActionStatus}
    counts["total"] = len(listed)
    counts["open"] = counts["open"] + counts["in_progress"]
    since = _since(msg, today)
    horizon = add_months(today, 6)
    active = [a for a in listed if a["status"] not in closed]
    groups = {
        "overdue": sorted(
            (a for a in active if a["due_date"] and a["due_date"] < today),
            key=lambda a: a["due_date"],
        ),
        "completed_since": sorted(
            (
                a
                for a in listed
                if a["status"] == ActionStatus.COMPLETED
                and a["completed_on"]
                and a["completed_on"] >= since
            ),
            key=lambda a: a["completed_on"],
        ),
        "due_soon": sorted(
            (a for a in active if a["due_date"] and today <= a["due_date"] <= horizon),
            key=lambda a: a["due_date"],
        ),
        "needs_review": [a for a in active if a["reasons"]],
    }
    context: dict[str, Any] = {
        "review": {"ref": review.ref, "title": review.title, "partnership": review.partnership},
        "counts": counts,
    }
    for name, items in groups.items():
        context[name], context[f"{name}_count"] = items[:LISTED], len(items)
    return context


# --- writing ---------------------------------------------------------------------------------

Key = tuple[str, str, int, str]


def _key(hit: Hit) -> Key:
    return (hit.rule, hit.subject_type, hit.subject_id, hit.period_key)


def commit(session: Session, result: TickResult, ctx: Context, *, actor: str) -> TickResult:
    """Record the tick: ledger rows first (the claim), then only the messages whose firings
    this process won, so concurrent replicas never enqueue the same reminder twice. Messages
    are rendered (those evaluate left unrendered), enqueued and audited RENDER_CHUNK at a
    time; the bodies commit rendered itself are let go once in the outbox (subject kept)."""
    now = ctx.at
    _move_marks(session, result.rules, now)
    lost = _claim(session, _firing_rows(result.messages, now))
    directory = Directory(session)
    kept: list[Message] = []
    for start in range(0, len(result.messages), RENDER_CHUNK):
        chunk = result.messages[start : start + RENDER_CHUNK]
        lazy = {id(m) for m in chunk if m.rendered is None}
        mine = _won(chunk, lost)  # another replica took some firings: those re-render
        _render(session, [m for m in mine if m.rendered is None], ctx, directory)
        events = [_enqueued(session, msg, ctx) for msg in mine]
        audit.record_many(session, now=now, actor=actor, events=events)
        for msg in mine:
            msg.links = []  # stored (hashed) with the message; the secrets go no further
            msg.attachment = None  # in the outbox row
            if id(msg) in lazy:
                msg.rendered = None  # the outbox row holds the bodies now
        kept += mine
    _record_superseded(session, result.hits, now)
    events = _new_gaps(session, result.gaps, now)
    events.append(
        (
            "tick",
            "rules",
            {
                "at": result.at,
                "messages": len(kept),
                "superseded": result.superseded,
                "gaps": len(result.gaps),
            },
        )
    )
    audit.record_many(session, now=now, actor=actor, events=events)
    result.messages = kept
    return result


def _move_marks(session: Session, rules: list[str], at: dt.datetime) -> None:
    """Time only moves forward: refuse a tick earlier than the latest committed tick of any of
    its rules (a clock set back, `tick --at` in the past), else move their marks to ``at``.

    An earlier tick would find other periods than the later one did — a report's older
    occurrence, an escalation's earlier repeat window — and send them again, with older
    figures; superseded steps could come back. A dry run (no commit) may look at any time."""
    if not rules:
        return
    found = session.execute(
        select(TickMark.rule_id, TickMark.at).where(TickMark.rule_id.in_(rules))
    ).all()
    later = sorted((m.at, m.rule_id) for m in found if m.at > at)
    if later:
        mark, rule = later[-1]
        raise TimeWentBack(
            f"tick at {at.isoformat()} is earlier than the last committed tick of rule {rule} "
            f"({mark.isoformat()}): time only moves forward, so nothing was sent; "
            "use --dry-run to see what it would have sent",
            behind=(mark - at).total_seconds(),
        )
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(TickMark).values([{"rule_id": r, "at": at} for r in rules])
    # Two replicas ticking a moment apart: the mark keeps the later time, whoever commits last.
    later_of = func.max if dialect is sqlite else func.greatest
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rule_id"], set_={"at": later_of(TickMark.at, stmt.excluded.at)}
        )
    )


def _firing_rows(messages: list[Message], now: dt.datetime) -> Iterator[dict[str, Any]]:
    """A "fired" ledger row per hit of the messages, once (a hit is in every message of its
    recipients), generated as the claim consumes them."""
    seen: set[int] = set()
    for msg in messages:
        for hit in msg.hits:
            if id(hit) not in seen:
                seen.add(id(hit))
                yield _row(hit, hit.period_key, hit.step, "fired", now)


def _won(messages: list[Message], lost: set[Key]) -> list[Message]:
    """The messages with the hits this process claimed; one that lost some must re-render."""
    if not lost:
        return messages
    mine = []
    for msg in messages:
        hits = [h for h in msg.hits if _key(h) not in lost]
        if len(hits) < len(msg.hits):
            msg.hits, msg.rendered = hits, None
        if hits:
            mine.append(msg)
    return mine


def _row(hit: Hit, period: str, step: str | None, outcome: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "rule_id": hit.rule,
        "subject_type": hit.subject_type,
        "subject_id": hit.subject_id,
        "period_key": period,
        "step": step,
        "outcome": outcome,
        "fired_at": now,
    }


def _insert_new_firings(session: Session) -> Any:
    """INSERT into the ledger that skips rows whose (rule, subject, period) is already there."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(Firing).on_conflict_do_nothing(
        index_elements=["rule_id", "subject_type", "subject_id", "period_key"]
    )


def _claim(session: Session, rows: Iterable[dict[str, Any]]) -> set[Key]:
    """Insert ledger rows 500 at a time, skipping any already there; returns the keys that
    were already there (another replica's claim: normally none), so a large tick keeps no
    set of everything it won."""
    stmt = _insert_new_firings(session).returning(
        Firing.rule_id, Firing.subject_type, Firing.subject_id, Firing.period_key
    )
    lost: set[Key] = set()
    for batch in _batches(rows, 500):
        unique = {_row_key(r): r for r in batch}
        won = {tuple(r) for r in session.execute(stmt, list(unique.values()))}
        lost |= unique.keys() - won
    return lost


def _row_key(row: dict[str, Any]) -> Key:
    return (row["rule_id"], row["subject_type"], row["subject_id"], row["period_key"])


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _record_superseded(session: Session, hits: list[Hit], now: dt.datetime) -> None:
    """Ledger rows for skipped lower steps, streamed in chunks (a first tick over a large
    backlog can skip hundreds of thousands)."""
    stmt = _insert_new_firings(session)
    chunk: list[dict[str, Any]] = []
    for hit in hits:
        for key in hit.superseded:
            chunk.append(_row(hit, key, key.split("|", 1)[-1], "superseded", now))
            if len(chunk) == 500:
                session.execute(stmt, chunk)
                chunk = []
    if chunk:
        session.execute(stmt, chunk)


def _new_gaps(
    session: Session, gaps: list[Gap], now: dt.datetime
) -> list[tuple[str, str, dict[str, Any]]]:
    """Audit each gap once per firing period (a ledger row marks it reported)."""
    events = []
    for gap in gaps:
        rows = [_row(h, f"{h.period_key}#gap:{gap.role}", h.step, "gap", now) for h in gap.hits]
        # Once per key (a hit can miss the same role in two notify steps), and claimed as a
        # whole: a repeat in a later batch would read as reported before.
        unique = list({_row_key(r): r for r in rows}.values())
        seen = _claim(session, unique)  # reported by an earlier tick (or another replica)
        fresh = [
            h
            for h in gap.hits
            if (h.rule, h.subject_type, h.subject_id, f"{h.period_key}#gap:{gap.role}") not in seen
        ]
        if fresh:
            events.append(
                ("rule.gap", f"rule:{gap.rule}", Gap(gap.rule, gap.role, fresh).to_json())
            )
    return events


def _enqueued(session: Session, msg: Message, ctx: Context) -> tuple[str, str, dict[str, Any]]:
    assert msg.rendered is not None
    note = Notification(
        rule_id=msg.rule,
        template=msg.template,
        to_addrs=msg.to,
        cc_addrs=msg.cc,
        subject=msg.rendered.subject,
        text_body=msg.rendered.text,
        html_body=msg.rendered.html,
        calendar=_invitations(session, msg, ctx),
        message_id=f"<{uuid.uuid4().hex}@dhr-workflow>",
        reply_to=msg.reply_to,
        attachment_name=msg.attachment.filename if msg.attachment else None,
        attachment=msg.attachment.content if msg.attachment else None,
        state="pending",
        attempts=0,
        next_attempt_at=ctx.at,
        created_at=ctx.at,
    )
    session.add(note)
    session.flush()
    links.store(session, msg.links, now=ctx.at)
    link = (
        update(typing_cast(Table, Firing.__table__))
        .where(
            Firing.rule_id == bindparam("k_rule"),
            Firing.subject_type == bindparam("k_type"),
            Firing.subject_id == bindparam("k_id"),
            Firing.period_key == bindparam("k_period"),
        )
        .values(notification_id=note.id)
    )
    # 500 at a time: a coordinator's digest over a large backlog links tens of thousands.
    for start in range(0, len(msg.hits), 500):
        session.execute(
            link,
            [
                {"k_rule": r, "k_type": t, "k_id": i, "k_period": p}
                for r, t, i, p in (_key(h) for h in msg.hits[start : start + 500])
            ],
        )
    return (
        "notification.enqueue",
        f"notification:{note.id}",
        {**msg.to_json(), "message_id": note.message_id},
    )


def _invitations(session: Session, msg: Message, ctx: Context) -> str | None:
    """The calendar parts of a message, one per dated action, and the record of who was
    invited to what (so later changes can follow)."""
    if not msg.calendar:
        return None
    parts = []
    for fact, cancel in _event_facts(session, msg.action_ids):
        if cancel and msg.template != CALENDAR_TEMPLATE:
            continue  # never invite anyone to a finished or undated action
        parts.append(
            calendar.invitation(
                fact,
                method="CANCEL" if cancel else "REQUEST",
                organizer=ctx.mail_from,
                attendees=msg.to,
                stamp=ctx.at,
            )
        )
        for address in msg.to:
            _remember(session, fact, address, "cancelled" if cancel else "active", ctx.at)
    return json.dumps(parts) if parts else None


def _event_facts(session: Session, ids: list[int]) -> list[tuple[calendar.EventFacts, bool]]:
    """Each action's calendar facts, and whether its entry must now be cancelled (finished,
    or no longer dated: then it is cancelled at the date people last saw)."""
    rows = session.execute(
        select(
            Action.id,
            Action.sequence,
            Action.due_date,
            Action.status,
            Review.ref,
            Action.ref.label("action_ref"),
            Agency.name,
        )
        .join(Review, Review.id == Action.review_id)
        .outerjoin(Agency, Agency.id == Action.lead_agency_id)
        .where(Action.id.in_(ids))
        .order_by(Action.id)
    ).all()
    seen = dict(
        session.execute(
            select(Invitation.action_id, Invitation.due_date).where(Invitation.action_id.in_(ids))
        ).all()
    )
    closed = {s.value for s in CLOSED_STATUSES}
    facts = []
    for r in rows:
        day = r.due_date or seen.get(r.id)
        if day is None:
            continue
        fact = calendar.EventFacts(r.id, r.sequence, day, r.ref, r.action_ref or str(r.id), r.name)
        facts.append((fact, r.status in closed or r.due_date is None))
    return facts


def _remember(
    session: Session, fact: calendar.EventFacts, address: str, state: str, now: dt.datetime
) -> None:
    found = session.scalar(
        select(Invitation).where(
            Invitation.action_id == fact.action_id, Invitation.address == address
        )
    )
    if found is None:
        session.add(
            Invitation(
                action_id=fact.action_id,
                address=address,
                sequence=fact.sequence,
                due_date=fact.due_date,
                state=state,
                updated_at=now,
            )
        )
    else:
        found.sequence, found.due_date, found.state, found.updated_at = (
            fact.sequence,
            fact.due_date,
            state,
            now,
        )
