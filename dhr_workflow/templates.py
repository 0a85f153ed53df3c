"""Email templates: three Jinja2 files per message (subject, text, HTML) in the templates dir.

The environment is sandboxed with limits on work and memory (a deployment may supply its own
templates; see :mod:`sandbox`), undefined names are errors (StrictUndefined), and HTML
autoescapes everything, since plan text is user input. Every template is rendered against a
sample at rule-check time, so a broken or runaway template is found then, not at 8 a.m. on a
Monday.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateSyntaxError

from dhr_workflow.errors import InvalidInput
from dhr_workflow.sandbox import BoundedEnvironment, budget, collect

PARTS = ("subject.txt", "txt", "html")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
SUBJECT_LIMIT = 200


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@functools.lru_cache(maxsize=4096)  # a digest shows the same few dates again and again
def longdate(value: dt.date | None) -> str:
    return f"{value.day} {value:%B %Y}" if value else "no date"


def when(days: int | None) -> str:
    """Days until due (negative: overdue) in words."""
    if days is None:
        return "no due date"
    if days == 0:
        return "due today"
    if days > 0:
        return f"in {days} day{'s' if days != 1 else ''}"
    return f"{-days} day{'s' if days != -1 else ''} overdue"


_UNITS = {"d": ("day", "days"), "bd": ("working day", "working days"), "w": ("week", "weeks"),
          "m": ("month", "months")}  # fmt: skip


def steplabel(step: str) -> str:
    """A ladder step in words: "-30d" -> "30 days before", "+10bd" -> "10 working days after"."""
    sign, rest = step[:1], step[1:]
    number = "".join(c for c in rest if c.isdigit())
    unit = rest[len(number) :]
    if sign not in "+-" or not number or unit not in _UNITS:
        return step
    word = _UNITS[unit][0 if number == "1" else 1]
    return f"{number} {word} {'before' if sign == '-' else 'after'}"


def clean_header(value: str, limit: int = SUBJECT_LIMIT) -> str:
    """One line, no control characters: plan text must never inject or break a header."""
    flat = " ".join(_CONTROL.sub(" ", value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Templates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._text = self._env(directory, autoescape=False)
        self._html = self._env(directory, autoescape=True)

    @staticmethod
    def _env(directory: Path, *, autoescape: bool) -> BoundedEnvironment:
        return BoundedEnvironment(
            {"longdate": longdate, "when": when, "steplabel": steplabel},
            loader=FileSystemLoader(str(directory)),
            undefined=StrictUndefined,
            autoescape=autoescape,
            trim_blocks=autoescape,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Kept once read: an edited template takes effect when the rules are reloaded
            # (SIGHUP, checked first), not at the next render unchecked (a file not used yet
            # is read at first use); and a tick's thousands of renders skip a stat() each.
            auto_reload=False,
        )

    def names(self) -> set[str]:
        """Templates with all three parts present."""
        if not self.directory.is_dir():
            return set()
        stems = {p.name.removesuffix(".subject.txt") for p in self.directory.glob("*.subject.txt")}
        return {
            s
            for s in stems
            if all((self.directory / f"{s}.{part}").is_file() for part in PARTS[1:])
        }

    def render(self, name: str, context: dict[str, Any]) -> Rendered:
        """The three parts of a message, within the sandbox's limits for one message."""
        try:
            with budget():
                subject = clean_header(self._part(self._text, f"{name}.subject.txt", context))
                text = self._part(self._text, f"{name}.txt", context)
                html = self._part(self._html, f"{name}.html", {**context, "subject": subject})
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                f"{self.directory}/{exc.name or name}:{exc.lineno}: template error: {exc.message}"
            ) from None
        except TemplateError as exc:
            raise InvalidInput(
                f"{self.directory}/{name}: template cannot be rendered: {exc}"
            ) from None
        except (TypeError, AttributeError, ValueError, LookupError, ArithmeticError) as exc:
            # A template using a variable as what it is not (a family update looping over a
            # count): the template's mistake, reported as one line like the others.
            raise InvalidInput(
                f"{self.directory}/{name}: template cannot be rendered: {exc}"
            ) from None
        except (RecursionError, MemoryError):
            # The last line of defence, should a template get past the sandbox's limits.
            raise InvalidInput(
                f"{self.directory}/{name}: template cannot be rendered: it recurses too deeply "
                "or needs too much memory"
            ) from None
        return Rendered(subject, _tidy(text), html)

    @staticmethod
    def _part(env: BoundedEnvironment, name: str, context: dict[str, Any]) -> str:
        return collect(env.get_template(name).generate(context))

    def check(self, names: set[str], kind: str = "all") -> None:
        """Render each named template against a sample; raises on the first that fails."""
        missing = names - self.names()
        if missing:
            raise InvalidInput(
                f"{self.directory}: missing template(s) "
                f"{', '.join(sorted(missing))} (each needs .subject.txt, .txt "
                "and .html)"
            )
        for name in sorted(names):
            self.render(name, sample_context(kind))


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):  # at most one blank line in a row
            out.append(line)
    return "\n".join(out).strip() + "\n"


