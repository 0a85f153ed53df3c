"""An action's history as sentences a coordinator reads: what changed, who did it, and the
messages sent about it.

Two sources: the audit events whose subject is the action, and the messages sent about it (the
outbox rows that carried its "fired" firings; see :func:`_message_ids`), messages alike from
one tick told as one sentence naming every recipient. An event becomes one sentence per
meaningful change (a status, a date, an owner), all sharing its time and actor; bookkeeping
fields (sequence, due basis, the needs-review boolean) say nothing to a person and are left
out. An event of a kind this module does not know, or with data it cannot read, still becomes
a plain sentence, never an error: the log outlives the code that reads it.

Plain text only (the caller escapes it); dates read "31 Dec 2023"; times are the caller's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dhr_workflow.batching import chunked
from dhr_workflow.models import Action, AuditEvent, Contact, Firing, Notification

SYSTEM = "dhr-workflow"  # how the daemon (and the messages it sends) is shown
TEXT_LIMIT = 500  # characters of a note or a text shown in one sentence
# Fields that are bookkeeping, not news: they move with the changes that are shown.
NOISE = frozenset({"sequence", "due_basis", "due_rule", "needs_review", "overrides"})
FIELD_LABELS = {  # in the order a re-import lists them
    "text": "action text",
    "target_text": "target text",
    "due_date": "due date",
    "status": "status",
    "completed_on": "completion date",
    "lead_agency": "lead agency",
    "owner_text": "owner",
    "owner_contact": "owner's contact",
    "milestones": "milestones",
    "outcome": "outcome",
    "review_reasons": "needs-review flags",
}
TEMPLATE_LABELS = {
    "due_soon": "Reminder (due soon)",
    "overdue": "Overdue reminder",
    "escalation": "Escalation",
    "needs_review": "Needs-review reminder",
    "update_request": "Request for an update",
    "calendar_update": "Calendar update",
}
ANCHOR_LABELS = {
    "published_on": "publication date",
    "completed_on": "completion date",
    "plan_agreed_on": "plan agreement date",
    "report_accepted_on": "report acceptance date",
}
# A reason about the due date (or the agency) goes when the date (or agency) is set: saying so
# again would only repeat the sentence before it.
_IMPLIED = {"due:": "due_date", "agency:": "lead_agency"}


@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    actor: str  # a display name: a contact's name, "dhr-workflow", "jo (command line)"
    sentence: str
    kind: str  # the audit kind, or message.sent / message.failed / message.pending


def for_action(
    session: Session,
    action_id: int,
    *,
    tz: ZoneInfo,
    names: Mapping[str, str] | None = None,
) -> list[Entry]:
    """The action's history, oldest first. ``names`` maps actors (or addresses) to the names
    to show, over the contacts' own names."""
    events = list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == f"action:{action_id}")
            .order_by(AuditEvent.seq)
        )
    )
    datas = [_data(ev) for ev in events]
    people = _People(session, names, _addresses(events, datas))
    reader = _Reader(session, action_id, tz, people, events)
    ranked: list[tuple[dt.datetime, tuple[int, int, int], Entry]] = []
    for ev, data in zip(events, datas, strict=True):
        for n, entry in enumerate(reader.entries(ev, data)):
            ranked.append((ev.at, (0, ev.seq, n), entry))
    for note_id, entry in _messages(session, action_id):
        ranked.append((entry.at, (1, note_id, 0), entry))
    return [entry for _, _, entry in sorted(ranked, key=lambda r: (r[0], r[1]))]


# --- people ----------------------------------------------------------------------------------


def _data(ev: AuditEvent) -> dict[str, Any]:
    return _loads(ev.data)


