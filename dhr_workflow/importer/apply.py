"""Parsed plan rows into the store: a plan of changes first (pure), then the writes.

Re-importing the same file changes nothing; a revised plan updates the actions whose words
changed (audited with before and after) and never duplicates one. What the plan owns — texts,
holder, milestones, target words, outcome, lead agency — follows the file. What the coordinator
owns survives: a due date set by hand stays unless the plan's target words change, and an action
completed in the store is never reopened by an older plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, cast

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import actions, agencies, audit, reviews
from dhr_workflow.actions import AGENCY_PREFIX, AGENCY_REASON
from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.parse import ParsedPlan, PlanRow
from dhr_workflow.models import Action, ActionStatus, Agency, Recommendation, Review
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
                {"ref": c.row.ref, "section": c.row.section, "line": c.row.line,
                 "reasons": c.values["review_reasons"]} for c in self.needs_review()
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
                {"section": section, "ref": ref, "actions": [c.row.ref for c in changes]}
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
    session: Session, review: Review | None, plan: ParsedPlan, today: dt.date
) -> tuple[list[Change], list[tuple[int, str]]]:
    """Compare the plan with the store; writes nothing (this is also the dry run)."""
    anchors = {k: getattr(review, k) if review else None for k in reviews.ANCHORS}
    existing = _existing(session, review)
    resolver = agencies.Resolver(session)
    agency_key = _agency_keys(resolver)
    changes = []
    for row in plan.rows:
        values = desired(row, anchors, today)
        match = _resolve_agency(resolver, values)
        action = existing.pop(row.key, None)
        if action is None:
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
    changes, missing = plan_changes(session, review, plan, today)
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

    BATCH = 500

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
    if "due_date" in change.after or change.after.get("status") == ActionStatus.COMPLETED:
        action.sequence += 1  # calendars must see the move or the completion
    action.source_file, action.source_row = writes.source, change.row.line
    action.updated_at = writes.now
    data = {"before": change.before, "after": change.after, "file": writes.source}
    writes.record("action.import_update", action, data)


def _sync_recommendation(writes: _Writes, row: PlanRow) -> None:
    if row.index != 1:
        return
    rec = writes.recommendation(row)
    before: dict[str, str | None] = {"text": rec.text, "scope": rec.scope}
    after: dict[str, str | None] = {"text": row.rec_text, "scope": row.scope or None}
    if before != after:
        rec.text, rec.scope = row.rec_text, row.scope or None
        writes.record("recommendation.import_update", rec, {"before": before, "after": after})
