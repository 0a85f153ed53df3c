"""Parsed plan rows into the store: a plan of changes first (pure), then the writes.

Re-importing the same file changes nothing; a revised plan updates the actions whose words
changed (audited with before and after) and never duplicates one. What the plan owns — texts,
holder, milestones, target words, outcome, lead agency — follows the file. What the coordinator
owns survives: a due date set by hand stays unless the plan's target words change, and an action
completed in the store is never reopened by an older plan.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Literal, cast

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import actions, agencies, audit, batching, reviews
from dhr_workflow.actions import AGENCY_PREFIX, AGENCY_REASON
from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer import export
from dhr_workflow.importer.parse import ParsedPlan, PlanRow
from dhr_workflow.importer.text import clean
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    Agency,
    Recommendation,
    Review,
)
from dhr_workflow.targets import read_outcome, read_target

CHANGED_AFTER_COMPLETION = "status: the plan's text for this completed action changed; check it"
# Fields a plan decides; compared on re-import. Due fields only move when target words do.
# Plan-owned columns of an action; the lead agency is compared by name on top of these.
ACTION_PLAN_FIELDS = ("text", "owner_text", "milestones", "target_text", "outcome")
PLAN_FIELDS = (*ACTION_PLAN_FIELDS, "lead_agency")
DUE_FIELDS = ("due_date", "due_basis", "due_rule")
AgencyKey = Callable[[str | None], str | None]


@dataclass
class Change:
    kind: Literal["create", "update", "unchanged"]
    row: PlanRow
    values: dict[str, Any]
    action_id: int | None = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    # The action's corrections after this import, when the plan has overtaken some of them.
    overrides: dict[str, Any] | None = None
    agency: agencies.Match | None = None  # how the plan's agency name was understood
    keyed: bool = False  # matched by an export's action key, not by section|rec|index
    rec_touched: bool = False  # a keyed row whose recommendation text or scope was corrected

    def summary(self) -> dict[str, Any]:
        reasons = self.values["review_reasons"]
        return {
            "kind": self.kind, "action_id": self.action_id, "section": self.row.section,
            "recommendation": self.row.rec_ref, "ref": self.row.ref, "line": self.row.line,
            "display_ref": self.row.display_ref,
            "lead_agency": self.values["lead_agency"], "status": self.values["status"],
            "due_date": _iso(self.values["due_date"]), "target_text": self.values["target_text"],
            "needs_review": bool(reasons), "review_reasons": reasons,
            "changed": audit.to_jsonable(self.after) if self.kind == "update" else {},
            "owner": self.values["owner_text"],
            "agency_match": self.agency.to_json() if self.agency else None,
        }  # fmt: skip


@dataclass
class ImportReport:
    review: str
    review_created: bool
    source: str
    changes: list[Change]
    missing: list[tuple[int, str]]  # (action id, ref) in the store but not in this file
    ignored: list[tuple[int, str]]

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def needs_review(self) -> list[Change]:
        return [c for c in self.changes if c.values["review_reasons"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "review": self.review, "review_created": self.review_created, "file": self.source,
            "created": self.count("create"), "updated": self.count("update"),
            "unchanged": self.count("unchanged"),
            "actions": [c.summary() for c in self.changes],
            "needs_review": [
                {"ref": c.row.ref, "display_ref": c.row.display_ref, "section": c.row.section,
                 "line": c.row.line, "reasons": c.values["review_reasons"]}
                for c in self.needs_review()
            ],
            "not_in_file": [{"action_id": i, "ref": r} for i, r in self.missing],
            "ignored_lines": [{"line": n, "why": w} for n, w in self.ignored],
            "understood": understood(self).to_json(),
        }  # fmt: skip


# How a change's due date was read, for the report: a date in words, one counted from a
# review date, a repeating one, none where one is needed, none because it is completed.
DATE_KINDS = ("parsed", "relative", "recurring", "missing", "completed")
_PARSED_BASES = ("fixed", "month_end", "season")


@dataclass(frozen=True)
class Understood:
    """What an import understood of a plan, for the dry run and the web preview."""

    rows_read: int
    rows_ignored: int
    recommendations: list[tuple[str, str, list[Change]]]  # (section, ref, its actions)
    agencies: dict[str, list[agencies.Match]]  # by match kind, one per name as written
    dates: dict[str, int]  # by DATE_KINDS

    def agency_counts(self) -> dict[str, int]:
        """Agencies new, matched (by name or alias), fuzzy-matched and unknown: each agency
        once (two spellings of one new agency are one)."""
        found = self.agencies
        return {
            "new": len({agencies.alias_key(m.written) for m in found["new"]}),
            "matched": len({m.agency_id for m in (*found["exact"], *found["alias"])}),
            "fuzzy": len(found["fuzzy"]),
            "unknown": len(found["unknown"]),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read, "rows_ignored": self.rows_ignored,
            "agencies": {
                **self.agency_counts(),
                "names": {k: [m.to_json() for m in v] for k, v in self.agencies.items() if v},
            },
            "dates": self.dates,
            "recommendations": [
                {"section": section, "ref": ref, "actions": [c.row.display_ref for c in changes]}
                for section, ref, changes in self.recommendations
            ],
        }  # fmt: skip


def understood(report: ImportReport) -> Understood:
    """Count and group what the import read: rows, agencies by how they matched, dates by
    how they were read, actions by recommendation."""
    groups: dict[tuple[str, str], list[Change]] = {}
    matches: dict[str, list[agencies.Match]] = {k: [] for k in agencies.MATCH_KINDS}
    seen: set[str] = set()
    dates = dict.fromkeys(DATE_KINDS, 0)
    for change in report.changes:
        groups.setdefault((change.row.section, change.row.rec_ref), []).append(change)
        dates[date_kind(change.values)] += 1
        if change.agency and change.agency.written not in seen:
            seen.add(change.agency.written)
            matches[change.agency.kind].append(change.agency)
    recommendations = [(section, ref, changes) for (section, ref), changes in groups.items()]
    return Understood(len(report.changes), len(report.ignored), recommendations, matches, dates)


def date_kind(values: Mapping[str, Any]) -> str:
    """Which of DATE_KINDS a change's due date is."""
    if values["due_basis"] in _PARSED_BASES:
        return "parsed"
    if values["due_basis"] in ("relative", "recurring"):
        return str(values["due_basis"])
    return "completed" if values["status"] == ActionStatus.COMPLETED else "missing"


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def desired(row: PlanRow, anchors: Mapping[str, dt.date | None], today: dt.date) -> dict[str, Any]:
    """What the store should hold for one plan row (pure)."""
    target = read_target(row.target, anchors, today, milestones=row.milestones)
    outcome = read_outcome(row.outcome)
    completed = target.completed or outcome.completed
    completed_on = outcome.completed_on or target.completed_on
    reasons: list[str] = []
    if not completed and not row.target and row.milestones and not target.rule:
        reasons.append(f"due: no target date (the milestones column reads {row.milestones[:60]!r})")
    elif not completed:
        reasons += target.reasons
    if completed_on is not None and completed_on > today:
        reasons.append(f"status: completion date {completed_on} is in the future; check it")
        completed_on = None
    if not row.lead_agency:
        reasons.append(AGENCY_REASON)
    reasons += row.flags  # garbled cells, kept verbatim (see importer.names)
    return {
        "text": row.text or row.rec_text,
        "owner_text": row.owner or None,
        "milestones": row.milestones or None,
        "target_text": row.target or None,
        "outcome": row.outcome or None,
        "lead_agency": row.lead_agency,
        "due_date": target.due_date,
        "due_basis": target.basis.value,
        "due_rule": target.rule,
        "status": ActionStatus.COMPLETED.value if completed else ActionStatus.OPEN.value,
        "completed_on": completed_on,
        "review_reasons": reasons,
    }


