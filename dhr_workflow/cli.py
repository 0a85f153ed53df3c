"""The `dhr-workflow` command line: thin over the services, one-line errors for user mistakes."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dhr_workflow import (
    __version__,
    actions,
    agencies,
    agency_directory,
    anchors,
    audit,
    contacts,
    db,
    engine,
    feeds,
    history,
    messages,
    outbox,
    reports,
    reviews,
    signin,
)
from dhr_workflow.config import Settings, load_settings
from dhr_workflow.errors import UserError
from dhr_workflow.importer import read_plan
from dhr_workflow.importer.apply import Change, ImportReport, Understood, apply_plan, understood
from dhr_workflow.importer.export import export_review
from dhr_workflow.importer.readers import FORMATS
from dhr_workflow.models import ActionStatus, ContactRole, Review, ReviewStatus
from dhr_workflow.ruleset import summary as ruleset_summary
from dhr_workflow.targets import ANCHOR_OPTION
from dhr_workflow.transports import make_transport

ACTOR_LIMIT = 200  # the audit column's width


class App:
    """What one invocation needs: settings, the store, the clock and who is acting."""

    def __init__(self, config: Path | None, actor: str | None) -> None:
        self._config = config
        self._settings: Settings | None = None
        self._store: db.Store | None = None
        self.actor = actor or f"cli:{_login()}"
        if not self.actor.strip() or len(self.actor) > ACTOR_LIMIT:
            raise UserError(f"--actor must be 1 to {ACTOR_LIMIT} characters")

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._config)
        return self._settings

    def store(self, *, init: bool = False) -> db.Store:
        """The store, schema-checked (``init`` creates a missing SQLite file instead)."""
        if self._store is None:
            self._store = db.Store(self.settings.database_url, create=init)
            if not init:
                db.check_schema(self._store.engine)
        return self._store

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(self.settings.tz).date()

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


def _login() -> str:
    try:
        return getpass.getuser()
    except OSError:  # no user name in a bare container
        return "unknown"


class _Failure(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Group(click.Group):
    """Turns user errors anywhere below into one line on stderr and exit status 2."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _usage_failure(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_failure(exc) from None
        except UserError as exc:
            raise _Failure(str(exc)) from None
        except DBAPIError as exc:
            app = ctx.find_object(App)
            url = app.settings.database_url_for_display if app else "?"
            raise _Failure(str(db.describe_database_error(exc, url))) from None


def _usage_failure(exc: click.UsageError) -> _Failure:
    where = f"{exc.ctx.command_path}: " if exc.ctx else ""
    hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
    return _Failure(f"{where}{exc.format_message().rstrip('.')}{hint}")


class DateParam(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.5
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.date):
            return value
        for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
            try:
                return dt.datetime.strptime(value.strip(), fmt).date()
            except ValueError:
                continue
        self.fail(f"{value!r} is not a date (use YYYY-MM-DD, e.g. 2024-03-31)", param, ctx)


DATE = DateParam()


class DateTimeParam(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.5
    name = "DATETIME"

    # ISO, or the UK form the date options take, with or without a time
    UK = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.datetime):
            return value
        parsed = self._parse(" ".join(value.split()))
        if parsed is None or not 1970 <= parsed.year <= 2999:
            self.fail(
                f"{value!r} is not a date or time (use YYYY-MM-DD or DD/MM/YYYY, with a time "
                "if you like: 2024-01-20T08:00 or 20/01/2024 08:00)",
                param,
                ctx,
            )
        return parsed

    def _parse(self, value: str) -> dt.datetime | None:
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        for fmt in self.UK:
            try:
                return dt.datetime.strptime(value, fmt)
            except ValueError:
                continue
        return None


DATETIME = DateTimeParam()
pass_app = click.make_pass_decorator(App)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML settings file (default: $DHR_CONFIG).",
)
@click.option("--actor", help="Name recorded in the audit log (default: cli:<login>).")
@click.version_option(__version__, prog_name="dhr-workflow")
@click.pass_context
def main(ctx: click.Context, config: Path | None, actor: str | None) -> None:
    """Deadlines, reminders and escalation for Domestic Homicide Review action plans."""
    app = App(config, actor)
    ctx.obj = app
    ctx.call_on_close(app.close)


@main.command()
@pass_app
def init(app: App) -> None:
    """Create the database schema, or upgrade it to this version."""
    store = app.store(init=True)
    before, after = db.upgrade(store.engine)
    where = app.settings.database_url_for_display
    if before != after:
        with store.transaction() as s:
            audit.record(
                s,
                now=app.now(),
                actor=app.actor,
                kind="schema.upgrade",
                subject="schema",
                data={"from": before, "to": after},
            )
    if before == after:
        click.echo(f"schema already up to date ({after}) in {where}")
    else:
        click.echo(
            f"schema {'upgraded' if before else 'created'} ({before or '-'} -> {after}) in {where}"
        )


# --- reviews ---------------------------------------------------------------------------------


@main.group("reviews")
def reviews_group() -> None:
    """Reviews (one per DHR) and their anchor dates."""


def _anchor_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for name, help_ in reversed(
        [
            ("--partnership", "Community Safety Partnership."),
            ("--plan-agreed", "Date the action plan was agreed."),
            ("--report-accepted", "Date the Home Office accepted the report."),
            ("--published", "Date the report was published."),
            ("--completed", "Date the review was completed."),
        ]
    ):
        f = click.option(name, type=None if name == "--partnership" else DATE, help=help_)(f)
    return f


