"""The report's charts as SVG, drawn here from the report's numbers: no plotting library, so the
same markup is inline in the HTML, laid out by WeasyPrint in the PDF, and turned into PNG for
the spreadsheet (:func:`png`, CairoSVG) — one drawing, three formats.

Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says in words
what it shows, numbers included; the report puts a table of the same numbers beside it.
Text from the plan (agency names) is escaped; long names are shortened on the chart and given
in full in the bar's own ``<title>``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

from dhr_workflow.reports.data import AMBER, GREEN, GREY, RAG_WORDS, RAGS, RED, Point, Rate

COLOURS = {RED: "#d4351c", AMBER: "#ffbf47", GREEN: "#00703c", GREY: "#b1b4b6"}
INK = {RED: "#ffffff", AMBER: "#0b0c0c", GREEN: "#ffffff", GREY: "#0b0c0c"}
DUE, DONE, ON_TIME = "#1d70b8", "#00703c", "#1d70b8"
TEXT, RULE, FAINT = "#0b0c0c", "#505a5f", "#dddddd"
FONT = "Arial, Helvetica, 'Liberation Sans', sans-serif"
WIDTH = 640
AGENCIES_SHOWN = 14  # more are added up as "Other agencies"
LABEL = 34  # characters of an agency's name on the chart


def _open(uid: str, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'aria-labelledby="{uid}-t {uid}-d" font-family="{FONT}" font-size="12">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(desc)}</desc>',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]


def _text(x: float, y: float, text: str, **attrs: str | float) -> str:
    attrs.setdefault("fill", TEXT)
    extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" {extra}>{escape(text)}</text>'


def _short(name: str, limit: int = LABEL) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def _legend(items: Sequence[tuple[str, str]], y: float, x: float = 0) -> list[str]:
    out = []
    for label, colour in items:
        out.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour}"/>')
        out.append(_text(x + 17, y, label))
        x += 30 + 7 * len(label)
    return out


# --- status by agency ------------------------------------------------------------------------


def _folded(rates: Sequence[Rate]) -> list[Rate]:
    """The AGENCIES_SHOWN largest agencies, the rest added up (order kept)."""
    if len(rates) <= AGENCIES_SHOWN:
        return list(rates)
    keep = sorted(rates, key=lambda r: -r.actions)[: AGENCIES_SHOWN - 1]
    rest = Rate(f"Other agencies ({len(rates) - len(keep)})")
    for r in rates:
        if r not in keep:
            rest.merge(r)
    return [r for r in rates if r in keep] + [rest]


def status_by_agency(rates: Sequence[Rate], uid: str) -> str:
    """Stacked horizontal bars: each agency's actions by RAG rating."""
    shown = _folded(rates)
    label_w, top, bar_h, gap = 230, 34, 18, 8
    height = top + len(shown) * (bar_h + gap) + 24
    most = max((r.actions for r in shown), default=0) or 1
    scale = (WIDTH - label_w - 40) / most
    desc = "; ".join(
        f"{r.name}: " + ", ".join(f"{r.rag[c]} {RAG_WORDS[c].lower()}" for c in RAGS if r.rag[c])
        for r in shown
    )
    out = _open(uid, height, "Actions by lead agency and RAG rating", desc or "No actions.")
    out += _legend([(RAG_WORDS[c], COLOURS[c]) for c in RAGS], 14)
    for n, r in enumerate(shown):
        y = top + n * (bar_h + gap)
        out.append(f"<g><title>{escape(r.name)}: {r.actions} actions</title>")
        out.append(_text(label_w - 8, y + 13, _short(r.name), text_anchor="end"))
        x = float(label_w)
        for colour in RAGS:
            count = r.rag[colour]
            if not count:
                continue
            w = count * scale
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{COLOURS[colour]}"/>'
            )
            if w >= 8 * len(str(count)) + 4:
                out.append(_text(x + w / 2, y + 13, str(count), text_anchor="middle",
                                 fill=INK[colour]))  # fmt: skip
            x += w
        out.append(_text(x + 5, y + 13, str(r.actions), fill=RULE))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


# --- due and completed per quarter -----------------------------------------------------------


def _ticks(most: int) -> list[int]:
    """About five round steps from 0 to at least ``most``."""
    if most <= 0:
        return [0, 1]
    raw = most / 5
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = max(1, int(next(s * power for s in (1, 2, 5, 10) if s * power >= raw)))
    return list(range(0, math.ceil(most / step) * step + 1, step))


