"""`dhr-workflow run`: scheduler, sender and HTTP in one asyncio loop.

- One APScheduler job per rule schedule (cron in the partnership time zone; recurring review
  rules are checked daily), a calendar follow-up job, and the outbox sender (an interval, and
  woken right after a tick enqueues). Jobs keep nothing in a job store: the database is the
  source of truth and every tick is idempotent, so several replicas can run side by side.
- On start: schema check, rules check, one catch-up tick of every rule (a daemon that was
  down sends each overdue reminder once, not a backlog), then the schedule.
- A job that raises is logged, audited and shown in /healthz; the next run happens.
- SIGHUP reloads rules and templates (an invalid set is refused, logged and audited; the old
  one stays — whatever the loader raised). SIGTERM/SIGINT stop taking work, let an in-flight
  send finish, and exit 0.
- The log says each new gap (a rule with nobody to tell) once, when it is audited; identical
  warnings repeated in a loop are rate-limited (logs.py).
- The web app has its own database connections and a bounded number of HTTP connections
  (web/server.py): no number of clients can take the scheduler's and the sender's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import signal
import socket
import time
from typing import Any

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from dhr_workflow import audit, db, engine, logs, outbox
from dhr_workflow.config import Settings
from dhr_workflow.errors import TimeWentBack, UserError
from dhr_workflow.models import AuditEvent, Review
from dhr_workflow.ruleset import RuleSet, trigger
from dhr_workflow.targets import ANCHOR_OPTION
from dhr_workflow.templates import Templates
from dhr_workflow.transports import make_transport
from dhr_workflow.web import Health, Metrics, create_app
from dhr_workflow.web import server as http_server

log = logging.getLogger("dhr_workflow.daemon")
ACTOR = "daemon"
REPLICA_SKEW = 300  # seconds: replicas' ticks of one rule this close are the same run
JOB_TIMEOUT = 600  # seconds: a hung job must not block the next runs


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = db.Store(settings.database_url)
        db.check_schema(self.store.engine)
        # The web app's own connection pools: any number of requests waiting on the database
        # cannot take the connections the scheduler and the sender need.
        self.web_store = db.Store(settings.database_url)
        self.ruleset, self.templates = self._load()
        self.health, self.metrics = Health(), Metrics()
        self.scheduler = AsyncIOScheduler(
            timezone=settings.tz,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self.owner = outbox.worker_id()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.sending = asyncio.Lock()
        self.running: set[str] = set()

    def _load(self) -> tuple[RuleSet, Templates]:
        s = self.settings
        return engine.load_rules(s.rules_dir, s.templates_dir, s.tz)

    # --- jobs ----------------------------------------------------------------------------
    def _schedule(self) -> None:
        for job in self.scheduler.get_jobs():
            if job.id.startswith("rule:"):
                job.remove()
        for item in self.ruleset.entries():
            self.scheduler.add_job(
                self._tick,
                trigger(item, self.settings.tz),
                args=[[item.id]],
                id=f"rule:{item.id}",
            )
        self.scheduler.add_job(
            self._tick, IntervalTrigger(minutes=15), args=[["calendar"]], id="rule:calendar"
        )
        self.scheduler.add_job(
            self._anchor,
            CronTrigger(hour=6, minute=5, timezone=self.settings.tz),
            id="audit-anchor",
            replace_existing=True,
        )
        self.health.rules_loaded_at = dt.datetime.now(dt.UTC).isoformat()

    async def _tick(self, only: list[str] | None) -> None:
        name = ",".join(only) if only else "all"
        if name in self.running:  # a slow run is still going: never two at once
            log.warning("tick %s skipped: the previous run has not finished", name)
            return
        self.running.add(name)
        try:
            await self._tick_once(only, name)
        finally:
            self.running.discard(name)

    async def _tick_once(self, only: list[str] | None, name: str) -> None:
        work = asyncio.ensure_future(asyncio.to_thread(self._tick_sync, only))
        try:
            done, _ = await asyncio.wait({work}, timeout=JOB_TIMEOUT)
            if not done:
                # A tick is database work in a thread: giving up on it would not stop it, only
                # let the next run start beside it. Say so, and let later runs wait (the first
                # tick over a large store can take many minutes).
                log.warning("tick %s still running after %d s", name, JOB_TIMEOUT)
                await asyncio.wait({work})
            enqueued = work.result()
        except TimeWentBack as exc:
            # Another replica ticked this rule a moment later and committed first (it sent
            # what this run would have): nothing lost. Longer behind is a clock set back, or a
            # `tick --at` in the future: said, since the rule sends nothing until time catches up.
            if exc.behind > REPLICA_SKEW:
                log.warning("tick %s: %s", name, exc)
            return
        except Exception as exc:  # a job never dies silently: logged, audited, shown
            await asyncio.to_thread(self._job_failed, f"tick:{name}", exc)
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        for rule in only or self.ruleset.ids:
            self.health.last_tick[rule] = now
            self.metrics.ticks.labels(rule=rule).inc()
        self.metrics.enqueued.inc(enqueued)
        self.health.job_errors.pop(f"tick:{name}", None)
        if enqueued:
            log.info("tick %s: enqueued %d message(s)", name, enqueued)
            self.wake.set()

    def _tick_sync(self, only: list[str] | None) -> int:
        """One tick in this thread; returns the number of messages enqueued (the hits and
        messages of a large tick are freed here, not kept until the loop looks at them)."""
        s = self.settings
        ctx = engine.Context(
            dt.datetime.now(dt.UTC),
            s.tz,
            s.holidays_region,
            self.templates,
            s.partnership,
            s.mail_from,
            s.public_base_url,
            report_attach_mb=s.report_attach_mb,
            report_marking=s.report_marking,
        )
        with self.store.transaction() as session:
            head = session.scalar(select(func.max(AuditEvent.seq))) or 0
            # Rendered by commit a chunk at a time, not all at once: the catch-up tick after
            # downtime can enqueue thousands of digests.
            result = engine.evaluate(session, self.ruleset, ctx, only=only, render=False)
            first, *rest = engine.parts(result)
            del result
            enqueued = len(engine.commit(session, first, ctx, actor=ACTOR).messages)
            gaps = _new_gaps(session, head, ctx.at)
            refs = _review_refs(session, gaps)
        # Review reports after the rest, 500 reviews a transaction: a catch-up's thousands
        # commit as they go, each part logged.
        if rest:
            name = ",".join(only) if only else "all"
            log.info(
                "tick %s: part 1 of %d committed: %d message(s)", name, len(rest) + 1, enqueued
            )
            enqueued += engine.commit_rest(
                self.store,
                rest,
                ctx,
                actor=ACTOR,
                progress=lambda line: log.info("tick %s: %s", name, line),
            )
        for gap in gaps:  # once each: commit audits a gap once, and only that is logged
            for line in describe_gap(gap, refs):
                log.warning("%s", line)
        return enqueued

    async def _anchor(self) -> None:
        try:
            await asyncio.to_thread(self._anchor_sync)
        except Exception as exc:
            await asyncio.to_thread(self._job_failed, "audit-anchor", exc)

    def _anchor_sync(self) -> None:
        """The audit log's head, daily, outside the database: in the log (syslog or journald
        keeps it) and appended to DHR_AUDIT_ANCHOR_FILE when set."""
        with self.store.reading() as s:
            head = audit.head(s)
        if head is None:
            return
        anchor = audit.Anchor(head.seq, head.hash, dt.datetime.now(dt.UTC).isoformat())
        where = self.settings.audit_anchor_file
        if where is not None:
            audit.write_anchor(where, anchor)
        log.info(
            "audit anchor: event #%d, hash %s%s",
            anchor.seq, anchor.hash, f", appended to {where}" if where else "",
        )  # fmt: skip

    async def _send(self) -> None:
        async with self.sending:  # SIGTERM waits for this: an in-flight send finishes
            start = time.perf_counter()
            try:
                batch = await asyncio.wait_for(
                    outbox.send_batch(
                        self.store,
                        make_transport(self.settings),
                        self.settings,
                        clock=lambda: dt.datetime.now(dt.UTC),
                        owner=self.owner,
                        actor=ACTOR,
                        templates=self.templates,
                        stop=self.stopping.is_set,  # SIGTERM: give back what is not yet tried
                    ),
                    JOB_TIMEOUT,
                )
            except Exception as exc:
                await asyncio.to_thread(self._job_failed, "sender", exc)
                return
            self.metrics.send_seconds.observe(time.perf_counter() - start)
            for outcome in ("sent", "retried", "failed", "dead"):
                self.metrics.outcomes.labels(outcome=outcome).inc(len(getattr(batch, outcome)))
            self.health.job_errors.pop("sender", None)
            if batch.claimed:
                log.info(
                    "sender: sent %d, retry %d, failed %d, dead %d",
                    len(batch.sent),
                    len(batch.retried),
                    len(batch.failed),
                    len(batch.dead),
                )
                if batch.errors:  # an operator reading the log should see why, not only how many
                    reasons = "; ".join(sorted(set(batch.errors))[:3])
                    log.warning("sender: %d not delivered: %s", len(batch.errors), reasons)
                if len(batch.sent) + len(batch.failed) > 0:
                    self.wake.set()  # there may be more due right away

    async def _sender_loop(self) -> None:
        while not self.stopping.is_set():
            await self._send()
            self.wake.clear()
            waiters = [
                asyncio.create_task(self.wake.wait()),
                asyncio.create_task(self.stopping.wait()),
            ]
            await asyncio.wait(
                waiters,
                timeout=self.settings.send_interval_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in waiters:
                task.cancel()

    def _job_failed(self, job: str, exc: BaseException) -> None:
        first = str(exc).splitlines()[0] if str(exc) else ""
        # A problem the operator can act on is said as such ("the database file ... is
        # read-only"); anything else keeps its class name.
        message = first if isinstance(exc, UserError) else f"{exc.__class__.__name__}: {first}"
        log.error("job %s failed: %s", job, message)
        self.health.job_errors[job] = message
        self.metrics.job_errors.labels(job=job).inc()
        try:
            with self.store.transaction() as s:
                audit.record(
                    s,
                    now=dt.datetime.now(dt.UTC),
                    actor=ACTOR,
                    kind="job.error",
                    subject=f"job:{job}",
                    data={"error": message},
                )
        except UserError as exc:  # the store itself is unusable (missing, read-only): said
            log.error("could not audit the failure of %s: %s", job, exc)
        except Exception:  # the database may be what failed; the log line stands
            log.exception("could not audit the failure of %s", job)

    # --- lifecycle -----------------------------------------------------------------------
    def _on_hup(self) -> None:
        # Signal handlers must not block the loop: load and audit in a thread.
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.reload))
        self.tasks.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # reload() let it through
            log.error("reload failed: %r", task.exception())

    def reload(self) -> None:
        """Load the rules and templates again; a set that fails to load for any reason (a
        one-line UserError, or anything the loader raised: a YAML bomb's MemoryError, a
        RecursionError) is refused, logged and audited, and the current rules stay."""
        error = None
        try:
            ruleset, templates = self._load()
        except Exception as exc:
            error = str(exc) if isinstance(exc, UserError) else f"{exc.__class__.__name__}: {exc}"
            error = error.splitlines()[0][:500] if error.strip() else exc.__class__.__name__
        if error is not None:  # outside the except: what the loader built is freed by now
            log.error("reload refused, keeping the current rules: %s", error)
            self._try_audit("rules.reload_refused", {"error": error})
            return
        self.ruleset, self.templates = ruleset, templates
        self._schedule()
        log.info("rules reloaded: %d rule(s)", len(ruleset.entries()))
        self._try_audit("rules.reload", {"rules": ruleset.ids})

    def _try_audit(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._audit(kind, data)
        except Exception as exc:  # the log line above stands; say why there is no event
            log.error("could not audit %s: %s", kind, exc)

    def _audit(self, kind: str, data: dict[str, Any]) -> None:
        with self.store.transaction() as s:
            audit.record(
                s, now=dt.datetime.now(dt.UTC), actor=ACTOR, kind=kind, subject="rules", data=data
            )

    def _check_port(self) -> None:
        """Fail with one clear line, before any work, if the HTTP address is taken."""
        s = self.settings
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((s.http_host, s.http_port))
            except OSError as exc:
                raise UserError(
                    f"cannot listen on {s.http_host}:{s.http_port} "
                    f"({exc.strerror}); set DHR_HTTP_PORT"
                ) from None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self._check_port()
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self._audit("daemon.start", {"rules": self.ruleset.ids})
        s = self.settings
        server = uvicorn.Server(
            http_server.config(
                create_app(
                    self.web_store,
                    s,
                    self.health,
                    self.metrics,
                    rules=lambda: (self.ruleset, self.templates),
                ),
                host=s.http_host,
                port=s.http_port,
                max_connections=s.http_max_connections,
                read_timeout=s.http_read_timeout,
                forwarded_allow_ips=s.trusted_proxies,
            )
        )
        # The daemon owns SIGTERM/SIGINT/SIGHUP (graceful stop, reload); uvicorn's serve()
        # would capture and re-raise them, so run its inner loop directly.
        http = asyncio.create_task(server._serve())
        await self._tick(None)  # catch up once on start, then follow the schedule
        self._schedule()
        self.scheduler.start()
        self.health.scheduler_running = True
        where = (
            f"written to {self.settings.mail_dir.resolve()}"
            if self.settings.mail_transport == "file"
            else f"sent through {self.settings.smtp_host}:{self.settings.smtp_port}"
        )
        base = self.settings.public_base_url
        log.info(
            "dhr-workflow running; web app at %s/ (sign in with a link from "
            "`dhr-workflow signin-link EMAIL`); health at %s/healthz; messages are %s",
            base,
            base,
            where,
        )
        sender = asyncio.create_task(self._sender_loop())
        await self.stopping.wait()
        log.info("stopping: no new work; finishing any send in flight")
        self.scheduler.shutdown(wait=False)
        self.health.scheduler_running = False
        async with self.sending:
            sender.cancel()
        server.should_exit = True
        await http
        self._try_audit("daemon.stop", {})
        self.store.dispose()
        self.web_store.dispose()


def _new_gaps(session: Any, head: int, at: dt.datetime) -> list[dict[str, Any]]:
    """The gaps this tick audited for the first time (its ``rule.gap`` events after ``head``)."""
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.seq > head, AuditEvent.kind == "rule.gap", AuditEvent.actor == ACTOR)
        .order_by(AuditEvent.seq)
    )
    # The time tells this tick's events from another replica's committed meanwhile.
    return [json.loads(e.data) for e in rows if e.at == at]


def _review_refs(session: Any, gaps: list[dict[str, Any]]) -> dict[int, str]:
    """Review ids to refs for the reviews the gaps name: people know a review by its ref."""
    ids = {i for gap in gaps for i in gap.get("review_ids") or []}
    if not ids:
        return {}
    return dict(session.execute(select(Review.id, Review.ref).where(Review.id.in_(ids))).all())


def describe_gap(gap: dict[str, Any], refs: dict[int, str]) -> list[str]:
    """A gap as log lines that say what closes it (the tick command's wording): the review
    date a rule counts from, review by review, or the contact nobody is."""
    rule, role = gap.get("rule"), str(gap.get("role"))
    reviews = [refs.get(i, f"id {i}") for i in gap.get("review_ids") or []]
    option = ANCHOR_OPTION.get(role.removeprefix("review."))
    if option is not None:
        return [
            f"gap: rule {rule}: review {ref} has no {option.removeprefix('--')} date: set it "
            f"with dhr-workflow reviews set {ref} {option} DATE"
            for ref in reviews
        ]
    actions = gap.get("actions") or []
    who = f"actions {_ids(actions)}" if actions else f"reviews {_ids(reviews)}"
    return [
        f"gap: rule {rule}: nobody is {role} for {who}, so nobody was told "
        "(add one with `dhr-workflow contacts add` or `contacts import`)"
    ]


def _ids(ids: list[Any], most: int = 20) -> str:
    shown = ", ".join(map(str, ids[:most]))
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logs.install()  # a fault repeating in a loop is one line a minute, not a flood
    for noisy in ("apscheduler", "alembic"):  # job bookkeeping is not news at INFO
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    daemon = Daemon(settings)
    asyncio.run(daemon.serve())
