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
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import audit
from dhr_workflow.durations import Offset, latest_fire_time, parse_cron
from dhr_workflow.models import Action, ActionStatus, Firing, Notification, Review
from dhr_workflow.recipients import Directory, Subject
from dhr_workflow.ruleset import Every, Ladder, Notify, Rule, RuleSet, load_dir
from dhr_workflow.selection import action_clauses, review_clauses
from dhr_workflow.targets import add_months
from dhr_workflow.templates import Rendered, Templates

TEXT_SHORT = 160  # characters of action text in a message


@dataclass(frozen=True)
class Hit:
    """One rule firing for one subject in one period (not yet written)."""

    rule: str
    subject_type: str
    subject_id: int
    period_key: str
    step: str | None
    notify: tuple[Notify, ...]
    subject: Subject
    superseded: tuple[str, ...] = ()  # lower period keys recorded without a message


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
            "subject": self.rendered.subject if self.rendered else None,
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

    @property
    def today(self) -> dt.date:
        return self.at.astimezone(self.tz).date()


def load_rules(rules_dir: Path, templates_dir: Path, tz: ZoneInfo) -> tuple[RuleSet, Templates]:
    """The rule set and its templates, fully checked: every template a rule names exists and
    renders against a sample, so a broken one is found now, not when it is due to send."""
    templates = Templates(templates_dir)
    ruleset = load_dir(rules_dir, tz=tz, templates=templates.names())
    templates.check(ruleset.templates())
    return ruleset, templates


# --- evaluation ------------------------------------------------------------------------------


def evaluate(
    session: Session, ruleset: RuleSet, ctx: Context, only: Sequence[str] | None = None
) -> TickResult:
    """Everything that should fire at ``ctx.at``, grouped and rendered. Writes nothing."""
    hits: list[Hit] = []
    for ladder in ruleset.ladders:
        if only is None or ladder.id in only:
            hits += _ladder_hits(session, ladder, ctx)
    for rule in ruleset.rules:
        if only is None or rule.id in only:
            hits += _rule_hits(session, rule, ctx)
    directory = Directory(session)
    messages, gaps, unsent = _group(hits, directory)
    _render(session, messages, ctx)
    return TickResult(ctx.at, messages, gaps, hits, unsent)


def _fired_keys(session: Session, rule_id: str, subject_type: str) -> set[tuple[int, str]]:
    rows = session.execute(
        select(Firing.subject_id, Firing.period_key).where(
            Firing.rule_id == rule_id, Firing.subject_type == subject_type
        )
    )
    return {(r.subject_id, r.period_key) for r in rows}


def _ladder_hits(session: Session, ladder: Ladder, ctx: Context) -> list[Hit]:
    today = ctx.today
    earliest = ladder.steps[0].at
    # Nothing is reached before the first step: bound the due dates in SQL.
    horizon = today + dt.timedelta(days=earliest.max_days() if earliest.n < 0 else 0)
    clauses = action_clauses(
        session, ladder.applies_to, today=today, now=ctx.at, tz=ctx.tz, region=ctx.region
    )
    rows = session.execute(
        select(
            Action.id,
            Action.due_date,
            Action.review_id,
            Action.lead_agency_id,
            Action.owner_contact_id,
        ).where(*clauses, Action.due_date.is_not(None), Action.due_date <= horizon)
    ).all()
    fired = _fired_keys(session, ladder.id, "action")
    hits = []
    for row in rows:
        keys = _reached(ladder, row.due_date, today, ctx.region)
        if not keys or (row.id, keys[-1][0]) in fired:
            continue
        period, step = keys[-1]
        lower = tuple(k for k, _ in keys[:-1] if (row.id, k) not in fired)
        hits.append(
            Hit(
                ladder.id,
                "action",
                row.id,
                period,
                step,
                tuple(ladder.steps[_step_index(ladder, step)].notify),
                Subject(row.review_id, row.lead_agency_id, row.owner_contact_id),
                superseded=lower,
            )
        )
    return hits