@reviews_group.command("add")
@click.argument("ref")
@click.option("--title", required=True, help="Title, e.g. 'Domestic Homicide Review Case A'.")
@_anchor_options
@pass_app
def reviews_add(app: App, /, ref: str, title: str, **dates: Any) -> None:
    """Add a review with reference REF."""
    with app.store().transaction() as s:
        review = reviews.add(s, ref, title, now=app.now(), actor=app.actor, **_review_fields(dates))
        said = f"added review {review.ref}"
    click.echo(said)


@reviews_group.command("set")
@click.argument("ref")
@click.option("--title")
@click.option("--status", type=click.Choice([s.value for s in ReviewStatus]))
@_anchor_options
@pass_app
def reviews_set(app: App, /, ref: str, **fields: Any) -> None:
    """Change a review's title, status or anchor dates."""
    values = _review_fields(fields)
    if all(v is None for v in values.values()):
        raise UserError("nothing to change: give at least one option (see --help)")
    with app.store().transaction() as s:
        _, moved = anchors.update_review(
            s, ref, today=app.today(), now=app.now(), actor=app.actor, **values
        )
    followed = f"; {moved} due date(s) followed the new dates" if moved else ""
    click.echo(f"updated review {ref}{followed}")


def _review_fields(opts: dict[str, Any]) -> dict[str, Any]:
    names = {
        "plan_agreed": "plan_agreed_on",
        "report_accepted": "report_accepted_on",
        "published": "published_on",
        "completed": "completed_on",
    }
    return {names.get(k, k): v for k, v in opts.items()}


@reviews_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def reviews_list(app: App, as_json: bool) -> None:
    """List reviews with their action counts."""
    with app.store().reading() as s:
        rows = reviews.list_with_counts(s)
    if as_json:
        _print_json([{**reviews.snapshot(r), "actions": n, "open_actions": o} for r, n, o in rows])
        return
    _table(
        ["ref", "title", "status", "published", "actions", "open"],
        [[r.ref, r.title, r.status, _d(r.published_on), str(n), str(o)] for r, n, o in rows],
    )


# --- import ----------------------------------------------------------------------------------


