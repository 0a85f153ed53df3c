"""A large plan import while the daemon writes (issue #15: "database is locked").

On SQLite an import holds the single write lock from the first statement of its transaction to
its commit. The daemon's sender and tick write in short transactions (BEGIN IMMEDIATE, a small
write, COMMIT) and wait behind it for up to the busy timeout (``db.BUSY_TIMEOUT``), then fail
with "database is locked". Writing row by row, a 20,000-row import held the lock for well over a
minute, beyond the 30 s the timeout then was; here a writer keeps writing, as the sender does,
through the whole of such an import, and must never fail (DHR_IMPORT_SCALE_ROWS=100000 runs it
at the benchmark's largest size, a lock held for about 35 s). How fast an import is, and how
long it holds the lock at 100,000 rows, is measured by `bench/run.py --only import`
(docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bench.importer import plan_csv
from dhr_workflow import audit, db, reviews
from dhr_workflow.importer import read_plan
from dhr_workflow.importer.apply import ImportReport, apply_plan, desired
from dhr_workflow.models import Action, AuditEvent, DueBasis
from tests.conftest import ACTOR, NOW

ROWS = int(os.environ.get("DHR_IMPORT_SCALE_ROWS", "20000"))


def _sender_write(store: db.Store, n: int) -> None:
    """What the sender does after each delivery: a short transaction with an audit event."""
    with store.transaction() as s:
        audit.record(
            s, now=NOW, actor="sender", kind="notification.sent", subject=f"notification:{n}"
        )


def _import(store: db.Store, plan: Any, digest: str, done: threading.Event) -> list[Any]:
    """Start the import in a thread, in one transaction as `dhr-workflow import` runs it."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            with store.transaction() as s:
                report = apply_plan(
                    s, "BIG", plan, title=None, source="plan.csv", digest=digest,
                    today=NOW.date(), now=NOW, actor=ACTOR, dry_run=False,
                )  # fmt: skip
            outcome.append(report)
        except BaseException as exc:  # the main thread reports it
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="import", daemon=True).start()
    return outcome


@pytest.mark.slow
def test_a_large_import_never_locks_the_daemons_writers_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.migrate(url)
    path = tmp_path / "plan.csv"
    path.write_text(plan_csv(ROWS), encoding="utf-8")
    source, plan = read_plan(path)  # before the transaction, as the CLI and the web app do
    importer, sender = db.Store(url), db.Store(url)
    locked, done = threading.Event(), threading.Event()
    # Runs after db.py's own "begin" listener, which issues BEGIN IMMEDIATE: the lock is held.
    event.listen(importer.engine, "begin", lambda _conn: locked.set())
    outcome = _import(importer, plan, source.sha256, done)
    writes = waited_through_import = 0
    try:
        assert locked.wait(120), "the import never began its transaction"
        while not done.is_set():
            during = not done.is_set()
            _sender_write(sender, writes)  # "database is locked" here is the failure
            writes += 1
            waited_through_import += during
        _sender_write(sender, writes)
        writes += 1
    finally:
        done.wait(600)
        importer.dispose()
    [report] = outcome
    assert isinstance(report, ImportReport), report
    assert report.count("create") == ROWS
    assert waited_through_import >= 1  # the writer really was queued behind the import
    with sender.reading() as s:
        assert s.scalar(select(func.count()).select_from(Action)) == ROWS
        sent = select(func.count()).where(AuditEvent.kind == "notification.sent")
        assert s.scalar(sent) == writes
        assert audit.verify(s).ok  # both writers appended to one unbroken chain
    sender.dispose()


def test_the_generated_plan_is_one_action_a_row_with_every_kind_of_target(
    tmp_path: Path,
) -> None:
    """The plan this test and the benchmark import: what bench/importer.py says it holds."""
    path = tmp_path / "plan.csv"
    path.write_text(plan_csv(500), encoding="utf-8")
    assert plan_csv(500) == plan_csv(500)  # the same plan every time
    _, plan = read_plan(path)
    assert len(plan.rows) == 500
    assert any(r.index == 2 for r in plan.rows)  # second actions under one recommendation
    assert len({r.lead_agency for r in plan.rows}) == 20
    anchors = dict.fromkeys(reviews.ANCHORS, NOW.date())
    values = [desired(r, anchors, NOW.date()) for r in plan.rows]
    assert {v["due_basis"] for v in values} == {b.value for b in DueBasis}
    assert {v["status"] for v in values} == {"open", "completed"}
