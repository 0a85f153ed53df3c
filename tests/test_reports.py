"""Reports (issue #14), on both backends: the shared plans imported through the CLI, a scripted
history (ticks that send reminders and escalations, progress notes, completions on time and
late, an approved extension), then every format built and read back — the PDF's text, the
spreadsheet's sheets, rows and types, the CSV against its documented schema — and the family
variant checked for agency, worker and plan text as the family update email is."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pdfplumber
import pytest
import time_machine
from sqlalchemy import select

from dhr_workflow import actions, db, engine, extensions, reports
from dhr_workflow.config import load_settings
from dhr_workflow.models import (
    CLOSED_STATUSES,
    Action,
    ActionStatus,
    Agency,
    AuditEvent,
    Contact,
    Recommendation,
)
from dhr_workflow.reports import charts, data
from dhr_workflow.reports.csv import COLUMNS
from tests.conftest import LONDON, CliFn

PLANS = Path(__file__).parent / "data" / "plans"
ROOT = Path(__file__).resolve().parent.parent
REFS = {"somerset-dhr-012": "S12", "south-worcestershire-case-2": "SW2",
        "westminster-case-a": "WCA"}  # fmt: skip
IMPORTED = dt.datetime(2024, 1, 8, 9, 0, tzinfo=dt.UTC)
AS_OF, SINCE = dt.date(2024, 7, 1), dt.date(2024, 1, 1)
PEOPLE = """agency,role,name,email,review
,coordinator,Cat Coordinator,cat@csp.example.org,
,chair,Chris Chair,chris@csp.example.org,
"""
SECRET_NOTE = "Spoke to DS Quill at the Northgate custody suite about the audit"
OUTCOME = "Training delivered to all 40 response officers"


@dataclass
class History:
    """What the scripted history did, for the assertions."""

    on_time: int  # completed on or before its due date
    late: int
    noted: int
    extended: int


def _at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), LONDON)


def _tick_and_send(store: db.Store, cli: CliFn, when: dt.datetime, tmp: Path) -> None:
    settings = load_settings(database_url=store.engine.url.render_as_string(False))
    ruleset, templates = engine.load_rules(settings.rules_dir, settings.templates_dir, LONDON)
    ctx = engine.Context(when, LONDON, "england", templates, None, settings.mail_from)
    with store.transaction() as s:
        engine.commit(s, engine.evaluate(s, ruleset, ctx), ctx, actor="daemon")
    with time_machine.travel(when + dt.timedelta(minutes=5), tick=False):
        cli("send", env={"DHR_MAIL_TRANSPORT": "file", "DHR_MAIL_DIR": str(tmp / "mail")})


def _open_dated(store: db.Store, review: str, before: dt.date) -> list[int]:
    with store.reading() as s:
        return list(
            s.scalars(
                select(Action.id)
                .join(Action.review)
                .where(
                    Action.review.has(ref=review),
                    Action.status.not_in([c.value for c in CLOSED_STATUSES]),
                    Action.due_date.is_not(None),
                    Action.due_date < before,
                )
                .order_by(Action.id)
            )
        )


def script(store: db.Store, cli: CliFn, tmp: Path) -> History:
    """Import the three plans on 8 January 2024, then half a year of work."""
    (tmp / "people.csv").write_text(PEOPLE)
    with time_machine.travel(IMPORTED, tick=False):
        for path in sorted(PLANS.glob("*.txt")):
            out = cli("import", str(path), "--review", REFS[path.stem])
            assert out.exit_code == 0, out.output
        assert cli("contacts", "import", str(tmp / "people.csv")).exit_code == 0
    _tick_and_send(store, cli, _at(dt.date(2024, 1, 15)), tmp)
    _tick_and_send(store, cli, _at(dt.date(2024, 2, 20)), tmp)
    overdue = _open_dated(store, "WCA", dt.date(2024, 3, 1))
    done_on_time = _open_dated(store, "S12", dt.date(2025, 12, 31))[:1]
    with store.transaction() as s:
        for n, action_id in enumerate(overdue[:2]):  # progress on two overdue actions
            actions.update(
                s, action_id, actions.ActionChange(note=f"{SECRET_NOTE} ({n})"),
                today=dt.date(2024, 3, 1), now=_at(dt.date(2024, 3, 1)), actor="lee@example.org",
            )  # fmt: skip
        # One completed late (after its date), one before its date.
        for action_id, day in ((overdue[2], dt.date(2024, 4, 10)), (done_on_time[0], None)):
            actions.update(
                s, action_id,
                actions.ActionChange(status=ActionStatus.COMPLETED, completed_on=day,
                                     outcome=OUTCOME),
                today=dt.date(2024, 4, 10), now=_at(dt.date(2024, 4, 10)),
                actor="cat@csp.example.org",
            )  # fmt: skip
        req = extensions.request(
            s, action_id=overdue[3], requested_by="lee@example.org",
            proposed_due=dt.date(2024, 9, 30), reason="The new system arrives in September",
            link_id=None, today=dt.date(2024, 5, 1), now=_at(dt.date(2024, 5, 1)),
        )  # fmt: skip
        extensions.decide(
            s, req.id, approve=True, note="Agreed at the board", decided_by="cat@csp.example.org",
            today=dt.date(2024, 5, 3), now=_at(dt.date(2024, 5, 3)),
        )  # fmt: skip
    _tick_and_send(store, cli, _at(dt.date(2024, 6, 3)), tmp)
    return History(on_time=1, late=1, noted=2, extended=1)


@dataclass
class Truth:
    """The store's own answer, computed here without the report's code."""

    actions: dict[str, list[Action]]
    agencies: list[str]
    texts: list[str]

    def overdue(self, ref: str | None = None) -> list[Action]:
        refs = [ref] if ref else list(self.actions)
        return [
            a
            for r in refs
            for a in self.actions[r]
            if a.status not in CLOSED_STATUSES and a.due_date and a.due_date < AS_OF
        ]


def truth(store: db.Store) -> Truth:
    with store.reading() as s:
        found: dict[str, list[Action]] = {}
        for a in s.scalars(select(Action).order_by(Action.id)):
            _ = a.review.ref
            found.setdefault(a.review.ref, []).append(a)
        agencies = list(s.scalars(select(Agency.name)))
        texts = [t for t in s.scalars(select(Action.text)) if t]
        texts += [t for t in s.scalars(select(Recommendation.text)) if t]
        s.expunge_all()
    return Truth(found, agencies, texts)


@pytest.fixture
def history(store: db.Store, cli: CliFn, tmp_path: Path) -> tuple[History, Truth]:
    return script(store, cli, tmp_path), truth(store)


def _report(cli: CliFn, tmp: Path, fmt: str, *args: str) -> Path:
    out = tmp / f"report-{fmt}-{len(list(tmp.glob('report-*')))}.{fmt}"
    with time_machine.travel(_at(AS_OF, 10), tick=False):
        done = cli("report", *args, "--as-of", str(AS_OF), "--since", str(SINCE),
                   "--format", fmt, "-o", str(out))  # fmt: skip
    assert done.exit_code == 0, done.output
    return out


def _pdf_text(path: Path) -> str:
    with pdfplumber.open(path) as pdf:
        return "\n".join(page.extract_text() or "" for page in pdf.pages)


def _flat(text: str) -> str:
    return " ".join(text.split())


# --- the formats ---------------------------------------------------------------------------


def test_pdf_holds_every_overdue_action_and_the_right_counts(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path
) -> None:
    _, t = history
    path = _report(cli, tmp_path, "pdf", "--all")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = _pdf_text(path)
    flat = _flat(text)
    assert "OFFICIAL-SENSITIVE" in text
    assert "Contents" in text and "Page 1" in text
    for a in t.overdue():
        assert f"#{a.id}" in text, f"overdue action {a.id} missing"
        assert a.text.split()[0] in text
    total = sum(len(v) for v in t.actions.values())
    assert re.search(rf"{total} actions: \d+ red, .*?; {len(t.overdue())} overdue;", flat)
    for ref, listed in t.actions.items():
        assert re.search(rf"{len(listed)} actions: .*?; {len(t.overdue(ref))} overdue;", flat)
        assert f"{ref}:" in flat  # each review in the contents
    # The chasing done: escalations reached the coordinator and the chair.
    assert re.search(r"\d+ escalations?, \d+ requests? for", flat)
    # Page numbers in the contents point at the reviews' first pages.
    with pdfplumber.open(path) as pdf:
        pages = [p.extract_text() or "" for p in pdf.pages]
    contents = next(p for p in pages if "Contents" in p)
    for ref in t.actions:
        [line] = [li for li in contents.splitlines() if re.match(rf"\d+\. {ref}: ", li)]
        first = int(line.split()[-1])
        assert ref in pages[first - 1].splitlines()[1:3], pages[first - 1][:200]
        assert "At a glance" in pages[first - 1] and f"Page {first}" in pages[first - 1]


def test_single_review_pdf_numbers_its_pages_and_states_the_rules(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path
) -> None:
    _, t = history
    text = _flat(_pdf_text(_report(cli, tmp_path, "pdf", "--review", "WCA")))
    assert re.search(r"Page 1 of \d+", text)
    assert "RED Overdue (open past its due date) or blocked" in text
    assert "GREEN Completed" in text and "GREY Withdrawn" in text
    assert f"{len(t.overdue('WCA'))} overdue actions, most overdue first" in text
    assert "Waiting for a decision" not in text and "Approved" in text  # the extension
    assert "arrives" in text and "30 Sep 2024" in text  # asked for, and agreed
    assert SECRET_NOTE[:30] in text  # progress notes since --since
    assert OUTCOME[:20] in text  # completed since, with the outcome


def test_xlsx_has_a_summary_and_a_sheet_per_review_with_typed_rows(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path
) -> None:
    _, t = history
    path = _report(cli, tmp_path, "xlsx", "--all")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", *sorted(t.actions)]
    summary = book["Summary"]
    assert summary.freeze_panes == "A5" and summary.auto_filter.ref
    assert [c.value for c in summary[4]][:3] == ["Review", "Title", "Actions"]
    assert {summary.cell(r, 1).value for r in range(5, 8)} == set(t.actions)
    with zipfile.ZipFile(path) as z:  # the three charts, as pictures
        assert len([n for n in z.namelist() if n.startswith("xl/media/")]) == 3
    for ref, listed in t.actions.items():
        ws = book[ref]
        rows = list(ws.iter_rows(values_only=True))
        assert list(rows[0]) == list(COLUMNS)
        assert len(rows) == len(listed) + 1
        assert ws.freeze_panes == "C2" and ws.auto_filter.ref == f"A1:X{len(listed) + 1}"
        col = {name: i for i, name in enumerate(COLUMNS)}
        by_id = {r[col["action_id"]]: r for r in rows[1:]}
        for a in listed:
            row = by_id[a.id]
            due = row[col["due_date"]]
            assert (due.date() if due else None) == a.due_date  # a date, not text
            assert isinstance(row[col["messages_sent"]], int)
            assert isinstance(row[col["report_as_of"]], dt.datetime)
            overdue = row[col["days_overdue"]]
            assert overdue == ((AS_OF - a.due_date).days if a in t.overdue() else None)


def test_csv_matches_its_documented_schema(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path
) -> None:
    h, t = history
    path = _report(cli, tmp_path, "csv", "--all")
    raw = path.read_bytes()
    assert b"\r\n" in raw and not raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    assert tuple(rows[0]) == COLUMNS == tuple(documented_columns())
    assert len(rows) == sum(len(v) for v in t.actions.values())
    overdue = {a.id for a in t.overdue()}
    for row in rows:
        for name in ("report_as_of", "due_date", "completed_on", "last_chased_on"):
            if row[name]:
                dt.date.fromisoformat(row[name])
        assert row["rag"] in data.RAGS
        assert row["status"] in {s.value for s in ActionStatus}
        assert row["completed_on_time"] in ("true", "false", "")
        assert row["needs_review"] in ("true", "false")
        assert row["report_as_of"] == AS_OF.isoformat()
        assert (int(row["action_id"]) in overdue) == (row["days_overdue"] != "")
        assert (row["rag"] == "red") >= (int(row["action_id"]) in overdue)
    assert sum(r["completed_on_time"] == "true" for r in rows) >= h.on_time
    assert sum(r["completed_on_time"] == "false" for r in rows) >= h.late
    assert any(int(r["escalations_sent"]) > 0 for r in rows)
    chased = [r for r in rows if int(r["messages_sent"])]
    assert chased and all(r["last_chased_on"] for r in chased)


def documented_columns() -> list[str]:
    """The column names in docs/report-schema.md's table, in order."""
    doc = (ROOT / "docs" / "report-schema.md").read_text()
    return re.findall(r"^\| `([a-z_]+)` \|", doc.split("## RAG")[0], re.M)