@main.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--review", "review_ref", required=True, help="The review's ref (created if new).")
@click.option("--title", help="Title for a new review (default: the plan's own title).")
@click.option(
    "--format", "fmt", type=click.Choice(["auto", *FORMATS]), default="auto", show_default=True
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def import_plan(
    app: App,
    /,
    path: Path,
    review_ref: str,
    title: str | None,
    fmt: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import an action plan (extracted text, CSV, XLSX, DOCX or PDF) into a review."""
    with _reading_progress(not as_json) as pages_read:
        source, plan = read_plan(path, fmt, pages_read)  # type: ignore[arg-type]  # click.Choice
    store = app.store()
    session = store.reading() if dry_run else store.transaction()
    with session as s, _progress(len(plan.rows), not as_json) as advance:
        report = apply_plan(
            s,
            review_ref,
            plan,
            title=title,
            source=path.name,
            digest=source.sha256,
            today=app.today(),
            now=app.now(),
            actor=app.actor,
            dry_run=dry_run,
            progress=advance,
        )
    if as_json:
        _print_json(
            {
                **report.to_json(),
                "dry_run": dry_run,
                "format": source.format,
                "warnings": list(source.warnings),
            }
        )
    else:
        _print_import(report, source.format, dry_run)
        for warning in source.warnings:  # read as best it could be, but a person should look
            click.echo(f"warning: {path.name}: {warning}")


@main.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--review", "review_ref", required=True, help="The review to write out.")
@pass_app
def export_plan(app: App, /, path: Path, review_ref: str) -> None:
    """Write a review in the import template (.xlsx or .csv) to correct and import back."""
    with app.store().reading() as s:
        count = export_review(s, review_ref, path)
    click.echo(
        f"{path}: {count} actions of review {review_ref}; correct it, then import it back with "
        f"`dhr-workflow import {path.name} --review {review_ref}`"
    )


@contextmanager
def _progress(total: int, wanted: bool) -> Iterator[Callable[[int], None]]:
    # A bar only for people at a terminal; logs and pipes get the summary alone.
    console = Console(stderr=True)
    with Progress(
        console=console, disable=not (wanted and console.is_terminal), transient=True
    ) as progress:
        task = progress.add_task("importing", total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def _reading_progress(wanted: bool) -> Iterator[Callable[[int, int], None]]:
    # Pages read of a PDF (a long one takes a while); the page count is known once it opens.
    console = Console(stderr=True)
    with Progress(
        console=console, disable=not (wanted and console.is_terminal), transient=True
    ) as progress:
        task = progress.add_task("reading pages", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _print_import(report: ImportReport, fmt: str, dry_run: bool) -> None:
    verb = "would be" if dry_run else "were"
    review = f"review {report.review}" + (" (new)" if report.review_created else "")
    click.echo(
        f"{'DRY RUN, nothing written: ' if dry_run else ''}{report.source} ({fmt}) -> "
        f"{review}: {report.count('create')} actions {verb} created, "
        f"{report.count('update')} updated, {report.count('unchanged')} unchanged"
    )
    seen = understood(report)
    if dry_run:
        _print_actions(seen)
    for said in _understood_lines(seen):
        click.echo(said)
    flagged = report.needs_review()
    if flagged:
        click.echo(f"needs review ({len(flagged)}):")
        for c in flagged:
            where = f"line {c.row.line}, {c.row.section} rec {c.row.display_ref}"
            for reason in c.values["review_reasons"]:
                click.echo(f"  {where}: {reason}")
    for line, why in report.ignored:
        click.echo(f"  ignored line {line}: {why}")
    for action_id, ref in report.missing:
        click.echo(f"  not in this file: action {action_id} (rec {ref}); left as it is")


def _print_actions(seen: Understood) -> None:
    """Every action, a section of the table per recommendation."""
    columns = ["line", "section", "ref", "change", "lead agency", "owner", "due", "status"]
    table = Table(*columns, "flags", show_lines=False)
    for _section, _ref, changes in seen.recommendations:
        for c in changes:
            cells = [
                str(c.row.line), _short(c.row.section, 30), c.row.display_ref, c.kind,
                _agency_cell(c), _short(c.values["owner_text"] or "", 30),
                _d(c.values["due_date"]) or (c.values["target_text"] and "-") or "",
                c.values["status"],
                ", ".join(sorted({r.split(":", 1)[0] for r in c.values["review_reasons"]})),
            ]  # fmt: skip
            table.add_row(*(Text(cell) for cell in cells))
        table.add_section()
    _console().print(table)


def _agency_cell(change: Change) -> str:
    name = _short(change.values["lead_agency"] or "", 40)
    match = change.agency
    if match and match.kind == "fuzzy":
        return f"{name} (fuzzy: {_short(match.written, 30)!r}, {match.score})"
    if match and match.kind == "unknown":
        return f"? {_short(match.written, 40)!r}"
    if match and match.kind == "alias":
        return f"{_short(match.agency or '', 40)} (as {_short(match.written, 30)!r})"
    return name


def _understood_lines(seen: Understood) -> list[str]:
    """The summary: rows, agencies by how they matched, due dates by how they were read."""
    agency = seen.agency_counts()
    unknown = f", {agency['unknown']} not in the directory" if agency["unknown"] else ""
    dates = seen.dates
    lines = [
        f"read {seen.rows_read} action(s), ignored {seen.rows_ignored} line(s); agencies: "
        f"{agency['new']} new, {agency['matched']} matched, {agency['fuzzy']} fuzzy-matched"
        f"{unknown}; due dates: {dates['parsed']} read, {dates['relative']} relative, "
        f"{dates['recurring']} recurring, {dates['missing']} missing, "
        f"{dates['completed']} not needed (completed)"
    ]
    for kind in ("new", "fuzzy", "unknown"):
        lines += [f"  {m.describe()}" for m in seen.agencies[kind]]
    return lines


# --- rules and ticks -------------------------------------------------------------------------


@main.group("rules")
def rules_group() -> None:
    """The declarative rule set (YAML)."""


@rules_group.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@pass_app
def rules_check(app: App, /, directory: Path | None) -> None:
    """Validate a rules directory (default: the configured one) and its templates."""
    settings = app.settings
    ruleset, _ = engine.load_rules(
        directory or settings.rules_dir, settings.templates_dir, settings.tz
    )
    for item in ruleset.entries():
        click.echo(f"{ruleset.sources[item.id]}: {ruleset_summary(item)}")
    click.echo(f"{len(ruleset.entries())} rule(s) OK")


@main.command()
@click.option(
    "--at",
    "at",
    type=DATETIME,
    help="Evaluate as of this date or time "
    "(default: now; naive values are in the configured time zone).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--rule", "rule_ids", multiple=True,
    help="Only this rule (repeatable; 'calendar' for the calendar follow-up).",
)  # fmt: skip
@pass_app
def tick(
    app: App, /, at: dt.datetime | None, dry_run: bool, as_json: bool, rule_ids: tuple[str, ...]
) -> None:
    """Evaluate every rule once: record firings and enqueue messages (sending comes later)."""
    settings = app.settings
    ruleset, templates = engine.load_rules(settings.rules_dir, settings.templates_dir, settings.tz)
    # "calendar" is the built-in follow-up of calendar invitations (every 15 minutes in the
    # daemon); naming it sends due updates now.
    unknown = sorted(set(rule_ids) - set(ruleset.ids) - {engine.CALENDAR_RULE})
    if unknown:
        raise UserError(f"no rule with id {', '.join(unknown)} (see `dhr-workflow rules check`)")
    when = _localise(at, settings.tz) if at else app.now()
    ctx = engine.Context(
        when,
        settings.tz,
        settings.holidays_region,
        templates,
        settings.partnership,
        settings.mail_from,
        settings.public_base_url,
        report_attach_mb=settings.report_attach_mb,
        report_marking=settings.report_marking,
    )
    store = app.store()
    with store.reading() if dry_run else store.transaction() as s:
        result = engine.evaluate(s, ruleset, ctx, only=rule_ids or None)
        if not dry_run:
            engine.commit(s, result, ctx, actor=app.actor)
        refs = _review_refs(s, result.gaps)
    if as_json:
        gaps = [
            {**data, "reviews": [refs.get(i) for i in data["review_ids"]]}
            for data in (g.to_json() for g in result.gaps)
        ]
        _print_json({**result.to_json(), "gaps": gaps, "dry_run": dry_run})
        return
    _print_tick(result, dry_run, refs)


def _review_refs(session: Session, gaps: list[engine.Gap]) -> dict[int, str]:
    """Review ids to refs, for the reviews the gaps name: people know a review by its ref."""
    ids = {h.subject_id for g in gaps for h in g.hits if h.subject_type == "review"}
    if not ids:
        return {}
    return dict(session.execute(select(Review.id, Review.ref).where(Review.id.in_(ids))).all())


def _localise(at: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return at.replace(tzinfo=tz) if at.tzinfo is None else at


def _print_tick(result: engine.TickResult, dry_run: bool, refs: dict[int, str]) -> None:
    verb = "would enqueue" if dry_run else "enqueued"
    click.echo(
        f"{'DRY RUN, nothing written: ' if dry_run else ''}tick at "
        f"{result.at.isoformat()}: {verb} {len(result.messages)} message(s), "
        f"{result.superseded} lower step(s) superseded, {len(result.gaps)} gap(s)"
    )
    if result.messages:
        _table(
            ["rule", "template", "to", "cc", "actions", "subject"],
            [
                [
                    m.rule,
                    m.template,
                    ", ".join(m.to),
                    ", ".join(m.cc),
                    _short(", ".join(map(str, m.action_ids)) or (m.review or ""), 30),
                    _short(m.rendered.subject if m.rendered else "", 60),
                ]
                for m in result.messages
            ],
        )
    for gap in result.gaps:
        for line in _gap_lines(gap, refs):
            click.echo(line)


def _gap_lines(gap: engine.Gap, refs: dict[int, str]) -> list[str]:
    """A gap as the command that closes it: the missing review date to set, review by review,
    or the contact to add."""
    data = gap.to_json()
    reviews = [refs.get(i, f"id {i}") for i in data["review_ids"]]
    anchor = gap.role.removeprefix("review.")
    if anchor in ANCHOR_OPTION:
        option = ANCHOR_OPTION[anchor]
        return [
            f"gap: rule {gap.rule}: review {ref} has no {option.removeprefix('--')} date: set it "
            f"with dhr-workflow reviews set {ref} {option} DATE"
            for ref in reviews
        ]
    who = (
        f"actions {_short(', '.join(map(str, data['actions'])), 80)}"
        if data["actions"]
        else f"review{'s' if len(reviews) > 1 else ''} {_short(', '.join(reviews), 80)}"
    )
    return [
        f"gap: rule {gap.rule}: nobody is {gap.role} for {who} "
        "(add one with `dhr-workflow contacts add` or `contacts import`)"
    ]


# --- the daemon and feeds ---------------------------------------------------------------------


@main.command("run")
@pass_app
def run_daemon(app: App, /) -> None:
    """Run the daemon: scheduled ticks, the sender and the HTTP server (feeds, health)."""
    from dhr_workflow import daemon

    app.store()  # schema check first: a clear error instead of a half-started daemon
    daemon.run(app.settings)


@main.group("feeds")
def feeds_group() -> None:
    """iCal deadline feeds (secret subscription URLs)."""


@feeds_group.command("create")
@click.option("--all", "all_", is_flag=True, help="Every action.")
@click.option("--review", help="One review's actions.")
@click.option("--agency", help="One lead agency's actions.")
@click.option("--owner", help="Actions owned by this contact email.")
@click.option("--label", help="A name to recognise the feed by.")
@pass_app
def feeds_create(
    app: App,
    /,
    all_: bool,
    review: str | None,
    agency: str | None,
    owner: str | None,
    label: str | None,
) -> None:
    """Create a feed and print its subscription URL (shown once: keep it secret)."""
    chosen = [
        (k, v)
        for k, v in (("all", all_), ("review", review), ("agency", agency), ("owner", owner))
        if v
    ]
    if len(chosen) != 1:
        raise UserError("choose exactly one of --all, --review, --agency, --owner")
    kind, value = chosen[0]
    with app.store().transaction() as s:
        created = feeds.create(
            s,
            kind,  # type: ignore[arg-type]  # one of the four option names above
            None if kind == "all" else str(value),
            label,
            now=app.now(),
            actor=app.actor,
        )
        said = f"feed {created.token.id}: {app.settings.public_base_url}/feeds/{created.secret}.ics"
    click.echo(said)


@feeds_group.command("list")
@pass_app
def feeds_list(app: App, /) -> None:
    """List feeds (never their secrets)."""
    with app.store().reading() as s:
        rows = [feeds.describe(t) for t in feeds.list_all(s)]
    _table(
        ["id", "scope", "value", "label", "created", "revoked"],
        [
            [
                str(r["id"]),
                r["scope"],
                r["value"] or "",
                r["label"] or "",
                r["created_at"].isoformat()[:16],
                r["revoked_at"].isoformat()[:16] if r["revoked_at"] else "",
            ]
            for r in rows
        ],
    )


@feeds_group.command("revoke")
@click.argument("feed_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@pass_app
def feeds_revoke(app: App, /, feed_id: int) -> None:
    """Revoke a feed: its URL answers 404 from now on."""
    with app.store().transaction() as s:
        feeds.revoke(s, feed_id, now=app.now(), actor=app.actor)
    click.echo(f"feed {feed_id} revoked")


@main.command("signin-link")
@click.argument("email")
@pass_app
def signin_link(app: App, /, email: str) -> None:
    """Print a sign-in link for a contact who may sign in (valid 15 minutes, once)."""
    with app.store().transaction() as s:
        asked = signin.request_link(s, email, now=app.now(), client="cli")
    if asked.person is None:
        raise UserError(
            f"{email} may not sign in: no active coordinator, chair, agency lead or manager "
            "has that address (see `dhr-workflow contacts list`)"
        )
    if asked.secret is None:
        raise UserError(
            f"{email} has asked for {signin.LINKS_PER_ADDRESS} links in the last 15 minutes; "
            "use one of those or wait"
        )
    click.echo(f"sign-in link for {asked.person.name} (valid 15 minutes, works once):")
    click.echo(f"{app.settings.public_base_url}/signin/{asked.secret}")


# --- sending ---------------------------------------------------------------------------------


@main.command()
@click.option("--once", is_flag=True, help="Send one batch and stop.")
@pass_app
def send(app: App, /, once: bool) -> None:
    """Send the messages that are due from the outbox, then stop."""
    settings = app.settings
    store = app.store()
    _, templates = engine.load_rules(settings.rules_dir, settings.templates_dir, settings.tz)
    transport = make_transport(settings)
    owner = outbox.worker_id()
    total = outbox.BatchResult()
    while True:
        batch = asyncio.run(
            outbox.send_batch(
                store,
                transport,
                settings,
                clock=app.now,
                owner=owner,
                actor=app.actor,
                templates=templates,
            )
        )
        for name in ("sent", "retried", "failed", "dead", "lost_lease"):
            getattr(total, name).extend(getattr(batch, name))
        if once or batch.claimed == 0 or len(batch.sent) + len(batch.failed) == 0:
            break
    click.echo(
        f"sent {len(total.sent)}, will retry {len(total.retried)}, "
        f"failed {len(total.failed)}, dead {len(total.dead)}"
    )
    if total.failed or total.dead:
        sys.exit(1)


@main.group("outbox")
def outbox_group() -> None:
    """Messages waiting, sent or failed."""


@outbox_group.command("list")
@click.option("--state", type=click.Choice(outbox.STATES))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def outbox_list(app: App, /, state: str | None, as_json: bool) -> None:
    """List the newest messages (200 at most)."""
    with app.store().reading() as s:
        rows = [outbox.describe(n) for n in outbox.list_rows(s, state)]
    if as_json:
        _print_json(rows)
        return
    _table(
        ["id", "state", "template", "to", "attempts", "subject"],
        [
            [
                str(r["id"]),
                r["state"],
                r["template"],
                _short(", ".join(r["to"]), 40),
                str(r["attempts"]),
                _short(r["subject"], 60),
            ]
            for r in rows
        ],
    )


@outbox_group.command("show")
@click.argument("note_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@pass_app
def outbox_show(app: App, /, note_id: int) -> None:
    """Print a message exactly as it is (or was) sent."""
    with app.store().reading() as s:
        note = outbox.get(s, note_id)
        when = note.sent_at or note.created_at
        message = messages.build(note, mail_from=app.settings.mail_from, now=when)
    click.echo(message.as_string())


@outbox_group.command("retry")
@click.argument("note_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@pass_app
def outbox_retry(app: App, /, note_id: int) -> None:
    """Queue a failed or dead message again."""
    with app.store().transaction() as s:
        outbox.retry(s, note_id, now=app.now(), actor=app.actor)
    click.echo(f"message {note_id} queued again")


# --- agencies and contacts -------------------------------------------------------------------

CONTACT_ID = click.IntRange(1, 2**31 - 1)
ROLE = click.Choice([r.value for r in ContactRole], case_sensitive=False)


@main.group("agencies")
def agencies_group() -> None:
    """Agencies named in plans and contacts: import the directory, list, rename, merge, add
    a spelling."""


@agencies_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def agencies_list(app: App, as_json: bool) -> None:
    """List agencies with their spellings, the open actions they lead and their contacts."""
    with app.store().reading() as s:
        rows = [asdict(a) for a in agencies.list_with_counts(s)]
    if as_json:
        _print_json(rows)
        return
    _table(
        ["id", "name", "part of", "listed", "aliases", "open actions", "contacts"],
        [
            [
                str(r["id"]),
                r["name"],
                r["parent"] or "",
                "yes" if r["listed"] else "",
                _short("; ".join(r["aliases"]), 80),
                str(r["open_actions"]),
                str(r["contacts"]),
            ]
            for r in rows
        ],
    )


@agencies_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_app
def agencies_import(app: App, file: Path) -> None:
    """Import the agency directory from a CSV with columns name[, aliases, parent]; aliases
    are separated by ; or |. Once there is a directory, a plan naming an agency it does not
    know is flagged for review instead of creating one."""
    rows = agency_directory.read_csv(file)
    with app.store().transaction() as s:
        result = agency_directory.import_rows(
            s, rows, now=app.now(), actor=app.actor, source=file.name
        )
    click.echo(
        f"{file}: {result.created} agency(ies) added, {result.updated} updated, "
        f"{result.unchanged} already listed"
    )


@agencies_group.command("rename")
@click.argument("agency")
@click.argument("new_name")
@pass_app
def agencies_rename(app: App, /, agency: str, new_name: str) -> None:
    """Rename AGENCY (its id or any spelling); the old name still finds it."""
    with app.store().transaction() as s:
        found = agencies.resolve(s, agency)
        old = found.name
        agencies.rename(s, found, new_name, now=app.now(), actor=app.actor)
        said = f"agency {found.id}: {old!r} is now {found.name!r} (the old name still finds it)"
    click.echo(said)


@agencies_group.command("merge")
@click.argument("source")
@click.argument("into")
@pass_app
def agencies_merge(app: App, /, source: str, into: str) -> None:
    """Make SOURCE part of INTO (each an id or any spelling): its actions, contacts and
    spellings move, and SOURCE's names find INTO from now on."""
    with app.store().transaction() as s:
        src, dst = agencies.resolve(s, source), agencies.resolve(s, into)
        name = src.name
        result = agencies.merge(s, src, dst, now=app.now(), actor=app.actor)
        said = (
            f"merged {name} into {dst.name}: {result.actions} action(s), "
            f"{result.contacts} contact(s) ({result.deactivated} deactivated as duplicates), "
            f"{result.aliases} spelling(s) moved"
        )
    click.echo(said)


@agencies_group.command("alias")
@click.argument("agency")
@click.argument("alias")
@pass_app
def agencies_alias(app: App, /, agency: str, alias: str) -> None:
    """Teach the store another spelling ALIAS of AGENCY (its id or any spelling)."""
    with app.store().transaction() as s:
        found = agencies.resolve(s, agency)
        key = agencies.add_alias(s, found, alias, now=app.now(), actor=app.actor)
        said = f"agency {found.id} ({found.name}) is now also found as {alias!r} ({key})"
    click.echo(said)


@main.group("contacts")
def contacts_group() -> None:
    """Who receives reminders and escalations."""


@contacts_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--new-agencies",
    is_flag=True,
    help="Create agencies the store does not know yet (else such a row fails the file).",
)
@pass_app
def contacts_import(app: App, file: Path, new_agencies: bool) -> None:
    """Import contacts from a CSV with columns agency, role, name, email[, review]."""
    rows = contacts.read_csv(file)
    with app.store().transaction() as s:
        result = contacts.import_rows(
            s,
            rows,
            now=app.now(),
            actor=app.actor,
            source=file.name,
            allow_new_agencies=new_agencies,
        )
    inactive = f", {result.inactive} inactive, not reactivated" if result.inactive else ""
    click.echo(
        f"{file}: {result.created} contact(s) added, {result.updated} renamed, "
        f"{result.unchanged} already present{inactive}"
    )
    for warning in contacts.unsendable_warnings(rows, str(file)):
        click.echo(f"warning: {warning}")


@contacts_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "all_", is_flag=True, help="Deactivated contacts too.")
@pass_app
def contacts_list(app: App, as_json: bool, all_: bool) -> None:
    """List active contacts (--all: deactivated ones too)."""
    with app.store().reading() as s:
        rows = [contacts.describe(c) for c in contacts.list_all(s, include_inactive=all_)]
    if as_json:
        _print_json(rows)
        return
    cols = ["id", "role", "name", "email", "agency", "review", *(["active"] if all_ else [])]
    _table(cols, [[_cell(r[c]) for c in cols] for r in rows])