def _step_index(ladder: Ladder, label: str) -> int:
    return next(i for i, s in enumerate(ladder.steps) if str(s.at) == label)


def _reached(ladder: Ladder, due: dt.date, today: dt.date, region: str) -> list[tuple[str, str]]:
    """(period key, step label) of every step reached by ``today``, in order."""
    keys = []
    for step in ladder.steps:
        when = step.at.apply(due, region)
        if when > today:
            break
        keys.append((f"{due.isoformat()}|{step.at}", str(step.at)))
        if step.repeat is not None:
            keys += _repeats(due, step.at, step.repeat, when, today, region)
    return keys


def _repeats(
    due: dt.date, at: Offset, every: Offset, start: dt.date, today: dt.date, region: str
) -> list[tuple[str, str]]:
    out, k, when = [], 1, every.apply(start, region)
    while when <= today:
        out.append((f"{due.isoformat()}|{at}|r{k}", str(at)))
        k, when = k + 1, every.apply(when, region)
    return out


def _rule_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    if rule.scope == "review":
        return _review_hits(session, rule, ctx)
    assert isinstance(rule.schedule, str)
    slot = latest_fire_time(parse_cron(rule.schedule, ctx.tz), ctx.at)
    if slot is None:
        return []
    period = slot.astimezone(dt.UTC).isoformat()
    clauses = action_clauses(
        session, rule.applies_to, today=ctx.today, now=ctx.at, tz=ctx.tz, region=ctx.region
    )
    rows = session.execute(
        select(Action.id, Action.review_id, Action.lead_agency_id, Action.owner_contact_id).where(
            *clauses
        )
    ).all()
    fired = _fired_keys(session, rule.id, "action")
    return [
        Hit(
            rule.id,
            "action",
            r.id,
            period,
            None,
            tuple(rule.notify),
            Subject(r.review_id, r.lead_agency_id, r.owner_contact_id),
        )
        for r in rows
        if (r.id, period) not in fired
    ]


def _review_hits(session: Session, rule: Rule, ctx: Context) -> list[Hit]:
    reviews = session.scalars(select(Review).where(*review_clauses(rule.applies_to))).all()
    fired = _fired_keys(session, rule.id, "review")
    hits = []
    for review in reviews:
        period = _review_period(rule, review, ctx)
        if period is not None and (review.id, period) not in fired:
            hits.append(
                Hit(
                    rule.id,
                    "review",
                    review.id,
                    period,
                    None,
                    tuple(rule.notify),
                    Subject(review.id),
                )
            )
    return hits


def _review_period(rule: Rule, review: Review, ctx: Context) -> str | None:
    if isinstance(rule.schedule, str):
        slot = latest_fire_time(parse_cron(rule.schedule, ctx.tz), ctx.at)
        return slot.astimezone(dt.UTC).isoformat() if slot else None
    occurrence = latest_occurrence(rule.schedule, getattr(review, rule.schedule.anchor), ctx.today)
    return occurrence.isoformat() if occurrence else None


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
    messages: dict[tuple[Any, ...], Message] = {}
    gaps: dict[tuple[str, str], Gap] = {}
    unsent = []
    for hit in hits:
        delivered = False
        for notify in hit.notify:
            to, cc, missing = _addresses(notify, hit.subject, directory)
            for role in missing:
                gaps.setdefault((hit.rule, role), Gap(hit.rule, role)).hits.append(hit)
            if not to:
                continue
            delivered = True
            review_key = hit.subject_id if hit.subject_type == "review" else None
            key = (hit.rule, notify.template, tuple(to), tuple(cc), review_key)
            msg = messages.setdefault(
                key, Message(hit.rule, [], notify.template, to, cc, notify.calendar == "invite", [])
            )
            msg.hits.append(hit)
            msg.calendar = msg.calendar or notify.calendar == "invite"
            if hit.step not in msg.steps:
                msg.steps.append(hit.step or "")
        if not delivered:
            unsent.append(hit)
    return list(messages.values()), list(gaps.values()), unsent


