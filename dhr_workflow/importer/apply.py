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
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from dhr_workflow import actions, agencies, audit, reviews
from dhr_workflow.actions import AGENCY_REASON
from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.parse import ParsedPlan, PlanRow
from dhr_workflow.models import Action, ActionStatus, Review
from dhr_workflow.targets import read_outcome, read_target

CHANGED_AFTER_COMPLETION = "status: the plan's text for this completed action changed; check it"
# Fields a plan decides; compared on re-import. Due fields only move when target words do.
# Plan-owned columns of an action; the lead agency is compared by name on top of these.
ACTION_PLAN_FIELDS = ("text", "owner_text", "milestones", "target_text", "outcome")
PLAN_FIELDS = (*ACTION_PLAN_FIELDS, "lead_agency")
DUE_FIELDS = ("due_date", "due_basis", "due_rule")


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

    def summary(self) -> dict[str, Any]:
        reasons = self.values["review_reasons"]
        return {
            "kind": self.kind, "action_id": self.action_id, "section": self.row.section,
            "recommendation": self.row.rec_ref, "ref": self.row.ref, "line": self.row.line,
            "lead_agency": self.values["lead_agency"], "status": self.values["status"],
            "due_date": _iso(self.values["due_date"]), "target_text": self.values["target_text"],
            "needs_review": bool(reasons), "review_reasons": reasons,
            "changed": audit.to_jsonable(self.after) if self.kind == "update" else {},
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
        }  # fmt: skip


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
    changes = []
    for row in plan.rows:
        values = desired(row, anchors, today)
        action = existing.pop(row.key, None)
        if action is None:
            changes.append(Change("create", row, values))
            continue
        before, after, overrides = _differences(session, action, values)
        kind: Literal["update", "unchanged"] = "update" if after else "unchanged"
        changes.append(Change(kind, row, values, action.id, before, after, overrides))
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
    session: Session, action: Action, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    now = _plan_view(action)
    want = {k: values[k] for k in PLAN_FIELDS}
    if _agency_key(session, values["lead_agency"]) == _agency_key(session, now["lead_agency"]):
        want["lead_agency"] = now["lead_agency"]  # another spelling of the same agency
    if want["target_text"] != now["target_text"]:
        want.update({k: values[k] for k in DUE_FIELDS})
    if values["status"] == ActionStatus.COMPLETED and action.status != ActionStatus.COMPLETED:
        want.update(status=values["status"], completed_on=values["completed_on"])
    overtaken = _keep_corrections(session, action, values, want)
    want["review_reasons"] = _reasons_after(action, values, due_moved="due_date" in want)
    settled = action.overrides.get("review_reasons", [])
    want["review_reasons"] = [r for r in want["review_reasons"] if r not in settled]
    if want["lead_agency"]:
        want["review_reasons"] = [r for r in want["review_reasons"] if r != AGENCY_REASON]
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
    session: Session, action: Action, values: dict[str, Any], want: dict[str, Any]
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
            _agency_key(session, values[key]) == _agency_key(session, plan_said)
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


def _agency_key(session: Session, name: str | None) -> str | None:
    if not name:
        return None
    found = agencies.find(session, name)
    return f"id:{found.id}" if found else agencies.alias_key(name)


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
    others += [r for r in values["review_reasons"] if r.startswith("status:") and r not in others]
    agency = [AGENCY_REASON] if AGENCY_REASON in values["review_reasons"] else []
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
        review = reviews.add(
            session, review_ref, title or plan.title or review_ref, now=now, actor=actor
        )
    changes, missing = plan_changes(session, review, plan, today)
    report = ImportReport(review_ref, created_review, source, changes, missing, plan.ignored)
    if dry_run:
        return report
    assert review is not None
    for change in changes:
        try:
            _write(session, review, change, source=source, now=now, actor=actor)
        except InvalidInput as exc:  # e.g. an agency name too long: say which row
            raise InvalidInput(f"{source}:{change.row.line}: {exc}") from None
        if progress:
            progress(1)
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
        },
    )
    return report


def _write(
    session: Session, review: Review, change: Change, *, source: str, now: dt.datetime, actor: str
) -> None:
    row, values = change.row, change.values
    if change.kind == "create":
        fields = {k: v for k, v in values.items() if k != "lead_agency"}
        action = actions.create(
            session,
            review.ref,
            now=now,
            actor=actor,
            recommendation=row.rec_ref,
            section=row.section,
            recommendation_text=row.rec_text,
            scope=row.scope or None,
            lead_agency=values["lead_agency"],
            ref=row.ref,
            source_key=row.key,
            source_file=source,
            source_row=row.line,
            **fields,
        )
        change.action_id = action.id
    elif change.kind == "update":
        _update(session, change, source=source, now=now, actor=actor)
    if change.overrides is not None:  # the plan has overtaken a correction
        session.get_one(Action, change.action_id).overrides = change.overrides
    _sync_recommendation(session, review, row, now=now, actor=actor)


def _update(session: Session, change: Change, *, source: str, now: dt.datetime, actor: str) -> None:
    action = session.get_one(Action, change.action_id)
    for key, value in change.after.items():
        if key == "lead_agency":
            action.lead_agency = (
                agencies.find_or_create(session, value, now=now, actor=actor) if value else None
            )
        else:
            setattr(action, key, value)
    action.needs_review = bool(action.review_reasons)
    if "due_date" in change.after or change.after.get("status") == ActionStatus.COMPLETED:
        action.sequence += 1  # calendars must see the move or the completion
    action.source_file, action.source_row, action.updated_at = source, change.row.line, now
    session.flush()
    audit.record(
        session,
        now=now,
        actor=actor,
        kind="action.import_update",
        subject=f"action:{action.id}",
        data={"before": change.before, "after": change.after, "file": source},
    )


def _sync_recommendation(
    session: Session, review: Review, row: PlanRow, *, now: dt.datetime, actor: str
) -> None:
    if row.index != 1:
        return
    rec = actions.find_or_create_recommendation(
        session,
        review.id,
        row.rec_ref,
        section=row.section,
        text=row.rec_text,
        scope=row.scope or None,
        now=now,
        actor=actor,
    )
    before: dict[str, str | None] = {"text": rec.text, "scope": rec.scope}
    after: dict[str, str | None] = {"text": row.rec_text, "scope": row.scope or None}
    if before != after:
        rec.text, rec.scope = row.rec_text, row.scope or None
        audit.record(
            session,
            now=now,
            actor=actor,
            kind="recommendation.import_update",
            subject=f"recommendation:{rec.id}",
            data={"before": before, "after": after},
        )