@contacts_group.command("add")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--role", required=True, type=ROLE)
@click.option("--agency", help="Its agency, by any known spelling (lead and manager).")
@click.option("--review", help="Its review's ref (family liaison; coordinator or chair of one).")
@pass_app
def contacts_add(app: App, /, **fields: Any) -> None:
    """Add one contact (checked like an imported row)."""
    with app.store().transaction() as s:
        contact = contacts.add(s, contacts.ContactInput(**fields), now=app.now(), actor=app.actor)
        said = f"contact {contact.id} added: {_who(contacts.describe(contact))}"
    click.echo(said)


@contacts_group.command("update")
@click.argument("contact_id", metavar="ID", type=CONTACT_ID)
@click.option("--name")
@click.option("--email")
@click.option("--role", type=ROLE)
@click.option("--agency", help="Its agency, by any known spelling; '' for none.")
@click.option("--review", help="Its review's ref; '' for none.")
@pass_app
def contacts_update(app: App, /, contact_id: int, **fields: Any) -> None:
    """Correct a contact's name, email, role, agency or review."""
    change = contacts.ContactChange(**fields)
    if change == contacts.ContactChange():
        raise UserError("nothing to change: give at least one option (see --help)")
    with app.store().transaction() as s:
        before = contacts.describe(contacts.get(s, contact_id))
        after = contacts.describe(
            contacts.update(s, contact_id, change, now=app.now(), actor=app.actor)
        )
    changed = [f for f in contacts.FIELDS if before[f] != after[f]]
    click.echo(
        f"contact {contact_id}: "
        + (f"{', '.join(changed)} changed: {_who(after)}" if changed else "nothing changed")
    )