def _loads(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _addresses(events: list[AuditEvent], datas: list[dict[str, Any]]) -> set[str]:
    """Every address the sentences may name: actors and owner contacts."""
    found = {ev.actor.lower() for ev in events if "@" in ev.actor}
    for data in datas:
        for side in ("before", "after"):
            part = data.get(side)
            value = part.get("owner_contact") if isinstance(part, dict) else None
            if isinstance(value, str) and "@" in value:
                found.add(value.lower())
    return found


class _People:
    """Display names: the caller's, then the contacts' (one query), then as recorded."""

    def __init__(self, session: Session, names: Mapping[str, str] | None, emails: set[str]) -> None:
        self.names = dict(names or {})
        self.by_email: dict[str, str] = {}
        if emails:
            rows = session.execute(
                select(func.lower(Contact.email), Contact.name)
                .where(func.lower(Contact.email).in_(sorted(emails)))
                .order_by(Contact.active.desc(), Contact.id)
            )
            for email, name in rows:
                self.by_email.setdefault(email, name)

    def actor(self, actor: str) -> str:
        if actor in self.names:
            return self.names[actor]
        if actor == "daemon":
            return SYSTEM
        if actor.startswith("cli:"):
            return f"{actor.removeprefix('cli:')} (command line)"
        return self.names.get(actor.lower()) or self.by_email.get(actor.lower(), actor)

    def contact(self, email: Any) -> str:
        if not email:
            return "nobody"
        name = self.names.get(str(email)) or self.by_email.get(str(email).lower())
        return f"{name} ({email})" if name else str(email)


# --- audit events ----------------------------------------------------------------------------


class _Reader:
    """Sentences for one action's audit events."""

    def __init__(
        self,
        session: Session,
        action_id: int,
        tz: ZoneInfo,
        people: _People,
        events: list[AuditEvent],
    ) -> None:
        self.session, self.action_id, self.tz, self.people = session, action_id, tz, people
        self.reimported = any(ev.kind == "action.import_update" for ev in events)

    def entries(self, ev: AuditEvent, data: dict[str, Any]) -> list[Entry]:
        by = self.people.actor(ev.actor)
        try:
            sentences = self._sentences(ev, data, by)
        except Exception:  # an event this code cannot read must not hide the rest
            sentences = []
        sentences = sentences or [_generic(ev.kind, by)]
        return [Entry(ev.at, by, s, ev.kind) for s in sentences]

    def _sentences(self, ev: AuditEvent, data: dict[str, Any], by: str) -> list[str]:
        if ev.kind == "action.create":
            return [self._created(ev, data, by)]
        if ev.kind == "action.import_update":
            return [_reimported(data, self._day)]
        if ev.kind == "action.due_recompute":
            return _recomputed(data, self._day)
        if ev.kind.startswith("extension.") or ev.kind == "links.revoke":
            return [self._other(ev.kind, data, by)]
        return _Changes(data, by, self._day, self.people).sentences()

    def _other(self, kind: str, data: dict[str, Any], by: str) -> str:
        """Extension requests and their decisions, and revoked message links."""
        proposed = self._day(data.get("proposed_due"))
        note = f": {data['note']}" if data.get("note") else ""
        if kind == "extension.request":
            return f"{by} asked for more time, until {proposed}: {data.get('reason', '')}".rstrip(
                ": "
            )
        if kind == "extension.approve":
            asker = self.people.actor(str(data.get("requested_by", "")))
            return f"More time until {proposed} agreed by {by} (asked by {asker}){note}"
        if kind == "extension.decline":
            asker = self.people.actor(str(data.get("requested_by", "")))
            return f"More time until {proposed} declined by {by} (asked by {asker}){note}"
        count = len(data.get("links") or [])
        return f"{count} message link{'s' if count != 1 else ''} revoked by {by}"

    def _created(self, ev: AuditEvent, data: dict[str, Any], by: str) -> str:
        file, line = data.get("file"), data.get("line")
        if file is None:
            file = self._import_file(ev, data.get("review"))
        if file is None:
            return f"Created by {by}"
        if line is None and not self.reimported:  # the row still says where it came from
            action = self.session.get(Action, self.action_id)
            if action is not None and action.source_file == file:
                line = action.source_row
        return f"Created from plan file {file}" + (f", line {line}" if line else "")

    def _import_file(self, ev: AuditEvent, review: Any) -> str | None:
        """The file of the import this creation was part of (same review, time and actor)."""
        if not review:
            return None
        found = self.session.scalars(
            select(AuditEvent.data).where(
                AuditEvent.kind == "plan.import",
                AuditEvent.subject == f"review:{review}",
                AuditEvent.at == ev.at,
                AuditEvent.actor == ev.actor,
            )
        ).first()
        file = _loads(found).get("file") if found else None
        return str(file) if file else None

    def _day(self, value: Any) -> str:
        return _day(value, self.tz)


class _Changes:
    """A before/after event (update, status, due change, assign, note, settle, and any kind
    of the same shape) as one sentence per meaningful change."""

    def __init__(
        self, data: dict[str, Any], by: str, day: Callable[[Any], str], people: _People
    ) -> None:
        self.before, self.after = _sides(data)
        self.changed = [k for k in self.after if self.before.get(k) != self.after[k]]
        self.data, self.by, self.day, self.people = data, by, day, people

    def sentences(self) -> list[str]:
        changed = set(self.changed)
        out: list[str] = []
        if "status" in changed:
            out.append(self._status())
        elif "completed_on" in changed:
            out.append(self._moved("Completion date", "completed_on"))
        if "due_date" in changed:
            out.append(self._due())
        if "lead_agency" in changed:
            out.append(self._set("Lead agency", "lead_agency", str))
        if "owner_text" in changed:
            out.append(self._set("Owner", "owner_text", str))
        if "owner_contact" in changed:
            out.append(self._set("Owner's contact", "owner_contact", self.people.contact))
        if "outcome" in changed:
            out.append(self._outcome())
        known = {"status", "completed_on", "due_date", "lead_agency", "owner_text"}
        known |= {"owner_contact", "outcome", "review_reasons"}
        out += [self._other(k) for k in self.changed if k not in known | NOISE]
        out += self._reasons()
        note = self.data.get("note")
        if note:
            out.append(f"Progress note by {self.by}: {_plain(note)}")
        return out

    def _status(self) -> str:
        old, new = self.before.get("status"), self.after.get("status")
        if new == "completed":
            on = self.after.get("completed_on")
            when = f" on {self.day(on)}" if on else ""
            return f"Marked completed{when} by {self.by} (was {_status(old)})"
        if old == "completed":
            return f"Reopened by {self.by} (status now {_status(new)})"
        return f"Status changed from {_status(old)} to {_status(new)} by {self.by}"

    def _due(self) -> str:
        old, new = self.before.get("due_date"), self.after.get("due_date")
        if old and new:
            text = f"Due date moved from {self.day(old)} to {self.day(new)} by {self.by}"
        elif new:
            text = f"Due date set to {self.day(new)} by {self.by}"
        else:
            text = f"Due date removed by {self.by} (was {self.day(old)})"
        reason = self.data.get("reason")
        return f"{text}: {_plain(reason)}" if reason else text

    def _moved(self, label: str, key: str) -> str:
        old, new = self.day(self.before.get(key)), self.day(self.after.get(key))
        return f"{label} changed from {old} to {new} by {self.by}"

    def _set(self, label: str, key: str, show: Callable[[Any], str]) -> str:
        old, new = self.before.get(key), self.after.get(key)
        if old and new:
            return f"{label} changed from {show(old)} to {show(new)} by {self.by}"
        if new:
            return f"{label} set to {show(new)} by {self.by}"
        return f"{label} removed by {self.by} (was {show(old)})"

    def _outcome(self) -> str:
        old, new = self.before.get("outcome"), self.after.get("outcome")
        if not new:
            return f"Outcome removed by {self.by}"
        verb = "changed" if old else "recorded"
        return f"Outcome {verb} by {self.by}: {_plain(new)}"

    def _other(self, key: str) -> str:
        label = FIELD_LABELS.get(key, key.replace("_", " ")).capitalize()
        old, new = _value(self.before.get(key), self.day), _value(self.after.get(key), self.day)
        return f"{label} changed from {old} to {new} by {self.by}"

    def _reasons(self) -> list[str]:
        if "settled" in self.data:
            note = _plain(self.data["settled"])
            return [f"Needs-review flag settled by {self.by}" + (f": {note}" if note else "")]
        if "review_reasons" not in self.changed:
            return []
        old = _strings(self.before.get("review_reasons"))
        new = _strings(self.after.get("review_reasons"))
        added = [r for r in new if r not in old]
        gone = [r for r in old if r not in new and not self._implied(r)]
        out = []
        if added:
            out.append(f"Flagged for review: {'; '.join(added)}")
        if gone:
            out.append(f"No longer flagged for review: {'; '.join(gone)}")
        return out

    def _implied(self, reason: str) -> bool:
        return any(reason.startswith(p) and f in self.changed for p, f in _IMPLIED.items())


def _reimported(data: dict[str, Any], day: Callable[[Any], str]) -> str:
    """One sentence for a re-import: which fields the plan changed."""
    before, after = _sides(data)
    parts = []
    order = list(FIELD_LABELS)
    for key in sorted(after, key=lambda k: order.index(k) if k in order else len(order)):
        if key in NOISE or before.get(key) == after[key]:
            continue
        label = FIELD_LABELS.get(key, key.replace("_", " "))
        if key in ("due_date", "completed_on"):
            label += f" ({day(before.get(key))} → {day(after[key])})"
        elif key == "status":
            label += f" ({_status(before.get(key))} → {_status(after[key])})"
        parts.append(label)
    source = f"a re-import of {data['file']}" if data.get("file") else "a re-import of the plan"
    return f"Updated by {source}" + (f": {', '.join(parts)}" if parts else "")


def _recomputed(data: dict[str, Any], day: Callable[[Any], str]) -> list[str]:
    before, after = _sides(data)
    anchor = data.get("anchor")
    label = ANCHOR_LABELS.get(str(anchor), str(anchor or "dates").replace("_", " "))
    out = []
    if before.get("due_date") != after.get("due_date"):
        out.append(
            f"Due date recomputed from the review's {label}: "
            f"{day(before.get('due_date'))} → {day(after.get('due_date'))}"
        )
    old, new = _strings(before.get("review_reasons")), _strings(after.get("review_reasons"))
    added, gone = [r for r in new if r not in old], [r for r in old if r not in new]
    if added:
        out.append(f"Flagged for review: {'; '.join(added)}")
    if gone and not out:  # a date now known says why its flag went
        out.append(f"No longer flagged for review: {'; '.join(gone)}")
    return out


def _generic(kind: str, by: str) -> str:
    words = kind.rsplit(".", 1)[-1].replace("_", " ").strip() or "changed"
    return f"{words[:1].upper()}{words[1:]} by {by}"


# --- messages --------------------------------------------------------------------------------


def _messages(session: Session, action_id: int) -> list[tuple[int, Entry]]:
    """The messages sent (or being sent, or that failed) about the action, one entry each."""
    ids = _message_ids(session, action_id)
    if not ids:
        return []
    rows = session.execute(
        select(
            Notification.id,
            Notification.template,
            Notification.to_addrs,
            Notification.cc_addrs,
            Notification.state,
            Notification.sent_at,
            Notification.created_at,
            Notification.last_error,
            Notification.calendar.is_not(None).label("invites"),
        )
        .where(Notification.id.in_(sorted(ids)))
        .order_by(Notification.id)
    ).all()
    failed = _failed_at(session, [r.id for r in rows if r.state in ("failed", "dead")])
    # A tick sends one message per recipient: those alike (same time, kind, outcome) are
    # told as one sentence naming them all.
    alike: dict[tuple[Any, ...], tuple[int, list[_Outcome]]] = {}
    for r in rows:
        o = _outcome(r, failed.get(r.id))
        alike.setdefault((o.at, o.kind, o.label, o.error, o.invites), (r.id, []))[1].append(o)
    return [(first, _told(group)) for first, group in alike.values()]


def _message_ids(session: Session, action_id: int) -> set[int]:
    """Every message that listed the action. A firing links one message only (the last one
    its tick wrote), but a firing reaching three people makes three: each message's enqueue
    event, written at the firing's time, names the actions it carries."""
    fired = session.execute(
        select(Firing.fired_at, Firing.notification_id).where(
            Firing.subject_type == "action",
            Firing.subject_id == action_id,
            Firing.outcome == "fired",
        )
    ).all()
    ids = {r.notification_id for r in fired if r.notification_id is not None}
    times = sorted({r.fired_at for r in fired})
    for batch in chunked(times):
        events = session.execute(
            select(AuditEvent.subject, AuditEvent.data).where(
                AuditEvent.kind == "notification.enqueue",
                AuditEvent.at.in_(batch),
            )
        )
        for subject, data in events:
            carried = _loads(data).get("actions")
            if isinstance(carried, list) and action_id in carried:
                ids.add(int(subject.removeprefix("notification:")))
    return ids


def _failed_at(session: Session, ids: list[int]) -> dict[int, dt.datetime]:
    if not ids:
        return {}
    rows = session.execute(
        select(AuditEvent.subject, func.max(AuditEvent.at))
        .where(
            AuditEvent.subject.in_([f"notification:{i}" for i in ids]),
            AuditEvent.kind.in_(["notification.failed", "notification.dead"]),
        )
        .group_by(AuditEvent.subject)
    )
    return {int(subject.split(":", 1)[1]): at for subject, at in rows}


@dataclass(frozen=True)
class _Outcome:
    """Where one message stands."""

    at: dt.datetime
    kind: str  # message.sent, message.failed, message.pending
    label: str
    error: str | None
    invites: bool
    to: list[str]
    cc: list[str]


def _outcome(r: Any, failed_at: dt.datetime | None) -> _Outcome:
    label = TEMPLATE_LABELS.get(r.template, r.template.replace("_", " ").capitalize())
    error = _plain(r.last_error) if r.last_error else None
    invites = bool(r.invites) and r.template != "calendar_update"
    to, cc = list(r.to_addrs or []), list(r.cc_addrs or [])
    if r.state == "sent":
        return _Outcome(r.sent_at or r.created_at, "message.sent", label, error, invites, to, cc)
    if r.state in ("failed", "dead"):
        return _Outcome(failed_at or r.created_at, "message.failed", label, error, invites, to, cc)
    return _Outcome(r.created_at, "message.pending", label, error, invites, to, cc)


def _told(group: list[_Outcome]) -> Entry:
    o = group[0]
    to = _and([a for m in group for a in m.to]) or "nobody"
    if o.kind == "message.sent":
        text = f"{o.label} sent to {to}"
        cc = _and([a for m in group for a in m.cc])
        if cc:
            text += f", copied to {cc}"
        if o.invites:
            text += ", with a calendar invitation"
        if o.error:
            text += f" (some addresses were refused: {o.error})"
    elif o.kind == "message.failed":
        text = f"{o.label} to {to} failed: {o.error or 'no reason was recorded'}"
    elif o.error:
        text = f"{o.label} to {to} not delivered yet (it will be tried again): {o.error}"
    else:
        text = f"{o.label} to {to} is waiting to be sent"
    return Entry(o.at, SYSTEM, text, o.kind)


def _and(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c" (each once)."""
    unique = list(dict.fromkeys(items))
    return " and ".join([", ".join(unique[:-1]), unique[-1]] if len(unique) > 1 else unique)


# --- values ----------------------------------------------------------------------------------


def _day(value: Any, tz: ZoneInfo) -> str:
    """An ISO date (or date-time) as "31 Dec 2023"; nothing as "none"; anything else as is."""
    if value is None or value == "":
        return "none"
    day: dt.date | None = None
    if isinstance(value, dt.datetime):
        day = value.astimezone(tz).date() if value.tzinfo else value.date()
    elif isinstance(value, dt.date):
        day = value
    elif isinstance(value, str):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                return _plain(value)
            day = moment.astimezone(tz).date() if moment.tzinfo else moment.date()
    if day is None:
        return _plain(value)
    return f"{day.day} {day:%b %Y}"


def _sides(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event's "before" and "after" mappings, empty where missing or not mappings."""
    before, after = data.get("before"), data.get("after")
    return (
        before if isinstance(before, dict) else {},
        after if isinstance(after, dict) else {},
    )


def _status(value: Any) -> str:
    return str(value).replace("_", " ") if value else "none"


def _value(value: Any, day: Callable[[Any], str]) -> str:
    if value is None or value == "" or value == []:
        return "none"
    if isinstance(value, str) and len(value) == 10 and value[4:5] == "-" and value[7:8] == "-":
        return day(value)
    return _plain(value)


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _plain(value: Any) -> str:
    """Any recorded value as one line of text, shortened if long."""
    if isinstance(value, Mapping):
        text = " — ".join(_plain(v) for v in value.values() if v)
    elif isinstance(value, list | tuple):
        text = "; ".join(_plain(v) for v in value if v)
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"