def test_html_is_self_contained_with_accessible_charts(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path
) -> None:
    _, t = history
    page = _report(cli, tmp_path, "html", "--all").read_text()
    assert "<script" not in page and 'src="http' not in page and "<link" not in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"') == 4 * 3
    ids = re.findall(r'<title id="([^"]+)">', page)
    assert len(ids) == len(set(ids)) == 12
    assert all(f'aria-labelledby="{i} {i[:-2]}-d"' in page for i in ids)
    for ref in t.actions:
        assert f'href="#{reports.html.anchor(ref)}"' in page


def test_the_trend_replays_completions_from_the_audit_log(
    history: tuple[History, Truth], store: db.Store
) -> None:
    req = reports.Request("S12", AS_OF, SINCE, LONDON)
    with store.reading() as s:
        [review] = data.find_reviews(s, req)
        rep, _ = data.gather(s, review, req, data.chase_index(s, req))
    by_month = {p.day: p for p in rep.trend}
    assert by_month[dt.date(2024, 3, 31)].completed + 1 == by_month[AS_OF].completed
    assert by_month[AS_OF].on_time >= 1
    assert rep.trend[0].day == dt.date(2024, 1, 31)  # from the import on


def test_family_variant_names_no_agency_worker_or_plan_text(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path, store: db.Store
) -> None:
    _, t = history
    with store.reading() as s:
        people = list(s.scalars(select(Contact.name)))
        owners = [o for o in s.scalars(select(Action.owner_text)) if o]
    for fmt in ("html", "pdf"):
        path = _report(cli, tmp_path, fmt, "--review", "WCA", "--family")
        shown = _flat(path.read_text() if fmt == "html" else _pdf_text(path))
        total = len(t.actions["WCA"])
        completed = sum(a.status == ActionStatus.COMPLETED for a in t.actions["WCA"])
        assert f"So far {completed} of the {total} agreed actions have been completed" in shown
        assert "taken longer than planned" in shown
        for internal in [*t.agencies, *owners, *people, SECRET_NOTE[:20], OUTCOME[:20],
                         "lee@example.org", "cat@csp", "Northgate"]:  # fmt: skip
            assert internal not in shown, internal
        for text in t.texts:
            words = _flat(text)
            assert len(words) < 25 or words[:25] not in shown, words
    refused = cli("report", "--review", "WCA", "--family", "--format", "csv", "-o", "x.csv")
    assert refused.exit_code == 2 and "family" in refused.output