@contacts_group.command("deactivate")
@click.argument("contact_id", metavar="ID", type=CONTACT_ID)
@pass_app
def contacts_deactivate(app: App, /, contact_id: int) -> None:
    """Stop sending to a contact (kept, because the audit log names it)."""
    with app.store().transaction() as s:
        contact = contacts.deactivate(s, contact_id, now=app.now(), actor=app.actor)
        said = (
            f"contact {contact.id} deactivated, receives nothing from now on: "
            f"{_who(contacts.describe(contact))}"
        )
    click.echo(said)


@contacts_group.command("reactivate")
@click.argument("contact_id", metavar="ID", type=CONTACT_ID)
@pass_app
def contacts_reactivate(app: App, /, contact_id: int) -> None:
    """Send to a deactivated contact again."""
    with app.store().transaction() as s:
        contact = contacts.reactivate(s, contact_id, now=app.now(), actor=app.actor)
        said = f"contact {contact.id} reactivated: {_who(contacts.describe(contact))}"
    click.echo(said)


@contacts_group.command("gaps")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def contacts_gaps(app: App, as_json: bool) -> None:
    """Roles with nobody to write to: agencies leading open actions without an active lead or
    manager, open reviews without a coordinator or chair."""
    with app.store().reading() as s:
        found = [asdict(g) for g in contacts.gaps(s)]
    if as_json:
        _print_json(found)
        return
    if not found:
        click.echo(
            "no gaps: every agency leading open actions has an active lead and manager, "
            "every open review a coordinator and a chair"
        )
        return
    _table(
        ["role", "where", "open actions"],
        [[g["role"], g["where"], str(g["open_actions"])] for g in found],
    )