def per_quarter(quarters: Sequence[tuple[str, int, int]], uid: str) -> str:
    """Grouped bars: actions due and actions completed in each quarter."""
    left, top, bottom, height = 44, 30, 40, 240
    plot_h = height - top - bottom
    ticks = _ticks(max([max(d, c) for _, d, c in quarters] or [0]))
    top_value = ticks[-1] or 1
    desc = "; ".join(f"{label}: {d} due, {c} completed" for label, d, c in quarters)
    out = _open(uid, height, "Actions due and completed per quarter", desc or "No dated actions.")
    out += _legend([("Due", DUE), ("Completed", DONE)], 14, left)
    for t in ticks:
        y = top + plot_h - plot_h * t / top_value
        out.append(
            f'<line x1="{left}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="{FAINT}"/>'
        )
        out.append(_text(left - 6, y + 4, str(t), text_anchor="end", fill=RULE))
    slot = (WIDTH - left - 8) / max(len(quarters), 1)
    bar = min(22.0, slot * 0.36)
    for n, (label, due, done) in enumerate(quarters):
        x = left + n * slot + slot / 2
        for value, colour, dx in ((due, DUE, -bar - 1), (done, DONE, 1)):
            h = plot_h * value / top_value
            out.append(
                f'<rect x="{x + dx:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {value}</title></rect>'
            )
        out.append(_text(x, top + plot_h + 16, label, text_anchor="middle", font_size=11))
    out.append(
        f'<line x1="{left}" x2="{WIDTH - 8}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{RULE}"/>'
    )
    out.append("</svg>")
    return "\n".join(out)


# --- the implementation-rate trend ------------------------------------------------------------


def trend(points: Sequence[Point], uid: str) -> str:
    """Lines: the share of actions completed, and completed on time, over the review's life."""
    left, top, bottom, height = 44, 30, 40, 240
    plot_w, plot_h = WIDTH - left - 70, height - top - bottom
    first = points[0].day if points else None
    span = max(((points[-1].day - first).days if first else 0), 1)
    desc = (
        f"From {_day(points[0].day)} to {_day(points[-1].day)}: completed rose from "
        f"{points[0].completed_pct:.0f}% to {points[-1].completed_pct:.0f}% of the actions in "
        f"the plan; completed on time {points[-1].on_time_pct:.0f}%."
        if points
        else "No actions."
    )
    out = _open(uid, height, "Implementation rate over time", desc)
    out += _legend([("Completed", DONE), ("Completed on time", ON_TIME)], 14, left)
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h - plot_h * pct / 100
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{FAINT}"/>'
        )
        out.append(_text(left - 6, y + 4, f"{pct}%", text_anchor="end", fill=RULE))
    if first is None:
        out.append("</svg>")
        return "\n".join(out)

    def xy(p: Point, pct: float) -> tuple[float, float]:
        x = left + plot_w * ((p.day - first).days / span if len(points) > 1 else 0.5)
        return x, top + plot_h - plot_h * pct / 100

    for attr, colour, dash in (("completed_pct", DONE, ""), ("on_time_pct", ON_TIME, "6 4")):
        coords = [xy(p, getattr(p, attr)) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"{dashes}/>'
        )
        x, y = coords[-1]
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        out.append(_text(x + 7, y + 4, f"{getattr(points[-1], attr):.0f}%", fill=colour,
                         font_weight="bold"))  # fmt: skip
    for p in _labelled(points):
        x, _ = xy(p, 0)
        out.append(_text(x, top + plot_h + 16, f"{p.day:%b %Y}", text_anchor="middle",
                         font_size=11))  # fmt: skip
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{RULE}"/>'
    )
    out.append("</svg>")
    return "\n".join(out)


def _labelled(points: Sequence[Point]) -> list[Point]:
    """At most six date labels along the axis, the first and last among them."""
    if len(points) <= 6:
        return list(points)
    step = math.ceil((len(points) - 1) / 5)
    chosen = list(points[::step])
    if chosen[-1] is not points[-1]:
        if len(points) - 1 - points.index(chosen[-1]) < step / 2:
            chosen[-1] = points[-1]
        else:
            chosen.append(points[-1])
    return chosen


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def png(svg: str, scale: float = 1.5) -> bytes:
    """The chart as a PNG (for the spreadsheet), at ``scale`` times its size."""
    import cairosvg

    data = cairosvg.svg2png(bytestring=svg.encode(), scale=scale)
    assert isinstance(data, bytes)
    return data