# --- the command's edges -------------------------------------------------------------------


def test_bad_input_is_one_line_and_writes_nothing(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path
) -> None:
    target = tmp_path / "out.pdf"
    target.write_text("the last good report")
    cases = [
        (["--review", "NOPE"], "no review with ref 'NOPE'"),
        (["--all", "--since", "2024-08-01"], "--since 2024-08-01 is after --as-of 2024-07-01"),
        ([], "give --review REF or --all"),
        (["--review", "WCA", "--all"], "give --review REF or --all"),
        (["--all", "--family"], "a family report is about one review"),
    ]
    for args, message in cases:
        out = cli("report", *args, "--as-of", "2024-07-01", "--format", "pdf", "-o", str(target))
        assert out.exit_code == 2, out.output
        assert out.output.count("\n") == 1 and message in out.output, out.output
    assert target.read_text() == "the last good report"
    as_dir = cli("report", "--all", "--format", "csv", "-o", str(tmp_path))
    assert as_dir.exit_code == 2 and "is a directory" in as_dir.output
    nowhere = cli("report", "--all", "--format", "csv", "-o", str(tmp_path / "no" / "x.csv"))
    assert nowhere.exit_code == 2 and "does not exist" in nowhere.output
    denied = cli("report", "--all", "--format", "csv", "-o", "/proc/dhr-report.csv")
    assert denied.exit_code == 2 and "cannot write /proc/dhr-report.csv" in denied.output
    assert not list(tmp_path.rglob("*.part"))