def _who(contact: dict[str, Any]) -> str:
    where = contact["agency"] or (f"review {contact['review']}" if contact["review"] else None)
    return f"{contact['name']} <{contact['email']}>, {contact['role']}" + (
        f" of {where}" if where else ""
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


# --- actions ---------------------------------------------------------------------------------

STATUS = click.Choice([s.value for s in ActionStatus])


@main.group("actions")
def actions_group() -> None:
    """Actions from the plans: list, show and update."""


@actions_group.command("list")
@click.option("--review", help="Only this review (ref).")
@click.option("--status", type=STATUS)
@click.option("--agency", help="Only actions led by this agency.")
@click.option("--due-before", type=DATE, help="Only actions due before this date.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def actions_list(
    app: App,
    review: str | None,
    status: str | None,
    agency: str | None,
    due_before: dt.date | None,
    as_json: bool,
) -> None:
    """List actions (overdue ones marked)."""
    flt = actions.ActionFilter(review, ActionStatus(status) if status else None, agency, due_before)
    with app.store().reading() as s:
        rows = _listed(s, flt, app.today())
    if as_json:
        _print_json(rows)
        return
    _table(
        ["id", "review", "rec", "lead agency", "due", "status", "text"],
        [
            [
                str(r["id"]),
                r["review"],
                r["recommendation"] or "",
                r["lead_agency"] or "",
                r["due_date"] or ("review!" if r["needs_review"] else "-"),
                Text(r["status"]) + (Text(", overdue", style="bold red") if r["overdue"] else ""),
                _short(r["text"]),
            ]
            for r in rows
        ],
    )


def _listed(session: Session, flt: actions.ActionFilter, today: dt.date) -> list[dict[str, Any]]:
    """The filter's actions as `actions list --json` prints them: two queries in all (the
    actions, then the latest progress note of each)."""
    selected = actions.query(session, flt)
    notes = actions.latest_notes(session, selected)
    return [
        actions.to_dict(a, today=today, progress=notes.get(a.id))
        for a in session.scalars(selected).unique()
    ]


@actions_group.command("show")
@click.argument("action_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def actions_show(app: App, /, action_id: int, as_json: bool) -> None:
    """Show one action: every field, its progress notes and its history."""
    with app.store().reading() as s:
        shown = _shown(s, action_id, app.today(), app.settings.tz)
    if as_json:
        _print_json(shown)
        return
    _print_action(shown, app.settings.tz)


def _shown(session: Session, action_id: int, today: dt.date, tz: ZoneInfo) -> dict[str, Any]:
    """Everything `actions show` prints: the `actions list --json` keys, then the rest."""
    action = actions.get(session, action_id)
    notes = actions.progress_notes(session, action.id)
    contact = action.owner_contact
    return actions.to_dict(action, today=today, progress=notes[0] if notes else None) | {
        "owner_contact": (
            {
                "id": contact.id,
                "name": contact.name,
                "email": contact.email,
                "active": contact.active,
            }
            if contact
            else None
        ),
        "milestones": action.milestones,
        "sequence": action.sequence,
        "source_file": action.source_file,
        "source_line": action.source_row,
        "progress_notes": [
            {"at": n.at.isoformat(), "note": n.note, "author": n.author, "status": n.status}
            for n in notes
        ],
        "history": [
            {"at": e.at.isoformat(), "actor": e.actor, "sentence": e.sentence, "kind": e.kind}
            for e in history.for_action(session, action.id, tz=tz)
        ],
    }


def _print_action(shown: dict[str, Any], tz: ZoneInfo) -> None:
    contact = shown["owner_contact"]
    source = shown["source_file"] or ""
    if shown["source_line"] is not None:
        source += f" line {shown['source_line']}"
    rec = shown["recommendation"]
    due = f"{shown['due_date']} ({shown['due_basis']})" if shown["due_date"] else "none"
    fields = [
        ("action", str(shown["id"])),
        ("review", shown["review"]),
        ("recommendation", f"{rec}: {shown['recommendation_text'] or '-'}" if rec else ""),
        ("ref", shown["ref"]),
        ("text", shown["text"]),
        ("lead agency", shown["lead_agency"]),
        ("owner", shown["owner"]),
        ("owner contact", _contact_line(contact)),
        ("scope", shown["scope"]),
        ("milestones", shown["milestones"]),
        ("target", shown["target_text"]),
        ("due", due),
        ("status", shown["status"] + (", OVERDUE" if shown["overdue"] else "")),
        ("completed on", shown["completed_on"]),
        ("outcome", shown["outcome"]),
        ("needs review", "; ".join(shown["review_reasons"]) or _cell(shown["needs_review"])),
        ("sequence", str(shown["sequence"])),
        ("source", source.strip()),
    ]
    for label, value in fields:
        lines = (_cell(value) or "-").splitlines() or ["-"]
        click.echo(f"{label + ':':<16}{lines[0]}")
        for line in lines[1:]:
            click.echo(f"{'':<16}{line}")
    _print_dated("Progress notes (newest first)", shown["progress_notes"], "author", "note", tz)
    _print_dated("History", shown["history"], "actor", "sentence", tz)


def _contact_line(contact: dict[str, Any] | None) -> str:
    if contact is None:
        return ""
    gone = "" if contact["active"] else " (deactivated)"
    return f"{contact['name']} <{contact['email']}>, contact {contact['id']}{gone}"


def _print_dated(
    title: str, entries: list[dict[str, Any]], who: str, what: str, tz: ZoneInfo
) -> None:
    click.echo(f"\n{title}:")
    if not entries:
        click.echo("  none")
    for entry in entries:
        at = dt.datetime.fromisoformat(entry["at"]).astimezone(tz)
        text = " ".join(entry[what].split())
        click.echo(f"  {at:%Y-%m-%d %H:%M}  {entry[who]}: {text}")


@actions_group.command("update")
@click.argument("action_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@click.option("--status", type=STATUS)
@click.option("--due", type=DATE, help="New due date (needs --reason).")
@click.option("--reason", help="Why the due date changed (kept in the audit log).")
@click.option("--outcome", help="Outcome text.")
@click.option("--completed-on", type=DATE, help="Completion date (with --status completed).")
@click.option("--agency", help="Lead agency (an existing agency, by any of its spellings).")
@click.option("--owner", help="Owner as written (a person or a role); '' clears it.")
@click.option("--owner-email", help="The owner's contact address (reminders go there).")
@click.option("--note", help="A progress note (kept, dated, with your name).")
@click.option("--settle", help="Settle the needs-review flags, saying why (e.g. 'ongoing work').")
@pass_app
def actions_update(app: App, /, action_id: int, **options: Any) -> None:
    """Change an action: status, due date, outcome, lead agency, owner; add a progress note;
    settle a needs-review flag."""
    if options["status"]:
        options["status"] = ActionStatus(options["status"])
    change = actions.ActionChange(**options)
    if change == actions.ActionChange():
        raise UserError("nothing to change: give at least one option (see --help)")
    with app.store().transaction() as s:
        action = actions.update(
            s, action_id, change, today=app.today(), now=app.now(), actor=app.actor
        )
        flag = "; needs review" if action.needs_review else ""
        said = f"action {action.id}: {action.status}, due {_d(action.due_date) or 'none'}{flag}"
    click.echo(said)


# --- audit -----------------------------------------------------------------------------------


@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("list")
@click.option("--since", type=DATE, help="Only events on or after this date.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def audit_list(app: App, since: dt.date | None, as_json: bool) -> None:
    """List audit events."""
    start = dt.datetime.combine(since, dt.time(), app.settings.tz) if since else None
    with app.store().reading() as s:
        rows = [audit.event_dict(e) for e in audit.events(s, start)]
    if as_json:
        _print_json(rows)
        return
    _table(
        ["seq", "at", "actor", "kind", "subject"],
        [[str(r["seq"]), r["at"][:19], r["actor"], r["kind"], r["subject"]] for r in rows],
    )


@audit_group.command("verify")
@click.option(
    "--anchors",
    "anchor_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An anchor file (see `audit anchor`): fail if any head it holds left the chain.",
)
@pass_app
def audit_verify(app: App, /, anchor_file: Path | None) -> None:
    """Check the hash chain; exit 1 at the first altered or missing event."""
    anchors = audit.read_anchors(anchor_file) if anchor_file else []
    with app.store().reading() as s:
        result = audit.verify(s)
        lost = audit.check_anchors(s, anchors) if result.ok else None
    if not result.ok:
        click.echo(
            f"audit log BROKEN: {result.problem} ({result.count} events verified before it)",
            err=True,
        )
        sys.exit(1)
    if lost:
        click.echo(f"audit log BROKEN: {lost}", err=True)
        sys.exit(1)
    checked = f"; {len(anchors)} anchor(s) found in it" if anchors else ""
    click.echo(f"audit log intact: {result.count} events, head {result.head}{checked}")


@audit_group.command("anchor")
@click.option(
    "--file",
    "anchor_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to append it (default: DHR_AUDIT_ANCHOR_FILE).",
)
@pass_app
def audit_anchor(app: App, /, anchor_file: Path | None) -> None:
    """Append the log's head (sequence, hash) to an anchor file outside the database."""
    path = anchor_file or app.settings.audit_anchor_file
    if path is None:
        raise UserError("no anchor file: pass --file FILE or set DHR_AUDIT_ANCHOR_FILE")
    with app.store().reading() as s:
        found = audit.head(s)
    if found is None:
        raise UserError("the audit log is empty: nothing to anchor yet")
    anchor = audit.Anchor(found.seq, found.hash, app.now().isoformat())
    audit.write_anchor(path, anchor)
    click.echo(f"anchored event #{anchor.seq} ({anchor.hash}) in {path}")


@audit_group.command("export")
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write.",
)
@pass_app
def audit_export(app: App, csv_path: Path) -> None:
    """Export the audit log as CSV."""
    with app.store().reading() as s:
        count = audit.export_csv(s, csv_path)
    click.echo(f"wrote {count} events to {csv_path}")


# --- reports ---------------------------------------------------------------------------------


@main.command("report")
@click.option("--review", "review_ref", metavar="REF", help="One review.")
@click.option("--all", "all_", is_flag=True, help="Every open review, with a cover summary.")
@click.option("--as-of", "as_of", type=DATE, help="The report's date (default: today).")
@click.option(
    "--since", type=DATE, help="Start of the period reported on (default: 6 months before)."
)
@click.option(
    "--format", "fmt", required=True, type=click.Choice(reports.FORMATS), help="File format."
)
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="File to write."
)
@click.option("--family", is_flag=True, help="The family-safe letter: counts only (pdf, html).")
@pass_app
def report(
    app: App, /, review_ref: str | None, all_: bool, as_of: dt.date | None,
    since: dt.date | None, fmt: str, out: Path, family: bool,
) -> None:  # fmt: skip
    """Write a progress report on action plans for the partnership board."""
    if (review_ref is None) == (not all_):
        raise UserError("give --review REF or --all (one of them)")
    day = as_of or app.today()
    req = reports.Request(
        review_ref, day, since or reports.default_since(day), app.settings.tz, family=family
    )
    console = Console(stderr=True)
    with (
        Progress(console=console, disable=not console.is_terminal, transient=True) as bar,
        app.store().reading() as s,
    ):
        task = bar.add_task("writing the report", total=None)
        built = reports.write(
            s, req, fmt, out, partnership=app.settings.partnership,
            marking=app.settings.report_marking, progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n),
        )  # fmt: skip
    with app.store().transaction() as s:
        reports.record(s, req, fmt, now=app.now(), actor=app.actor)
    click.echo(
        f"wrote {out} ({fmt}): {built.reviews} review{'s' if built.reviews != 1 else ''}, "
        f"{built.actions} action{'s' if built.actions != 1 else ''}"
    )


# --- output helpers --------------------------------------------------------------------------


def _print_json(rows: Any) -> None:
    click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=audit.to_jsonable))


def _table(columns: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> None:
    """A table of plain text: "[draft]" in plan text is shown, not read as rich markup."""
    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
    _console().print(table)


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: wide rows, not cells wrapped at 80 columns
    return console


def _d(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