def _addresses(
    notify: Notify, subject: Subject, directory: Directory
) -> tuple[list[str], list[str], list[str]]:
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


def _render(session: Session, messages: list[Message], ctx: Context) -> None:
    ids = {i for m in messages for i in m.action_ids}
    actions = (
        {
            a.id: a
            for a in session.scalars(
                select(Action)
                .where(Action.id.in_(ids))
                .options(
                    joinedload(Action.review),
                    joinedload(Action.recommendation),
                    joinedload(Action.lead_agency),
                    joinedload(Action.owner_contact),
                )
            )
        }
        if ids
        else {}
    )
    for msg in messages:
        if msg.hits[0].subject_type == "review":
            review = session.get_one(Review, msg.hits[0].subject_id)
            msg.review = review.ref
            context = review_context(session, review, msg, ctx)
        else:
            listed = [actions[i] for i in msg.action_ids]
            refs = {a.review.ref for a in listed}
            msg.review = refs.pop() if len(refs) == 1 else None
            context = {"actions": [action_context(a, ctx.today) for a in listed]}
        msg.rendered = ctx.templates.render(msg.template, _common(msg, ctx) | context)


def _common(msg: Message, ctx: Context) -> dict[str, Any]:
    return {
        "rule": msg.rule,
        "step": ",".join(msg.steps),
        "today": ctx.today,
        "partnership": ctx.partnership,
        "coordinator": None,
    }


def action_context(action: Action, today: dt.date) -> dict[str, Any]:
    text = " ".join(
        (action.text or (action.recommendation.text if action.recommendation else "")).split()
    )
    owner = action.owner_text or (action.owner_contact.name if action.owner_contact else None)
    return {
        "id": action.id, "review": action.review.ref,
        "recommendation": action.recommendation.ref if action.recommendation else None,
        "ref": action.ref or (action.recommendation.ref if action.recommendation else ""),
        "text": text,
        "text_short": text if len(text) <= TEXT_SHORT else text[: TEXT_SHORT - 1] + "…",
        "lead_agency": action.lead_agency.name if action.lead_agency else None,
        "owner": owner, "due_date": action.due_date,
        "days": (action.due_date - today).days if action.due_date else None,
        "target_text": action.target_text, "status": action.status,
        "completed_on": action.completed_on, "reasons": list(action.review_reasons),
    }  # fmt: skip


def review_context(session: Session, review: Review, msg: Message, ctx: Context) -> dict[str, Any]:
    """The partnership report's and family update's summary of one review."""
    today = ctx.today
    rows = session.scalars(
        select(Action)
        .where(Action.review_id == review.id)
        .options(
            joinedload(Action.review),
            joinedload(Action.recommendation),
            joinedload(Action.lead_agency),
            joinedload(Action.owner_contact),
        )
    ).all()
    listed = [action_context(a, today) for a in rows]
    counts = {s.value: sum(1 for a in rows if a.status == s) for s in ActionStatus}
    counts["total"] = len(rows)
    counts["open"] = counts["open"] + counts["in_progress"]
    since = _since(msg, review, today)
    closed = (ActionStatus.COMPLETED, ActionStatus.WITHDRAWN)
    six_months = add_months(today, 6)
    return {
        "review": {"ref": review.ref, "title": review.title, "partnership": review.partnership},
        "counts": counts,
        "overdue": [a for a in listed if a["status"] not in closed and a["days"] is not None
                    and a["days"] < 0],
        "completed_since": [a for a in listed if a["status"] == ActionStatus.COMPLETED
                            and a["completed_on"] and a["completed_on"] >= since],
        "due_soon": [a for a in listed if a["status"] not in closed and a["due_date"]
                     and today <= a["due_date"] <= six_months],
        "needs_review": [a for a in listed if a["reasons"] and a["status"] not in closed],
    }  # fmt: skip


def _since(msg: Message, review: Review, today: dt.date) -> dt.date:
    # "Since the last report": the previous occurrence of a recurring rule, else six months.
    period = msg.hits[0].period_key
    try:
        occurrence = dt.date.fromisoformat(period)
    except ValueError:
        return add_months(today, -6)
    return (
        add_months(occurrence, -6)
        if review.plan_agreed_on is None
        else max(review.plan_agreed_on, add_months(occurrence, -6))
    )


