"""The report as HTML: a self-contained document (styles and charts inline, no scripts, no
outside files), written a review at a time. The PDF is this HTML laid out by WeasyPrint.

Templates are in ``reports/templates`` (autoescaped: plan text is user input). The family
variant renders ``family.html`` from :func:`templates.family_safe`'s context: counts and
true/false only, exactly what the family update email may use.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from dhr_workflow.models import ActionStatus
from dhr_workflow.reports import charts
from dhr_workflow.reports.data import (
    RAG_RULES,
    RAG_WORDS,
    RAGS,
    RED,
    Cover,
    Point,
    Rate,
    Request,
    ReviewReport,
)
from dhr_workflow.templates import family_safe

STATUS_WORDS = {
    ActionStatus.OPEN.value: "Open",
    ActionStatus.IN_PROGRESS.value: "In progress",
    ActionStatus.BLOCKED.value: "Blocked",
    ActionStatus.COMPLETED.value: "Completed",
    ActionStatus.WITHDRAWN.value: "Withdrawn",
}


@dataclass(frozen=True)
class Meta:
    """What every part of the document shows besides the data."""

    title: str
    partnership: str | None
    marking: str
    as_of: dt.date
    since: dt.date
    next_until: dt.date
    tz: ZoneInfo
    single: bool  # one review: no cover, the review is the document
    scope_words: str = ""  # "only the actions your agencies lead", for a scoped reader
    first_page: int = 1  # the PDF's first page number (a review laid out on its own)
    numbered_of: bool = True  # "Page 3 of 12" (False: "Page 3", when the total is unknown)

    @property
    def rag_rules(self) -> list[tuple[str, str]]:
        return [(c, RAG_RULES[c]) for c in RAGS]

    @property
    def css(self) -> str:
        return _stylesheet() + page_css(self)


def meta_for(req: Request, partnership: str | None, marking: str, scope_words: str = "") -> Meta:
    if req.review is not None:
        title = "Action plan progress report"
    else:
        title = "Action plan progress report: all open reviews"
    if req.family:
        title = "An update on the review's recommendations"
    return Meta(
        title, partnership, marking, req.as_of, req.since, req.next_until, req.tz,
        single=req.review is not None, scope_words=scope_words,
    )  # fmt: skip


# --- the environment -------------------------------------------------------------------------


def _day(value: dt.date | None, empty: str = "") -> str:
    return f"{value.day} {value:%b %Y}" if value else empty


def _long_day(value: dt.date | None, empty: str = "") -> str:
    return f"{value.day} {value:%B %Y}" if value else empty


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def _shorten(text: str | None, width: int) -> str:
    text = text or ""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:.-") + "…"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def glance(rate: Rate) -> str:
    """The figures in one sentence: "94 actions: 40 red, 6 amber, 45 green, 3 grey; 38
    overdue; 48% completed, 12% on time." """
    rags = ", ".join(f"{rate.rag[c]} {RAG_WORDS[c].lower()}" for c in RAGS)
    return (
        f"{_plural(rate.actions, 'action', 'actions')}: {rags}; {rate.overdue} overdue; "
        f"{_pct(rate.completed_pct)} completed, {_pct(rate.on_time_pct)} on time."
    )


def anchor(ref: str) -> str:
    """An id for a review's section (refs may hold any character)."""
    return "review-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f"_{ord(m.group()):x}", ref)


def _rec_rags(r: ReviewReport) -> list[tuple[str, int]]:
    counts = dict.fromkeys(RAGS, 0)
    for rec in r.recommendations:
        counts[rec.rag] += 1
    return [(c, n) for c, n in counts.items() if n]


def _trend_by_quarter(points: list[Point]) -> bool:
    return len(points) > 2 and all(p.day.month % 3 == 0 for p in points[:-1])