REPORT_LISTS = ("overdue", "completed_since", "due_soon", "needs_review", "progress_since")


def family_safe(context: dict[str, Any]) -> dict[str, Any]:
    """What a family update may show: counts, never the actions. The lists become true/false,
    so a family-safe template — which a deployment may rewrite — cannot name an agency, a
    worker or a line of plan text, however it is written."""
    safe = {k: v for k, v in context.items() if k not in REPORT_LISTS}
    safe.update({name: bool(context[name]) for name in REPORT_LISTS if name in context})
    return safe


def sample_context(kind: str = "all") -> dict[str, Any]:
    """A context like the one each kind of message gets: "action" digests, "review" reports,
    "failure" notices, "extension" requests and decisions ("all": every variable, for
    checking a template on its own)."""
    today = dt.date(2024, 1, 15)
    action = {
        "id": 1, "review": "DHR-1", "recommendation": "1", "ref": "1",
        "text": "Review training", "text_short": "Review training",
        "lead_agency": "Police", "owner": "Jo Bloggs", "due_date": today,
        "days": -3, "target_text": "January 2024", "status": "open",
        "completed_on": None, "reasons": ["due: example"],
        "rec_text": "Review domestic abuse training", "sent_steps": ["-30d"],
        "first_notice": False, "page": "http://dhr.example.org/actions/1",
        "links": {"progress": "http://dhr.example.org/act/p", "done": "http://dhr.example.org/act/d",
                  "extend": "http://dhr.example.org/act/e"},
    }  # fmt: skip
    common: dict[str, Any] = {
        "rule": "sample",
        "step": "+1d",
        "today": today,
        "partnership": "Sample",
        "coordinator": {"name": "Cat Coordinator", "email": "coordinator@example.org"},
        "recipient": {"name": "Jo Bloggs", "email": "jo@example.org"},
        "web": "http://dhr.example.org",
        "more": 0,
    }
    parts: dict[str, dict[str, Any]] = {
        "action": {"actions": [action], "total": 1},
        "review": {
            "review": {"ref": "DHR-1", "title": "Sample review", "partnership": None},
            "counts": {"total": 1, "open": 1, "in_progress": 0, "completed": 0, "blocked": 0,
                       "withdrawn": 0},
            "overdue": [action], "completed_since": [], "due_soon": [], "needs_review": [action],
            "overdue_count": 1, "completed_since_count": 0, "due_soon_count": 0,
            "needs_review_count": 1,
            "progress_since": [{"id": 1, "ref": "1", "at": dt.datetime(2024, 1, 10, 9, 0),
                                "note": "Training booked", "note_short": "Training booked",
                                "author": "jo@example.org", "lead_agency": "Police"}],
            "progress_since_count": 1,
            "audit_head": {"seq": 42, "hash": "0" * 64},
        },
        "failure": {"failed": {"id": 7, "subject": "Overdue: DHR-1 action 1",
                               "to": ["a@example.org"], "cc": [], "state": "failed",
                               "attempts": 1, "error": "550 no such user",
                               "created_at": today, "tried_for": "once"}},
        "extension": {
            "action": {"id": 1, "review": "DHR-1", "recommendation": "1", "ref": "1",
                       "text": "Review training", "lead_agency": "Police",
                       "due_date": dt.date(2024, 3, 31), "status": "open"},
            "extension": {"id": 3, "requested_by": "jo@example.org",
                          "requested_by_name": "Jo Bloggs",
                          "requested_on": dt.date(2024, 1, 10),
                          "current_due": today, "proposed_due": dt.date(2024, 3, 31),
                          "reason": "The new system arrives in March", "state": "approved",
                          "approved": True, "note": "Agreed at the board",
                          "decided_by": "coordinator@example.org",
                          "decided_by_name": "Cat Coordinator"},
            "url": "https://dhr.example.org/actions/1",
            "recipient": {"name": "Jo Bloggs", "email": "jo@example.org"},
            "coordinator": {"name": "Cat Coordinator", "email": "coordinator@example.org"},
        },
    }  # fmt: skip
    if kind == "all":
        return common | parts["action"] | parts["review"] | parts["failure"] | parts["extension"]
    return common | parts[kind]