def test_each_report_is_audited_without_its_content(
    history: tuple[History, Truth], cli: CliFn, tmp_path: Path, store: db.Store
) -> None:
    _report(cli, tmp_path, "csv", "--review", "WCA")
    with store.reading() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.kind == "report.generate")).one()
    assert event.subject == "review:WCA" and event.actor == "test"
    assert '"format":"csv"' in event.data and '"scope":"all"' in event.data
    assert "Incorporate" not in event.data


def test_a_formula_in_plan_text_stays_text_in_the_spreadsheet(
    store: db.Store, cli: CliFn, tmp_path: Path
) -> None:
    from dhr_workflow import reviews

    now = dt.datetime(2024, 1, 8, 9, tzinfo=dt.UTC)
    with store.transaction() as s:
        reviews.add(s, "F1", "Formula", now=now, actor="test")
        actions.create(
            s, "F1", now=now, actor="test", recommendation="1",
            text='=HYPERLINK("http://evil.example","click")', lead_agency="Police",
        )  # fmt: skip
    path = _report(cli, tmp_path, "xlsx", "--review", "F1")
    ws = openpyxl.load_workbook(path)["F1"]
    cell = ws.cell(2, COLUMNS.index("action_text") + 1)
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK")


# --- charts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("most", "ticks"),
    [(0, [0, 1]), (1, [0, 1]), (4, [0, 1, 2, 3, 4]), (7, [0, 2, 4, 6, 8]), (12, [0, 5, 10, 15]),
     (100, [0, 20, 40, 60, 80, 100]), (101, [0, 50, 100, 150])],
)  # fmt: skip
def test_chart_axis_ticks_are_round(most: int, ticks: list[int]) -> None:
    assert charts._ticks(most) == ticks


