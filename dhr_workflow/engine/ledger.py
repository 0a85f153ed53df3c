"""Writing a tick: the firing ledger (claimed first), then the messages this process won,
into the outbox, with their audit events."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import Integer, Row, String, Table, bindparam, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

# A module import, not names: invitations imports the engine (see engine.selection).
from dhr_workflow import audit, db, invitations, links, outbox
from dhr_workflow.batching import chunked
from dhr_workflow.engine import digests
from dhr_workflow.engine.model import Context, Gap, Hit, Key, Message, TickResult, key
from dhr_workflow.errors import TimeWentBack
from dhr_workflow.models import Firing, FiringOutcome, TickMark
from dhr_workflow.recipients import Directory


def commit(session: Session, result: TickResult, ctx: Context, *, actor: str) -> TickResult:
    """Record the tick: ledger rows first (the claim), then only the messages whose firings
    this process won, so concurrent replicas never enqueue the same reminder twice. Messages
    are rendered (those evaluate left unrendered), enqueued and audited RENDER_CHUNK at a
    time; the bodies commit rendered itself are let go once in the outbox (subject kept)."""
    now = ctx.at
    _move_marks(session, result.rules, now)
    claim = _claim(session, _firing_rows(result.messages), now)
    directory = Directory(session)
    kept: list[Message] = []
    # Ledger row -> the message that told of it (the last, when several did): written once,
    # after the messages, so a row reaching three people is updated once, not three times.
    told: dict[int, int] = {}
    for chunk in chunked(result.messages, digests.RENDER_CHUNK):
        lazy = {id(m) for m in chunk if m.rendered is None}
        mine = _keep_won(chunk, claim.lost)  # another replica took some firings: re-render
        digests.render(session, [m for m in mine if m.rendered is None], ctx, directory)
        invited = invitations.Invitations(session, mine, ctx)
        events = _enqueue_messages(session, mine, ctx, invited, claim.won, told)
        invited.remember()
        audit.record_many(session, now=now, actor=actor, events=events)
        for msg in mine:
            msg.links = []  # stored (hashed) with the message; the secrets go no further
            msg.attachment = None  # in the outbox row
            if id(msg) in lazy:
                msg.rendered = None  # the outbox row holds the bodies now
        kept += mine
    _link(session, told)
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
    stmt = db.insert(session, TickMark).values([{"rule_id": r, "at": at} for r in rules])
    # Two replicas ticking a moment apart: the mark keeps the later time, whoever commits last.
    later_of = func.greatest if isinstance(stmt, postgresql.Insert) else func.max
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rule_id"], set_={"at": later_of(TickMark.at, stmt.excluded.at)}
        )
    )


def _firing_rows(messages: list[Message]) -> Iterator[dict[str, Any]]:
    """A "fired" ledger row per hit of the messages, once (a hit is in every message of its
    recipients), generated as the claim consumes them."""
    seen: set[int] = set()
    for msg in messages:
        for hit in msg.hits:
            if id(hit) not in seen:
                seen.add(id(hit))
                yield _row(hit, hit.period_key, hit.step, FiringOutcome.FIRED)


def _keep_won(messages: list[Message], lost: set[Key]) -> list[Message]:
    """The messages with the hits this process claimed; one that lost some must re-render."""
    if not lost:
        return messages
    mine = []
    for msg in messages:
        hits = [h for h in msg.hits if key(h) not in lost]
        if len(hits) < len(msg.hits):
            msg.hits, msg.rendered = hits, None
        if hits:
            mine.append(msg)
    return mine


def _row(hit: Hit, period: str, step: str | None, outcome: FiringOutcome) -> dict[str, Any]:
    """A ledger row's own columns; :func:`_insert_firings` adds the time, one for all."""
    return {
        "rule_id": hit.rule,
        "subject_type": hit.subject_type,
        "subject_id": hit.subject_id,
        "period_key": period,
        "step": step,
        "outcome": outcome,
    }


_KEY = ["rule_id", "subject_type", "subject_id", "period_key"]
_ARRAYS = {
    "rule_id": String, "subject_type": String, "subject_id": Integer, "period_key": String,
    "step": String, "outcome": String,
}  # fmt: skip
PG_BATCH = 10_000  # ledger rows per INSERT on PostgreSQL (as arrays: one parameter a column)