def plan_changes(
    session: Session,
    review: Review | None,
    plan: ParsedPlan,
    today: dt.date,
    *,
    source: str = "the file",
    review_ref: str | None = None,
) -> tuple[list[Change], list[tuple[int, str]]]:
    """Compare the plan with the store; writes nothing (this is also the dry run)."""
    anchors = {k: getattr(review, k) if review else None for k in reviews.ANCHORS}
    existing = _existing(session, review)
    resolver = agencies.Resolver(session)
    agency_key = _agency_keys(resolver)
    rows = [_read_back(r) for r in plan.rows]
    keyed = _claim_keys(session, review, review_ref or (review.ref if review else ""), rows, source)
    if keyed:
        rows = _number_new_rows(rows, keyed)
        for claimed in keyed.values():  # matched by key, never by place
            existing.pop(claimed.source_key or "", None)
    changes = []
    for position, row in enumerate(rows):
        if position in keyed:
            changes.append(_keyed_change(agency_key, keyed[position], row, anchors, today, source))
            continue
        values = desired(row, anchors, today)
        match = _resolve_agency(resolver, values)
        action = existing.pop(row.key, None)
        if action is None:
            _status_column(values, row, today, source)
            changes.append(Change("create", row, values, agency=match))
            continue
        before, after, overrides = _differences(agency_key, action, values)
        kind: Literal["update", "unchanged"] = "update" if after else "unchanged"
        changes.append(Change(kind, row, values, action.id, before, after, overrides, match))
    missing = sorted((a.id, a.ref) for a in existing.values())
    return changes, missing