def test_charts_escape_plan_text_and_render_to_png() -> None:
    rate = data.Rate("<script>Police & Co</script>")
    rate.actions, rate.rag[data.RED] = 3, 3
    svg = charts.status_by_agency([rate], "x")
    assert "<script>" not in svg and "&lt;script&gt;Police &amp; Co" in svg
    assert charts.png(svg).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("status", "due", "rag"),
    [("open", dt.date(2024, 6, 30), "red"), ("open", AS_OF, "amber"), ("open", None, "amber"),
     ("in_progress", dt.date(2024, 1, 1), "red"), ("blocked", dt.date(2025, 1, 1), "red"),
     ("completed", dt.date(2020, 1, 1), "green"), ("withdrawn", dt.date(2020, 1, 1), "grey")],
)  # fmt: skip
def test_rag_rules(status: str, due: dt.date | None, rag: str) -> None:
    assert data.rag(status, due, AS_OF) == rag


def test_a_recommendation_takes_its_worst_action() -> None:
    assert data.worst(["green", "amber", "grey"]) == "amber"
    assert data.worst(["green", "red"]) == "red"
    assert data.worst(["grey", "grey"]) == "grey"
    assert data.worst([]) == "grey"


# --- the web app ------------------------------------------------------------------------------

from tests.web_support import HEALTH_SECRET, Site, site_fixture  # noqa: E402, F401


def _signed_in(site: Site, email: str) -> Any:
    client = site.client()
    site.sign_in(client, email)
    return client


def _csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_download_report_from_the_dashboard_and_a_review(site: Site) -> None:
    cat = _signed_in(site, "cat@csp.example.org")
    dashboard = cat.get("/").text
    assert 'action="/report"' in dashboard and "Download report" in dashboard
    review = cat.get("/reviews/R1").text
    assert 'name="review" value="R1"' in review and "Download report" in review
    for fmt, start in (("pdf", b"%PDF"), ("xlsx", b"PK"), ("html", b"<!DOCTYPE html>"),
                       ("csv", b"schema_version,")):  # fmt: skip
        got = cat.get(f"/report?format={fmt}")
        assert got.status_code == 200, got.text
        assert got.content.startswith(start)
        assert got.headers["content-type"].startswith(reports.MEDIA_TYPES[fmt].split(";")[0])
        assert got.headers["content-disposition"] == (
            f'attachment; filename="dhr-report-all-reviews-2024-03-04.{fmt}"'
        )
        assert got.headers["cache-control"] == "no-store"
    one = cat.get("/report?format=csv&review=R1")
    assert {r["review_ref"] for r in _csv_rows(one.content)} == {"R1"}
    with site.store.reading() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.kind == "report.generate")))
    assert len(events) == 5 and {e.actor for e in events} == {"cat@csp.example.org"}
    assert events[-1].subject == "review:R1" and '"scope":"all"' in events[-1].data