def _trend_summary(points: list[Point]) -> list[Point]:
    """A few points for the sentence under the trend chart: start, middle, end."""
    if len(points) <= 4:
        return points
    return [points[0], points[len(points) // 3], points[2 * len(points) // 3], points[-1]]


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("dhr_workflow.reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        day=_day, long_day=_long_day, pct=_pct, shorten=_shorten, anchor=anchor,
        rag_word=lambda c: RAG_WORDS.get(c, c),
        status_word=lambda s: STATUS_WORDS.get(s, s),
        sentence=lambda s: s[:1].upper() + s[1:],
        yes_no=lambda v: "–" if v is None else ("Yes" if v else "No"),
        moment_day=lambda at, tz: _day(at.astimezone(tz).date()),
    )  # fmt: skip
    env.globals.update(
        plural=_plural, glance=glance, rec_rags=_rec_rags, trend_by_quarter=_trend_by_quarter,
        trend_summary=_trend_summary,
        blocked_rows=lambda r: [a for a in r.rows if a.status == "blocked" and a.rag == RED
                                and a.days_overdue is None],
    )  # fmt: skip
    return env


@cache
def _stylesheet() -> str:
    return (files("dhr_workflow.reports") / "templates" / "report.css").read_text()


def css_string(value: str) -> str:
    """A value as a CSS string literal (a partnership's name may hold quotes)."""
    flat = " ".join(value.split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def page_css(meta: Meta) -> str:
    """The printed page's running heads: partnership, marking, date and page number."""
    number = 'counter(page) " of " counter(pages)' if meta.numbered_of else "counter(page)"
    marking = css_string(meta.marking) if meta.marking else '""'
    left = css_string(meta.partnership) if meta.partnership else '""'
    reset = (
        f"@page :first {{ counter-reset: page {meta.first_page}; }}\n"
        if (meta.first_page > 1)
        else ""
    )
    return f"""
@page {{
  @top-left {{ content: {left}; font-size: 8pt; color: #505a5f; }}
  @top-center {{ content: {marking}; font-size: 9pt; font-weight: bold; letter-spacing: 0.06em; }}
  @top-right {{ content: {css_string(meta.title.split(":")[0])}; font-size: 8pt; color: #505a5f; }}
  @bottom-left {{ content: {css_string("As of " + _long_day(meta.as_of))}; font-size: 8pt; color: #505a5f; }}
  @bottom-center {{ content: {marking}; font-size: 9pt; font-weight: bold; letter-spacing: 0.06em; }}
  @bottom-right {{ content: "Page " {number}; font-size: 8pt; color: #505a5f; }}
}}
{reset}"""  # noqa: E501


# --- rendering -------------------------------------------------------------------------------


def _svgs(rates: Any, quarters: Any, trend: list[Point], uid: str) -> dict[str, str]:
    return {
        "agency": charts.status_by_agency(rates, f"{uid}-agency"),
        "quarters": charts.per_quarter(quarters, f"{uid}-quarters"),
        "trend": charts.trend(trend, f"{uid}-trend"),
    }


def head(meta: Meta) -> str:
    return environment().get_template("_head.html").render(meta=meta)


def tail(meta: Meta) -> str:
    return environment().get_template("_tail.html").render(meta=meta)


def review(meta: Meta, rep: ReviewReport, n: int) -> str:
    uid = f"r{n}"
    svgs = _svgs(rep.by_agency, rep.quarters, rep.trend, uid)
    return environment().get_template("_review.html").render(meta=meta, r=rep, svgs=svgs, uid=uid)


def cover(meta: Meta, cov: Cover, req: Request, toc: list[int] | None) -> str:
    """The cover across reviews; ``toc``: each review's first page (None: no contents, [] for
    links only, as on screen)."""
    trend, quarters = cov.trend(req), cov.quarter_series(req)
    rates = [rate for _, _, rate in cov.reviews]
    return environment().get_template("_cover.html").render(
        meta=meta, cover=cov, cover_reviews=rates, cover_agencies=cov.by_agency(),
        svgs=_svgs(cov.by_agency(), quarters, trend, "cover"), quarters=quarters, trend=trend,
        toc=toc,
    )  # fmt: skip


def cover_charts(cov: Cover, req: Request) -> dict[str, str]:
    return _svgs(cov.by_agency(), cov.quarter_series(req), cov.trend(req), "cover")


def family_context(rep: ReviewReport, req: Request) -> dict[str, Any]:
    """What the family variant may show: the partnership report's kind of summary passed
    through :func:`templates.family_safe`, as the family update email is."""
    counts = dict.fromkeys((s.value for s in ActionStatus), 0)
    for row in rep.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    counts["total"] = rep.total.actions
    counts["open"] = counts["open"] + counts["in_progress"]
    summary: dict[str, Any] = {
        "review": {"ref": rep.ref, "title": rep.title, "partnership": rep.partnership},
        "counts": counts,
        "today": req.as_of,
        "since": req.since,
        "next_until": req.next_until,
        "partnership": rep.partnership,
    }
    lists: dict[str, Sequence[Any]] = {
        "overdue": rep.overdue, "completed_since": rep.completed_since,
        "due_soon": rep.due_next, "needs_review": rep.needs_review, "progress_since": rep.notes,
    }  # fmt: skip
    for name, items in lists.items():
        summary[name], summary[f"{name}_count"] = list(items), len(items)
    return family_safe(summary)


def family(meta: Meta, rep: ReviewReport, req: Request) -> str:
    context = family_context(rep, req)
    if context["partnership"] is None:
        context["partnership"] = meta.partnership
    return environment().get_template("family.html").render(meta=meta, **context)


def document(meta: Meta, reports: Iterator[ReviewReport]) -> Iterator[str]:
    """A whole single-review document, in parts."""
    yield head(meta)
    for n, rep in enumerate(reports):
        yield review(meta, rep, n)
    yield tail(meta)
