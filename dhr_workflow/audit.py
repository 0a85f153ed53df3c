"""The audit log: append-only events in a SHA-256 hash chain.

Each event's hash covers the previous event's hash and the event's canonical JSON (seq, time,
actor, kind, subject, data), so altering any row breaks its own hash and deleting one breaks the
chain at the next row. Appends are serialised (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on
SQLite) so concurrent writers cannot fork the chain. Nothing here updates or deletes a row.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ScalarResult, insert, select, text
from sqlalchemy.orm import Session

from dhr_workflow.batching import chunked
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import Agency, AuditEvent, Review

GENESIS = "0" * 64
# Any constant works; it only has to be the same for every writer of this database.
_AUDIT_LOCK_KEY = 0x6448525F41554454  # "dHR_AUDT"


def to_jsonable(value: Any) -> Any:
    """Dates as ISO strings, enums as their values, containers recursively."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _event_hash(
    prev_hash: str, seq: int, at: dt.datetime, actor: str, kind: str, subject: str, data: str
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "at": at.astimezone(dt.UTC).isoformat(),
            "actor": actor,
            "kind": kind,
            "subject": subject,
            "data": data,
        }
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def record_many(
    session: Session,
    *,
    now: dt.datetime,
    actor: str,
    events: Sequence[tuple[str, str, Mapping[str, Any]]],
) -> None:
    """Append several (kind, subject, data) events at once: one lock, one head read."""
    if not events:
        return
    _lock(session)
    head = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    at = now.astimezone(dt.UTC)
    rows = []
    for kind, subject, data in events:
        seq += 1
        payload = canonical_json(data)
        digest = _event_hash(prev, seq, at, actor, kind, subject, payload)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor": actor,
                "kind": kind,
                "subject": subject,
                "data": payload,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(insert(AuditEvent), rows)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY})


def record(
    session: Session,
    *,
    now: dt.datetime,
    actor: str,
    kind: str,
    subject: str,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Append one event to the chain, in the caller's transaction."""
    record_many(session, now=now, actor=actor, events=[(kind, subject, data or {})])


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head: str
    problem: str | None = None


def verify(session: Session) -> Verification:
    """Walk the chain in order; report the first event that is altered or follows a gap."""
    with closing(_in_order(session)) as rows:
        result = _walk(rows)
    if result.ok and result.count == 0 and _store_has_data(session):
        return Verification(
            False,
            0,
            GENESIS,
            "the audit log is empty but the store holds reviews or agencies: "
            "its events were removed",
        )
    return result


def _store_has_data(session: Session) -> bool:
    # Every review and agency is created through an audited write, so none can predate the log.
    return any(session.scalar(select(t.id).limit(1)) is not None for t in (Review, Agency))


def _walk(rows: Iterator[AuditEvent]) -> Verification:
    prev, expected_seq, count = GENESIS, 1, 0
    for ev in rows:
        where = f"event #{ev.seq} (id {ev.id}, {ev.kind} {ev.subject})"
        if ev.seq != expected_seq or ev.prev_hash != prev:
            missing = f"#{expected_seq}" if ev.seq != expected_seq else "an earlier event"
            return Verification(
                False, count, prev, f"chain broken before {where}: {missing} was deleted or altered"
            )
        if _event_hash(prev, ev.seq, ev.at, ev.actor, ev.kind, ev.subject, ev.data) != ev.hash:
            return Verification(
                False, count, prev, f"{where} was altered: its contents no longer match its hash"
            )
        prev, expected_seq, count = ev.hash, ev.seq + 1, count + 1
    return Verification(True, count, prev)


def _in_order(session: Session) -> ScalarResult[AuditEvent]:
    # Streamed in batches: a long-lived partnership's log can be large.
    return session.scalars(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
    )


def events(session: Session, since: dt.datetime | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    return list(session.scalars(query))


def event_dict(ev: AuditEvent) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "at": ev.at.isoformat(),
        "actor": ev.actor,
        "kind": ev.kind,
        "subject": ev.subject,
        "data": json.loads(ev.data),
        "prev_hash": ev.prev_hash,
        "hash": ev.hash,
    }


EXPORT_COLUMNS = ["seq", "at", "actor", "kind", "subject", "data", "prev_hash", "hash"]


def export_csv(session: Session, path: Path) -> int:
    """Write every event to ``path`` atomically (a temporary file renamed into place), readable
    by its owner only, like the database: the log quotes plan text and names."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            count = _write_events(session, csv.writer(fh))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"{path}: cannot write the export ({exc.strerror})") from None
    return count


def _write_events(session: Session, writer: Any) -> int:
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for ev in _in_order(session):  # runs to the end, which closes the cursor
        writer.writerow(
            [
                ev.seq,
                ev.at.isoformat(),
                ev.actor,
                ev.kind,
                ev.subject,
                ev.data,
                ev.prev_hash,
                ev.hash,
            ]
        )
        count += 1
    return count


# --- anchors ---------------------------------------------------------------------------------
#
# The chain proves that no event was altered or removed *before* the head. Removing the newest
# events, or rewriting the whole chain after dropping the triggers, leaves a chain that checks
# out: only a copy of an earlier head kept outside the database can show it. An anchor is that
# copy — (seq, hash, time) appended to a file on another path (DHR_AUDIT_ANCHOR_FILE), logged,
# and printed in the chair's report. `audit verify --anchors FILE` fails when an anchored head
# is no longer in the chain. It proves nothing about events after the newest anchor, nor about
# an anchor file an attacker could also rewrite: keep it somewhere they cannot.


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    at: str  # ISO time it was taken
    line: int = 0  # in the file it was read from


def head(session: Session) -> Anchor | None:
    """The chain's newest event, as an anchor (None while the log is empty)."""
    row = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    return Anchor(row.seq, row.hash, "") if row else None


def write_anchor(path: Path, anchor: Anchor) -> None:
    """Append one anchor line to ``path`` (created owner-only), flushed to disk."""
    line = json.dumps({"seq": anchor.seq, "hash": anchor.hash, "at": anchor.at}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write the audit anchor ({exc.strerror})") from None


def read_anchors(path: Path) -> list[Anchor]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the anchors ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not an anchor file (not UTF-8 text)") from None
    anchors = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            anchors.append(Anchor(int(item["seq"]), str(item["hash"]), str(item["at"]), n))
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(
                f'{path}:{n}: not an anchor line (expected {{"seq", "hash", "at"}})'
            ) from None
    return anchors


def check_anchors(session: Session, anchors: Sequence[Anchor]) -> str | None:
    """The first anchored head that is no longer in the chain, described; None if all are."""
    if not anchors:
        return None
    seqs = sorted({a.seq for a in anchors})
    found: dict[int, str] = {}
    for chunk in chunked(seqs):
        found |= dict(
            session.execute(
                select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq.in_(chunk))
            ).all()
        )
    for a in sorted(anchors, key=lambda a: a.seq):
        if found.get(a.seq) != a.hash:
            what = "is gone" if a.seq not in found else "has another hash now"
            return (
                f"event #{a.seq} anchored at {a.at} (line {a.line}) {what}: events were "
                "removed or the chain was rewritten"
            )
    return None