def test_a_report_holds_only_what_the_person_may_see(site: Site) -> None:
    from dhr_workflow import contacts, reviews

    with site.store.transaction() as s:
        reviews.add(s, "R2", "Case two", now=site.clock(), actor="test")
        actions.create(s, "R2", now=site.clock(), actor="test", recommendation="1",
                       text="Police only action in case two", lead_agency="Police")  # fmt: skip
        (site.tmp / "chair.csv").write_text(
            "agency,role,name,email,review\n,chair,Rita Chair,rita@csp.example.org,R2\n"
        )
        contacts.import_rows(s, contacts.read_csv(site.tmp / "chair.csv"), now=site.clock(),
                             actor="test", source="chair.csv")  # fmt: skip
    lee = _signed_in(site, "lee@police.example.org")  # Police lead
    rows = _csv_rows(lee.get("/report?format=csv").content)
    assert {r["lead_agency"] for r in rows} == {"Police"} and len(rows) == 3
    assert HEALTH_SECRET not in lee.get("/report?format=html&review=R1").text
    assert HEALTH_SECRET not in _pdf_bytes_text(lee.get("/report?format=pdf&review=R1").content)
    hal = _signed_in(site, "hal@health.example.org")  # Health lead: nothing in R2
    assert hal.get("/report?format=csv&review=R2").status_code == 404
    assert hal.get("/report?format=csv&review=NOPE").status_code == 404
    assert [r["action_text"] for r in _csv_rows(hal.get("/report?format=csv").content)] == [
        HEALTH_SECRET
    ]
    rita = _signed_in(site, "rita@csp.example.org")  # chair of R2 only
    assert rita.get("/report?format=csv&review=R1").status_code == 404
    assert {r["review_ref"] for r in _csv_rows(rita.get("/report?format=csv").content)} == {"R2"}
    assert rita.get("/report?format=docx").status_code == 404
    with site.store.reading() as s:
        event = s.scalars(
            select(AuditEvent).where(
                AuditEvent.kind == "report.generate", AuditEvent.actor == "rita@csp.example.org"
            )
        ).first()
    assert event is not None and '"review_ids":[' in event.data
    anonymous = site.client()
    assert anonymous.get("/report?format=csv").status_code == 303


def _pdf_bytes_text(body: bytes) -> str:
    with pdfplumber.open(io.BytesIO(body)) as pdf:
        return "\n".join(page.extract_text() or "" for page in pdf.pages)


# --- the partnership report email's attachment -------------------------------------------------


def test_the_partnership_report_pdf_is_attached_within_its_cap(
    history: tuple[History, Truth], store: db.Store
) -> None:
    from email import message_from_bytes

    from dhr_workflow import messages
    from dhr_workflow.models import Notification
    from dhr_workflow.reports.attach import partnership_report_pdf

    facts = {"review": "WCA", "as_of": AS_OF, "since": SINCE, "tz": LONDON,
             "partnership": "Westshire CSP", "marking": "OFFICIAL-SENSITIVE"}  # fmt: skip
    with store.reading() as s:
        small = partnership_report_pdf(s, **facts, limit_mb=5)
        capped = partnership_report_pdf(s, **facts, limit_mb=0.01)
    assert small.attachment is not None and small.attachment.content.startswith(b"%PDF")
    assert small.attachment.filename == "dhr-report-WCA-2024-07-01.pdf"
    assert small.line.startswith("The full report is attached (dhr-report-WCA-2024-07-01.pdf, ")
    assert capped.attachment is None and "larger than the 0.01 MB" in capped.line
    note = Notification(
        template="partnership_report", to_addrs=["chris@csp.example.org"], cc_addrs=[],
        subject="Progress report", text_body="Hello\n", html_body="<p>Hello</p>",
        message_id="<x@dhr-workflow>",
    )  # fmt: skip
    built = messages.build(note, mail_from="dhr@example.org", now=_at(AS_OF),
                           attachments=[small.attachment])  # fmt: skip
    parsed = message_from_bytes(built.as_bytes())
    parts = [(p.get_content_type(), p.get_filename()) for p in parsed.walk()]
    assert ("application/pdf", "dhr-report-WCA-2024-07-01.pdf") in parts
    assert ("text/plain", None) in parts and ("text/html", None) in parts
    assert (
        messages.build(note, mail_from="dhr@example.org", now=_at(AS_OF)).get_content_type()
        == "multipart/alternative"
    )  # unchanged without attachments