# --- writing ---------------------------------------------------------------------------------

Key = tuple[str, str, int, str]


def _key(hit: Hit) -> Key:
    return (hit.rule, hit.subject_type, hit.subject_id, hit.period_key)


def commit(session: Session, result: TickResult, ctx: Context, *, actor: str) -> TickResult:
    """Record the tick: ledger rows first (the claim), then only the messages whose firings
    this process won, so concurrent replicas never enqueue the same reminder twice."""
    now = ctx.at
    won = _claim(
        session,
        [_row(h, h.period_key, h.step, "fired", now) for m in result.messages for h in m.hits],
    )
    kept, shrunk = [], []
    for msg in result.messages:
        before = len(msg.hits)
        msg.hits = [h for h in msg.hits if _key(h) in won]
        if msg.hits:
            kept.append(msg)
            if len(msg.hits) < before:
                shrunk.append(msg)
    _render(session, shrunk, ctx)  # another replica took some of its actions
    _claim(
        session,
        [
            _row(h, key, key.split("|", 1)[-1], "superseded", now)
            for h in result.hits
            for key in h.superseded
        ],
    )
    events = [_enqueued(session, msg, now) for msg in kept]
    events += _new_gaps(session, result.gaps, now)
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


def _claim(session: Session, rows: list[dict[str, Any]]) -> set[Key]:
    """Insert ledger rows, skipping any already there; returns the keys this call inserted."""
    unique = list(
        {
            (r["rule_id"], r["subject_type"], r["subject_id"], r["period_key"]): r for r in rows
        }.values()
    )
    if not unique:
        return set()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(Firing)
        .on_conflict_do_nothing(
            index_elements=["rule_id", "subject_type", "subject_id", "period_key"]
        )
        .returning(Firing.rule_id, Firing.subject_type, Firing.subject_id, Firing.period_key)
    )
    won: set[Key] = set()
    for start in range(0, len(unique), 500):
        for r in session.execute(stmt, unique[start : start + 500]):
            won.add((r.rule_id, r.subject_type, r.subject_id, r.period_key))
    return won


def _new_gaps(
    session: Session, gaps: list[Gap], now: dt.datetime
) -> list[tuple[str, str, dict[str, Any]]]:
    """Audit each gap once per firing period (a ledger row marks it reported)."""
    events = []
    for gap in gaps:
        rows = [_row(h, f"{h.period_key}#gap:{gap.role}", h.step, "gap", now) for h in gap.hits]
        won = _claim(session, rows)
        fresh = [
            h
            for h in gap.hits
            if (h.rule, h.subject_type, h.subject_id, f"{h.period_key}#gap:{gap.role}") in won
        ]
        if fresh:
            events.append(
                ("rule.gap", f"rule:{gap.rule}", Gap(gap.rule, gap.role, fresh).to_json())
            )
    return events


def _enqueued(session: Session, msg: Message, now: dt.datetime) -> tuple[str, str, dict[str, Any]]:
    assert msg.rendered is not None
    note = Notification(
        rule_id=msg.rule,
        template=msg.template,
        to_addrs=msg.to,
        cc_addrs=msg.cc,
        subject=msg.rendered.subject,
        text_body=msg.rendered.text,
        html_body=msg.rendered.html,
        calendar=None,
        message_id=f"<{uuid.uuid4().hex}@dhr-workflow>",
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(note)
    session.flush()
    for rule, kind, subject_id, period in (_key(h) for h in msg.hits):
        session.execute(
            update(Firing)
            .where(
                Firing.rule_id == rule,
                Firing.subject_type == kind,
                Firing.subject_id == subject_id,
                Firing.period_key == period,
            )
            .values(notification_id=note.id)
        )
    return (
        "notification.enqueue",
        f"notification:{note.id}",
        {**msg.to_json(), "message_id": note.message_id},
    )
