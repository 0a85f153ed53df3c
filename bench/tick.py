"""Benchmark: evaluating every default rule over N actions on SQLite (or PostgreSQL).

    python bench/tick.py [--actions 100000] [--runs 5] [--url sqlite:///...]

Prints the median of several runs of: the bare SQL selection the deadline ladder compiles to
(the floor), a full dry-run evaluation of all rules (selection, ladder arithmetic, recipients,
digests and rendering), and a committed first tick (ledger, outbox and audit writes).
Data: N actions, 50 per review (N/50 reviews, plans agreed over the last two years), 50
agencies with a lead and a manager each, 90% dated with due dates spread over two years around
"today", 20% completed, so the first tick has a large backlog of real work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select

from dhr_workflow import db, engine
from dhr_workflow.models import Action, Agency, AgencyAlias, Contact, Review
from dhr_workflow.selection import action_clauses

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")
TODAY = dt.date(2024, 6, 3)
NOW = dt.datetime(2024, 6, 3, 9, tzinfo=LONDON)


def REVIEWS(n: int) -> int:
    return max(1, n // 50)


def populate(store: db.Store, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    with store.transaction() as s:
        # 50 actions a review, plans agreed on days spread over two years, like a national
        # deployment's many partnerships.
        reviews = [
            {
                "ref": f"R{i}",
                "title": f"Review {i}",
                "status": "open",
                "kind": "dhr",
                "plan_agreed_on": TODAY - dt.timedelta(rng.randint(0, 730)),
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(REVIEWS(n))
        ]
        s.execute(insert(Review), reviews)
        s.execute(insert(Agency), [{"name": f"Agency {i}", "created_at": NOW} for i in range(50)])
        s.execute(
            insert(AgencyAlias),
            [{"agency_id": i + 1, "alias_key": f"agency {i}"} for i in range(50)],
        )
        people = [
            {
                "name": f"Lead {i}",
                "email": f"lead{i}@agency.example.org",
                "role": "lead",
                "agency_id": i + 1,
                "created_at": NOW,
            }
            for i in range(50)
        ]
        people += [
            {
                "name": f"Manager {i}",
                "email": f"manager{i}@agency.example.org",
                "role": "manager",
                "agency_id": i + 1,
                "created_at": NOW,
            }
            for i in range(50)
        ]
        people += [
            {
                "name": "Coordinator",
                "email": "coordinator@csp.example.org",
                "role": "coordinator",
                "created_at": NOW,
            },
            {"name": "Chair", "email": "chair@csp.example.org", "role": "chair", "created_at": NOW},
        ]
        s.execute(insert(Contact), people)
        batch = []
        for i in range(n):
            dated = rng.random() < 0.9
            status = rng.choices(["open", "in_progress", "completed"], [6, 2, 2])[0]
            batch.append({
                "review_id": 1 + i % REVIEWS(n), "ref": str(i), "text": f"Action {i}",
                "lead_agency_id": 1 + rng.randrange(50),
                "due_date": TODAY + dt.timedelta(rng.randint(-400, 400)) if dated else None,
                "due_basis": "fixed" if dated else "none", "status": status,
                "needs_review": not dated,
                "review_reasons": [] if dated else ["due: no target date"], "sequence": 0,
                "created_at": NOW, "updated_at": NOW,
            })  # fmt: skip
            if len(batch) == 10_000:
                s.execute(insert(Action), batch)
                batch = []
        if batch:
            s.execute(insert(Action), batch)


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", help="database URL (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.db"
        eng = db.make_engine(url, create=True)
        db.upgrade(eng)
        eng.dispose()
        store = db.Store(url)
        populate(store, args.actions)
        ruleset, templates = engine.load_rules(ROOT / "rules", ROOT / "templates" / "email", LONDON)
        ctx = engine.Context(NOW, LONDON, "england", templates)
        ladder = ruleset.ladders[0]

        def floor() -> None:
            with store.reading() as s:
                clauses = action_clauses(
                    s, ladder.applies_to, today=TODAY, now=NOW, tz=LONDON, region="england"
                )
                s.execute(
                    select(
                        Action.id,
                        Action.due_date,
                        Action.review_id,
                        Action.lead_agency_id,
                        Action.owner_contact_id,
                    ).where(*clauses, Action.due_date.is_not(None))
                ).all()

        def dry_run() -> None:
            with store.reading() as s:
                engine.evaluate(s, ruleset, ctx)

        floor_s = median_seconds(floor, args.runs)
        eval_s = median_seconds(dry_run, args.runs)
        start = time.perf_counter()
        with store.transaction() as s:
            result = engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor="bench")
        commit_s = time.perf_counter() - start
        second = median_seconds(dry_run, args.runs)
        store.dispose()
    print(f"actions: {args.actions:,} on {url.split(':')[0]}; median of {args.runs} runs")
    print(f"  bare ladder selection (floor):      {floor_s:7.3f} s")
    print(
        f"  evaluate all rules, dry run:         {eval_s:7.3f} s  ({eval_s / floor_s:.1f}x floor)"
    )
    print(
        f"  first tick, committed (1 run):       {commit_s:7.3f} s  "
        f"({len(result.messages)} messages, {result.superseded:,} superseded)"
    )
    print(
        f"  evaluate again after the tick:       {second:7.3f} s  ({second / floor_s:.1f}x floor)"
    )


if __name__ == "__main__":
    main()