def _existing(session: Session, review: Review | None) -> dict[str, Action]:
    if review is None or review.id is None:
        return {}
    rows = session.scalars(
        select(Action)
        .where(Action.review_id == review.id, Action.source_key.is_not(None))
        .options(joinedload(Action.lead_agency))
    )
    return {a.source_key: a for a in rows if a.source_key}


def _differences(
    agency_key: AgencyKey, action: Action, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    now = _plan_view(action)
    want = {k: values[k] for k in PLAN_FIELDS}
    if agency_key(values["lead_agency"]) == agency_key(now["lead_agency"]):
        want["lead_agency"] = now["lead_agency"]  # another spelling of the same agency
    if want["target_text"] != now["target_text"]:
        want.update({k: values[k] for k in DUE_FIELDS})
    if values["status"] == ActionStatus.COMPLETED and action.status != ActionStatus.COMPLETED:
        want.update(status=values["status"], completed_on=values["completed_on"])
    overtaken = _keep_corrections(agency_key, action, values, want)
    want["review_reasons"] = _reasons_after(action, values, due_moved="due_date" in want)
    settled = action.overrides.get("review_reasons", [])
    want["review_reasons"] = [r for r in want["review_reasons"] if r not in settled]
    if want["lead_agency"]:
        # A person who chose the agency has answered the plan's garbled agency cell too.
        chosen = "lead_agency" in action.overrides
        want["review_reasons"] = [
            r
            for r in want["review_reasons"]
            if r != AGENCY_REASON and not (chosen and r.startswith(AGENCY_PREFIX))
        ]
    # A revised plan may have removed or reordered rows: the completed status may now belong
    # to another action. Flag it rather than carry it over silently.
    reflag = CHANGED_AFTER_COMPLETION not in want["review_reasons"]
    if action.status == ActionStatus.COMPLETED and want["text"] != now["text"] and reflag:
        want["review_reasons"] = [*want["review_reasons"], CHANGED_AFTER_COMPLETION]
    changed = {k: v for k, v in want.items() if now.get(k) != v}
    overrides = (
        {k: v for k, v in action.overrides.items() if k not in overtaken} if overtaken else None
    )
    return {k: now.get(k) for k in changed}, changed, overrides


def _keep_corrections(
    agency_key: AgencyKey, action: Action, values: dict[str, Any], want: dict[str, Any]
) -> set[str]:
    """A field a person corrected keeps the correction while the plan still says what it said
    then (``action.overrides`` holds that). A plan that now says something else wins, and the
    correction is forgotten even where the store already agrees with the plan, so the next
    correction remembers what the plan says now. Returns the fields the plan has overtaken."""
    overtaken = set()
    for key, plan_said in action.overrides.items():
        if key not in values:  # review_reasons: settled flags are handled by the caller
            continue
        same = (
            agency_key(values[key]) == agency_key(plan_said)
            if key == "lead_agency"
            else audit.to_jsonable(values[key]) == plan_said
        )
        if not same:
            overtaken.add(key)
        elif key in want:
            want[key] = getattr(action, key) if key != "lead_agency" else _agency_name(action)
            if key == "target_text":  # corrected words keep the date they gave
                for due in DUE_FIELDS:
                    want.pop(due, None)
    if "status" in want and want["status"] == action.status:
        want.pop("completed_on", None)  # a kept status keeps its date too
    return overtaken


def _agency_name(action: Action) -> str | None:
    return action.lead_agency.name if action.lead_agency else None


def _plan_view(action: Action) -> dict[str, Any]:
    view = {
        k: getattr(action, k)
        for k in (*ACTION_PLAN_FIELDS, *DUE_FIELDS, "status", "completed_on", "review_reasons")
    }
    view["lead_agency"] = _agency_name(action)
    return view


def _agency_keys(resolver: agencies.Resolver) -> AgencyKey:
    """Which agency a name means, as a comparable key: a close spelling the directory
    resolves is the agency it resolves to. The resolver looks each name up once."""

    def key(name: str | None) -> str | None:
        if not name:
            return None
        match = resolver.match(name)
        return f"id:{match.agency_id}" if match.agency_id else agencies.alias_key(name)

    return key


def _resolve_agency(resolver: agencies.Resolver, values: dict[str, Any]) -> agencies.Match | None:
    """Resolve the row's agency name through the store. A close spelling becomes the agency's
    own name (shown in the report, not remembered as an alias); a name the directory does not
    know is dropped and flagged with the nearest names, never created."""
    written = values["lead_agency"]
    if not written:
        return None
    match = resolver.match(written)
    if match.kind == "fuzzy":
        values["lead_agency"] = match.agency
    elif match.kind == "unknown":
        values["lead_agency"] = None
        values["review_reasons"] = [*values["review_reasons"], agencies.unknown_reason(match)]
    return match


def _reasons_after(action: Action, values: dict[str, Any], *, due_moved: bool) -> list[str]:
    """Due reasons follow the plan only when the due date does; agency reasons always do."""
    due = [r for r in values["review_reasons"] if r.startswith(actions.DUE_REASON_PREFIX)]
    kept_due = (
        due
        if due_moved
        else [r for r in action.review_reasons if r.startswith(actions.DUE_REASON_PREFIX)]
    )
    if values["status"] == ActionStatus.COMPLETED or action.status in (
        ActionStatus.COMPLETED,
        ActionStatus.WITHDRAWN,
    ):
        kept_due = []
    others = [r for r in action.review_reasons if not r.startswith(("due:", "agency:"))]
    others += [
        r
        for r in values["review_reasons"]
        if r.startswith(("status:", "text:")) and r not in others
    ]
    agency = [r for r in values["review_reasons"] if r.startswith(AGENCY_PREFIX)]
    return [*kept_due, *agency, *others]


def apply_plan(
    session: Session,
    review_ref: str,
    plan: ParsedPlan,
    *,
    title: str | None,
    source: str,
    digest: str,
    today: dt.date,
    now: dt.datetime,
    actor: str,
    dry_run: bool,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import (or with ``dry_run``, only describe) a parsed plan for one review."""
    review = session.scalar(select(Review).where(Review.ref == review_ref))
    created_review = review is None
    if review is None and not dry_run:
        partnership = plan.partnership if plan.partnership else None
        if partnership and len(partnership) > reviews.PARTNERSHIP_LIMIT:
            partnership = None  # a heading that long is no partnership's name
        review = reviews.add(
            session, review_ref, title or plan.title or review_ref, now=now, actor=actor,
            partnership=partnership,
        )  # fmt: skip
    changes, missing = plan_changes(
        session, review, plan, today, source=source, review_ref=review_ref
    )
    report = ImportReport(review_ref, created_review, source, changes, missing, plan.ignored)
    if dry_run:
        return report
    assert review is not None
    writes = _Writes(session, review, source=source, now=now, actor=actor)
    for change in changes:
        try:
            _write(writes, change)
        except InvalidInput as exc:  # e.g. an agency name too long: say which row
            raise InvalidInput(f"{source}:{change.row.line}: {exc}") from None
        if progress:
            progress(1)
    writes.flush()
    # New rows went in beside the ORM: lists loaded earlier in this session would miss them.
    session.expire(review, ["actions", "recommendations"])
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="plan.import",
        subject=f"review:{review.ref}",
        data={
            "file": source,
            "sha256": digest,
            "created": report.count("create"),
            "updated": report.count("update"),
            "unchanged": report.count("unchanged"),
            "not_in_file": [i for i, _ in missing],
            **_agency_notes(report),
        },
    )
    return report


def _agency_notes(report: ImportReport) -> dict[str, Any]:
    """Names matched by a close spelling or not at all, for the import's audit event (only
    when there are some: an import without a directory records what it always did)."""
    notes: dict[str, list[str]] = {}
    for match in dict.fromkeys(c.agency for c in report.changes if c.agency):  # each once
        if match.kind in ("fuzzy", "unknown"):
            notes.setdefault(f"agencies_{match.kind}", []).append(match.describe())
    return notes


class _Row(SimpleNamespace):
    """A new recommendation or action: its columns, inserted as a row by _Writes.flush, which
    sets its id, and for an action what ``actions.to_dict`` reads. Not an ORM object: the
    ORM's bookkeeping cost about 90 µs an object, 9 s of a 100,000-row import's write lock."""


@dataclass
class _Event:
    """An audit event whose subject is named by its id, known once the rows are flushed."""

    kind: str  # "action.create": the subject is "action:ID"
    subject: Any  # an Action or Recommendation, or a _Row that will be one
    data: dict[str, Any]

    def entry(self) -> tuple[str, str, dict[str, Any]]:
        if self.kind == "action.create":
            self.data["after"]["id"] = self.subject.id
        return self.kind, f"{self.kind.split('.')[0]}:{self.subject.id}", self.data


class _Writes:
    """The writes of one import, a batch at a time. New recommendations and actions go in as
    rows, BATCH at a time, each batch with one append to the audit chain; a row-by-row ORM
    flush with an audit append (chain lock, head read) per row held the write lock for
    minutes on a large plan. Recommendations and agencies are looked up once per import.
    The store and the audit log end up exactly as row-by-row writes left them: the same rows,
    ids and events in the same order."""

    BATCH = batching.BATCH

    def __init__(
        self, session: Session, review: Review, *, source: str, now: dt.datetime, actor: str
    ) -> None:
        self.session, self.review = session, review
        self.source, self.now, self.actor = source, now, actor
        self.events: list[_Event] = []
        self.new_recommendations: list[_Row] = []  # inserted, and given ids, by flush()
        self.new_actions: list[tuple[Change, _Row]] = []
        self.agencies: dict[str, Agency] = {}
        self.recommendations: dict[tuple[str, str], Recommendation | _Row] = {
            (r.section, r.ref): r
            for r in session.scalars(
                select(Recommendation).where(Recommendation.review_id == review.id)
            )
        }

    def record(self, kind: str, subject: Any, data: dict[str, Any]) -> None:
        self.events.append(_Event(kind, subject, data))
        if len(self.events) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows, then their events (which name the rows' new ids)."""
        self.session.flush()  # changes to actions and recommendations already stored
        _insert(self.session, Recommendation, self.review.id, self.new_recommendations)
        for _, action in self.new_actions:  # a recommendation inserted just now has its id
            action.recommendation_id = action.recommendation.id
        _insert(self.session, Action, self.review.id, [a for _, a in self.new_actions])
        for change, action in self.new_actions:
            change.action_id = action.id
        self.new_recommendations, self.new_actions = [], []
        events, self.events = self.events, []
        audit.record_many(
            self.session, now=self.now, actor=self.actor, events=[e.entry() for e in events]
        )

    def agency(self, name: str) -> Agency:
        if name not in self.agencies:
            self.flush()  # find_or_create may append agency.create: after the events before it
            if agencies.directory_exists(self.session) and not agencies.find(self.session, name):
                # plan_changes flagged it; reaching here would be a bug, not a new agency
                raise InvalidInput(f"agency: {name!r} is not in the agency directory")
            found = agencies.find_or_create(self.session, name, now=self.now, actor=self.actor)
            self.agencies[name] = found
        return self.agencies[name]

    def recommendation(self, row: PlanRow) -> Recommendation | _Row:
        """The row's recommendation, created (and audited) if the review has none by its ref."""
        rec = self.recommendations.get((row.section, row.rec_ref))
        if rec is None:
            rec = _Row(
                id=None, review_id=self.review.id, ref=row.rec_ref, section=row.section,
                text=row.rec_text, scope=row.scope or None, created_at=self.now,
            )  # fmt: skip
            self.new_recommendations.append(rec)
            self.recommendations[(row.section, row.rec_ref)] = rec
            data = {"review_id": self.review.id, "section": row.section, "ref": row.rec_ref,
                    "text": row.rec_text, "scope": row.scope or None}  # fmt: skip
            self.record("recommendation.create", rec, data)
        return rec


# Each new row is found again by its natural key (unique within a review) to learn its id:
# RETURNING cannot promise the rows' order on SQLite, and SQLAlchemy then inserts one by one.
_NATURAL_KEYS: dict[type[Any], tuple[str, ...]] = {
    Recommendation: ("section", "ref"),
    Action: ("source_key",),
}


def _insert(session: Session, model: type[Any], review_id: int, new: list[_Row]) -> None:
    """Insert the rows (one executemany), and give each the id the store gave it."""
    if not new:
        return
    columns = [c.key for c in model.__table__.columns if c.key != "id"]
    # The table, not the entity: the ORM would split the rows into runs by which values are
    # None and send each run apart. Every column is given, so the rows are stored as the ORM
    # stores them (types and JSON through the same column types).
    rows = [{c: getattr(obj, c) for c in columns} for obj in new]
    before = session.scalar(select(func.max(model.id))) or 0  # new ids are all above it
    session.execute(insert(model.__table__), rows)
    names = _NATURAL_KEYS[model]
    found = session.execute(
        select(model.id, *(getattr(model, n) for n in names)).where(
            model.id > before, model.review_id == review_id
        )
    )
    ids = {tuple(key): row_id for row_id, *key in found}
    for obj in new:
        obj.id = ids[tuple(getattr(obj, n) for n in names)]


def _write(writes: _Writes, change: Change) -> None:
    if change.kind == "create":
        _create(writes, change)
    elif change.kind == "update":
        _update(writes, change)
    if change.overrides is not None:  # the plan has overtaken a correction
        writes.session.get_one(Action, change.action_id).overrides = change.overrides
    if change.rec_touched:
        _set_recommendation(writes, change.row)
    elif not change.keyed:  # an untouched keyed row says what the store has
        _sync_recommendation(writes, change.row)


def _create(writes: _Writes, change: Change) -> None:
    """A new action, as ``actions.create`` makes one, audited with the same event."""
    row, values = change.row, change.values
    rec = writes.recommendation(row)
    name = values["lead_agency"]
    agency = writes.agency(name) if name else None
    fields = {k: v for k, v in values.items() if k != "lead_agency"}
    action = _Row(
        id=None, review_id=writes.review.id, recommendation_id=None,
        lead_agency_id=agency.id if agency else None, owner_contact_id=None, ref=row.display_ref,
        source_key=row.key, source_file=writes.source, source_row=row.line,
        needs_review=bool(values["review_reasons"]), sequence=0, overrides={},
        created_at=writes.now, updated_at=writes.now, **fields,
        review=writes.review, recommendation=rec, lead_agency=agency, owner_contact=None,
    )  # fmt: skip
    writes.new_actions.append((change, action))
    # Now: the recommendation's scope may change later. The same dict as actions.create's
    # event; to_dict only reads attributes, which the row has.
    after = actions.to_dict(cast(Action, action))
    writes.record("action.create", action, {"review": writes.review.ref, "after": after})


def _update(writes: _Writes, change: Change) -> None:
    action = writes.session.get_one(Action, change.action_id)
    for key, value in change.after.items():
        if key == "lead_agency":
            action.lead_agency = writes.agency(value) if value else None
        else:
            setattr(action, key, value)
    action.needs_review = bool(action.review_reasons)
    closing = {change.after.get("status"), change.before.get("status")} & set(CLOSED_STATUSES)
    if "due_date" in change.after or ("status" in change.after and closing):
        action.sequence += 1  # calendars must see the move, or the entry go or come back
    action.source_file, action.source_row = writes.source, change.row.line
    action.updated_at = writes.now
    data = {"before": change.before, "after": change.after, "file": writes.source}
    writes.record("action.import_update", action, data)


def _sync_recommendation(writes: _Writes, row: PlanRow) -> None:
    if row.index == 1:
        _set_recommendation(writes, row)


def _set_recommendation(writes: _Writes, row: PlanRow) -> None:
    rec = writes.recommendation(row)
    before: dict[str, str | None] = {"text": rec.text, "scope": rec.scope}
    after: dict[str, str | None] = {"text": row.rec_text, "scope": row.scope or None}
    if before != after:
        rec.text, rec.scope = row.rec_text, row.scope or None
        writes.record("recommendation.import_update", rec, {"before": before, "after": after})


# --- rows from `dhr-workflow export`: matched by their action key ------------------------------
#
# An export is the coordinator's own correction, so a keyed row is not weighed against earlier
# corrections (action.overrides) as a plan's row is: what it says wins. Each field it changes
# is remembered as a correction made on the action's page is, so re-importing the original plan
# later keeps it, and a revised plan that says something new still wins.

# Cells a person corrects, by PlanRow field; section and ref only place a row without a key.
_CELL_FIELDS = ("rec_text", "scope", "text", "agency", "owner", "milestones", "target", "outcome")
# Cells that are one field of the action, and its name there.
_STORED = {"text": "text", "owner": "owner_text", "milestones": "milestones",
           "target": "target_text", "outcome": "outcome"}  # fmt: skip
# Fields an export's neutraliser may have quoted (export.unquote).
_QUOTABLE = ("action_key", "status", *_CELL_FIELDS)
# Corrections remembered in action.overrides, as actions.update remembers its own.
REMEMBERED = (*PLAN_FIELDS, "status", "completed_on")


def _read_back(row: PlanRow) -> PlanRow:
    """A cell an export neutralised against formulas (a leading apostrophe) as it was."""
    quoted: dict[str, Any] = {
        f: export.unquote(getattr(row, f)) for f in _QUOTABLE if getattr(row, f)[:1] == "'"
    }
    return replace(row, **quoted) if quoted else row


def _claim_keys(
    session: Session, review: Review | None, review_ref: str, rows: Sequence[PlanRow], source: str
) -> dict[int, Action]:
    """The action each keyed row corrects, by the row's position. A key that is malformed, of
    another review, unknown or on two rows is one line naming the row: nothing is written."""
    wanted: dict[int, int] = {}
    lines: dict[int, int] = {}  # action id -> the row that claimed it
    for position, row in enumerate(rows):
        if not row.action_key.strip():
            continue
        action_id = _key_id(row, review_ref, source)
        if action_id in lines:
            raise InvalidInput(
                f"{source}:{row.line}: action key {row.action_key.strip()} is also on row "
                f"{lines[action_id]}; clear it on the copy to add the row as a new action"
            )
        lines[action_id], wanted[position] = row.line, action_id
    if not wanted:
        return {}
    stored = {a.id: a for a in _review_actions(session, review)}
    for position, action_id in wanted.items():
        if action_id not in stored:
            row = rows[position]
            raise InvalidInput(
                f"{source}:{row.line}: action key {row.action_key.strip()}: review {review_ref} "
                f"has no action {action_id}; export the review again, or clear the key to add "
                "the row as a new action"
            )
    return {position: stored[action_id] for position, action_id in wanted.items()}


def _key_id(row: PlanRow, review_ref: str, source: str) -> int:
    if "\n" in row.action_key.strip() or row.action_key.startswith("\n"):
        raise InvalidInput(
            f"{source}:{row.line}: the row below this one has an action key but no "
            "Recommendation ref, so it ran into this one; put its ref back"
        )
    parsed = export.parse_key(row.action_key)
    if parsed is None:
        raise InvalidInput(
            f"{source}:{row.line}: {row.action_key.strip()!r} in the Action key column is not a "
            f"key from `dhr-workflow export` (they read like {export.action_key(review_ref, 17)})"
            "; copy it back from the export, or clear it to add the row as a new action"
        )
    key_review, action_id = parsed
    if key_review != review_ref:
        raise InvalidInput(
            f"{source}:{row.line}: action key {row.action_key.strip()} is of review "
            f"{key_review}, not {review_ref}; import the file with --review {key_review}, or "
            f"export {review_ref} and correct that"
        )
    return action_id


def _review_actions(session: Session, review: Review | None) -> list[Action]:
    if review is None or review.id is None:
        return []
    return export.actions_of(session, review)


def _place(action: Action) -> tuple[str, str, int]:
    """(section, recommendation ref, index) of an action, from the key it was imported with."""
    if action.source_key and action.source_key.count("|") >= 2:
        section, ref, index = action.source_key.rsplit("|", 2)
        if index.isdigit():
            return section, ref, int(index)
    rec = action.recommendation
    return (rec.section, rec.ref, 1) if rec else ("", "", 1)


def _number_new_rows(rows: Sequence[PlanRow], keyed: Mapping[int, Action]) -> list[PlanRow]:
    """A row without a key beside keyed ones is a new action: numbered after the keyed actions
    of its recommendation, so it never takes one's place, and the same file imported again
    finds it by that number instead of adding it twice."""
    last: dict[tuple[str, str], int] = {}
    for action in keyed.values():
        section, ref, index = _place(action)
        last[(section, ref)] = max(index, last.get((section, ref), 0))
    seen: Counter[tuple[str, str]] = Counter()
    numbered = []
    for position, row in enumerate(rows):
        if position not in keyed:
            place = (row.section, row.rec_ref)
            seen[place] += 1
            row = replace(row, index=last.get(place, 0) + seen[place])
        numbered.append(row)
    return numbered


def _keyed_change(
    agency_key: AgencyKey,
    action: Action,
    row: PlanRow,
    anchors: Mapping[str, dt.date | None],
    today: dt.date,
    source: str,
) -> Change:
    row, touched = _as_stored(row, action)
    values = desired(row, anchors, today)
    for f in set(_STORED) - touched:  # exactly what the store holds, whatever desired() makes
        values[_STORED[f]] = getattr(action, _STORED[f])
    if "agency" not in touched:
        values["lead_agency"] = _agency_name(action)
    values["status"], values["completed_on"] = _keyed_status(
        row, action, values, touched=touched, today=today, source=source
    )
    before, after = _keyed_differences(agency_key, action, values)
    overrides = _remembered(action, before, after)
    kind: Literal["update", "unchanged"] = "update" if after else "unchanged"
    rec_touched = bool(touched & {"rec_text", "scope"})
    return Change(
        kind, row, values, action.id, before, after, overrides, keyed=True, rec_touched=rec_touched
    )


def _as_stored(row: PlanRow, action: Action) -> tuple[PlanRow, set[str]]:
    """The row with each cell the coordinator left alone holding the stored value itself, and
    the fields they changed. A cell reads back as the importer's cleaned text, which need not be
    the stored text byte for byte (spaces, line ends), and an untouched cell changes nothing."""
    stored = export.row_values(action)
    touched = {f for f in _CELL_FIELDS if getattr(row, f) != clean(stored[f])}
    kept: dict[str, Any] = {f: stored[f] for f in _CELL_FIELDS if f not in touched}
    if "agency" not in touched:
        kept["section_agency"] = None  # the stored agency, or none, stands
    section, ref, index = _place(action)  # the key decides where the action sits
    return replace(row, **kept, section=section, rec_ref=ref, index=index), touched


def _status_cell(row: PlanRow, source: str) -> str | None:
    """The Workflow status column's value, None when blank."""
    words = "_".join(row.status.lower().replace("-", " ").split())
    if not words:
        return None
    if words not in export.STATUSES:
        raise InvalidInput(
            f"{source}:{row.line}: Workflow status {row.status!r} is not one of "
            f"{', '.join(export.STATUSES)}; choose one, or leave it blank to keep the status"
        )
    return words


def _keyed_status(
    row: PlanRow,
    action: Action,
    values: dict[str, Any],
    *,
    touched: set[str],
    today: dt.date,
    source: str,
) -> tuple[str, dt.date | None]:
    """A Workflow status that differs from the store's decides (completed on the date the
    words give, else today, as `actions update` does). Otherwise completion words the
    coordinator wrote in the outcome or target complete the action, as any import does; an
    untouched row keeps what the store has."""
    wanted = _status_cell(row, source)
    if wanted is not None and wanted != action.status:
        return wanted, (
            values["completed_on"] or today
        ) if wanted == ActionStatus.COMPLETED else None
    completes = values["status"] == ActionStatus.COMPLETED != action.status
    if completes and touched & {"outcome", "target"}:
        return ActionStatus.COMPLETED.value, values["completed_on"]
    return action.status, action.completed_on


def _keyed_differences(
    agency_key: AgencyKey, action: Action, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    now = _plan_view(action)
    want = {k: values[k] for k in (*PLAN_FIELDS, "status", "completed_on")}
    if agency_key(values["lead_agency"]) == agency_key(now["lead_agency"]):
        want["lead_agency"] = now["lead_agency"]  # another spelling of the same agency
    if want["target_text"] != now["target_text"]:
        want.update({k: values[k] for k in DUE_FIELDS})
    changed = {k: v for k, v in want.items() if now.get(k) != v}
    reasons = _keyed_reasons(action, values, changed)
    if reasons != action.review_reasons:
        changed["review_reasons"] = reasons
    return {k: now.get(k) for k in changed}, changed


def _keyed_reasons(action: Action, values: dict[str, Any], changed: dict[str, Any]) -> list[str]:
    """The action's flags after a keyed row: only the flags about what the row changed move
    (an untouched row leaves even a stale flag for a person to settle)."""
    due = actions.DUE_REASON_PREFIX
    wanted_due = [r for r in values["review_reasons"] if r.startswith(due)]
    closed = values["status"] in CLOSED_STATUSES
    reasons = list(action.review_reasons)
    if "target_text" in changed or ("status" in changed and closed):
        reasons = [r for r in reasons if not r.startswith(due)]
    if ("target_text" in changed or "status" in changed) and not closed:
        reasons += [r for r in wanted_due if r not in reasons]
    if "lead_agency" in changed:
        reasons = [r for r in reasons if r != AGENCY_REASON]
        reasons += [] if values["lead_agency"] else [AGENCY_REASON]
    if "outcome" in changed:
        said = [r for r in values["review_reasons"] if r.startswith("status:")]
        reasons += [r for r in said if r not in reasons]
    settled = action.overrides.get("review_reasons", [])
    return [r for r in reasons if r in action.review_reasons or r not in settled]


def _remembered(
    action: Action, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any] | None:
    """The action's corrections with this row's added (what the store said before each, once),
    as actions._remember_overrides keeps them; None when there is nothing new to remember."""
    overrides = dict(action.overrides)
    for key in REMEMBERED:
        if key in after and key not in overrides:
            overrides[key] = audit.to_jsonable(before[key])
    return overrides if overrides != action.overrides else None


def _status_column(values: dict[str, Any], row: PlanRow, today: dt.date, source: str) -> None:
    """A new row's Workflow status, when it has one, decides its status."""
    wanted = _status_cell(row, source)
    if wanted is None or wanted == values["status"]:
        return
    completed = wanted == ActionStatus.COMPLETED
    values["status"] = wanted
    values["completed_on"] = (values["completed_on"] or today) if completed else None
    if wanted in CLOSED_STATUSES:  # nothing is due from a finished action
        values["review_reasons"] = [
            r for r in values["review_reasons"] if not r.startswith(actions.DUE_REASON_PREFIX)
        ]