def _insert_firings(
    session: Session, rows: list[dict[str, Any]], now: dt.datetime, *, returning: bool = False
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Insert ledger rows, skipping any whose (rule, subject, period) is already there;
    with ``returning``, the new rows' id and key. On PostgreSQL the rows go as one array per
    column through ``unnest`` (a catch-up records hundreds of thousands of superseded steps:
    one statement for ten thousand, not a row of parameters each); SQLite is in-process, and
    SQLAlchemy's multi-row VALUES serve it."""
    back = (Firing.id, *(getattr(Firing, c) for c in _KEY)) if returning else ()
    if session.get_bind().dialect.name != "postgresql":
        each = sqlite.insert(Firing).on_conflict_do_nothing(index_elements=_KEY)
        params = [{**r, "fired_at": now} for r in rows]
        found: list[Row[*tuple[Any, ...]]] = []
        for batch in chunked(params):
            result = session.execute(each.returning(*back) if back else each, batch)
            found += result.all() if back else []
        return found
    columns = _unnest("new", _ARRAYS)
    source = select(*columns.c, literal(now, Firing.fired_at.type))
    stmt = (
        postgresql.insert(typing_cast(Table, Firing.__table__))  # Core: ORM inserts take no SELECT
        .from_select([*_ARRAYS, "fired_at"], source)
        .on_conflict_do_nothing(index_elements=_KEY)
    )
    found = []
    for batch in chunked(rows, PG_BATCH):
        arrays = {c: [r[c] for r in batch] for c in _ARRAYS}
        result = session.execute(stmt.returning(*back) if back else stmt, arrays)
        found += result.all() if back else []
    return found


def _unnest(name: str, columns: dict[str, type[TypeEngine[Any]]]) -> TableValuedAlias:
    """PostgreSQL rows from one array per column (a bound parameter named after each):
    ``unnest(:a, :b) AS name(a, b)``, so thousands of rows are one statement's few values."""
    arrays = (bindparam(c, type_=postgresql.ARRAY(t)) for c, t in columns.items())
    return func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


@dataclass
class Claim:
    """What a claim won (each new ledger row's id, to link it to its message) and lost (keys
    already there: another replica's claim, normally none)."""

    won: dict[Key, int] = field(default_factory=dict)
    lost: set[Key] = field(default_factory=set)


def _claim(session: Session, rows: Iterable[dict[str, Any]], now: dt.datetime) -> Claim:
    """Insert "fired" ledger rows, skipping any already there (another replica's claim);
    consumed PG_BATCH at a time, so a catch-up's rows are never all held at once."""
    claim = Claim()
    for batch in chunked(rows, PG_BATCH):
        unique = {_row_key(r): r for r in batch}
        for firing_id, *won in _insert_firings(session, list(unique.values()), now, returning=True):
            claim.won[typing_cast(Key, tuple(won))] = firing_id
        claim.lost |= {k for k in unique if k not in claim.won}
    return claim


def _row_key(row: dict[str, Any]) -> Key:
    return (row["rule_id"], row["subject_type"], row["subject_id"], row["period_key"])


def _record_superseded(session: Session, hits: list[Hit], now: dt.datetime) -> None:
    """Ledger rows for skipped lower steps (a first tick over a large backlog can skip
    hundreds of thousands), written PG_BATCH or BATCH at a time."""
    rows = (
        _row(hit, k, k.split("|", 1)[-1], FiringOutcome.SUPERSEDED)
        for hit in hits
        for k in hit.superseded
    )
    for batch in chunked(rows, PG_BATCH):
        _insert_firings(session, batch, now)


def _new_gaps(
    session: Session, gaps: list[Gap], now: dt.datetime
) -> list[tuple[str, str, dict[str, Any]]]:
    """Audit each gap once per firing period (a ledger row marks it reported)."""
    events = []
    for gap in gaps:
        rows = [
            _row(h, f"{h.period_key}#gap:{gap.role}", h.step, FiringOutcome.GAP) for h in gap.hits
        ]
        # Once per key (a hit can miss the same role in two notify steps), and claimed as a
        # whole: a repeat in a later batch would read as reported before.
        unique = list({_row_key(r): r for r in rows}.values())
        seen = _claim(session, unique, now).lost  # reported before (or by another replica)
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


def _enqueue_messages(
    session: Session,
    messages: list[Message],
    ctx: Context,
    invited: invitations.Invitations,
    firing_ids: dict[Key, int],
    told: dict[int, int],
) -> list[tuple[str, str, dict[str, Any]]]:
    """Put rendered messages in the outbox and store their links; notes in ``told`` which
    ledger rows each tells of, and returns their audit events (written with the chunk's)."""
    outgoing = []
    for msg in messages:
        assert msg.rendered is not None
        outgoing.append(
            outbox.Outgoing(
                msg.rule, msg.template, msg.to, msg.rendered, msg.cc, invited.parts(msg),
                msg.reply_to, msg.attachment,
            )
        )  # fmt: skip
    events = []
    for msg, note in zip(messages, outbox.enqueue(session, outgoing, now=ctx.at), strict=True):
        links.store(session, msg.links, now=ctx.at)
        told.update((firing_ids[key(h)], note.id) for h in msg.hits)
        events.append(
            (
                "notification.enqueue",
                f"notification:{note.id}",
                {**msg.to_json(), "message_id": note.message_id},
            )
        )
    return events


def _link(session: Session, told: dict[int, int]) -> None:
    """Point ledger rows at the message that told of them, by primary key: on PostgreSQL
    PG_BATCH rows a statement (joined to two arrays), elsewhere one UPDATE per message and
    BATCH rows."""
    if session.get_bind().dialect.name == "postgresql":
        pairs = _unnest("told", {"firing": Integer, "note": Integer})
        stmt = (
            update(typing_cast(Table, Firing.__table__))
            .where(Firing.id == pairs.c.firing)
            .values(notification_id=pairs.c.note)
        )
        for batch in chunked(told.items(), PG_BATCH):
            session.execute(stmt, {"firing": [i for i, _ in batch], "note": [n for _, n in batch]})
        return
    by_message: dict[int, list[int]] = defaultdict(list)
    for firing_id, notification_id in told.items():
        by_message[notification_id].append(firing_id)
    for notification_id, firing_ids in by_message.items():
        for ids in chunked(firing_ids):
            session.execute(
                update(Firing).where(Firing.id.in_(ids)).values(notification_id=notification_id)
            )


REVIEW_PART = 500  # reviews whose reports commit together after a tick's first part


def parts(result: TickResult, size: int = REVIEW_PART) -> list[TickResult]:
    """The tick cut into parts that commit one after another, none splitting a message.

    The first part holds every message about actions (a digest spans many actions and
    recipients, so its firings are claimed together), the calendar follow-ups and the gaps;
    each later part holds the reports of ``size`` reviews, one message per review and
    recipient, sharing no firing with anything else. A catch-up over a large store thus
    commits as it goes: a crash keeps what was committed, and the next tick finds the rest.
    A tick with reports of ``size`` reviews or fewer (a steady morning's) is one part: a
    transaction of its own for a handful of reports costs more than they do."""
    if len({h.subject_id for h in result.hits if _is_report(h)}) <= size:
        return [result]
    first = replace(
        result,
        messages=[m for m in result.messages if not _is_report(m.hits[0])],
        hits=[h for h in result.hits if not _is_report(h)],
        unsent=[h for h in result.unsent if not _is_report(h)],
    )
    reports: dict[int, list[Message]] = defaultdict(list)
    for msg in result.messages:
        if _is_report(msg.hits[0]):
            reports[msg.hits[0].subject_id].append(msg)
    hits: dict[int, list[Hit]] = defaultdict(list)
    for hit in result.hits:
        if _is_report(hit):
            hits[hit.subject_id].append(hit)
    unsent = {id(h) for h in result.unsent}
    rest = [
        TickResult(
            result.at,
            [m for i in ids for m in reports[i]],
            [],
            [h for i in ids for h in hits[i]],
            [h for i in ids for h in hits[i] if id(h) in unsent],
            result.rules,
        )
        for ids in chunked(sorted(hits), size)
    ]
    return [first, *rest]


def commit_rest(
    store: db.Store,
    todo: list[TickResult],
    ctx: Context,
    *,
    actor: str,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Commit the parts after the first (which the caller commits in the transaction it
    evaluated in, before this), each in a transaction of its own, saying how far it has got;
    returns the messages enqueued. Parts are let go of as they are written."""
    enqueued, total = 0, sum(len(p.messages) for p in todo)
    for number in range(len(todo)):
        part = todo[number]
        with store.transaction() as session:
            enqueued += len(commit(session, part, ctx, actor=actor).messages)
        todo[number] = replace(part, messages=[], hits=[], unsent=[])
        if progress is not None:
            progress(
                f"part {number + 2} of {len(todo) + 1} committed: "
                f"{enqueued:,} of {total:,} review reports enqueued"
            )
    return enqueued


def _is_report(hit: Hit) -> bool:
    return hit.subject_type == "review"
