"""Lines of cells to plan rows: headers found by synonym, page furniture dropped, wrapped cells
joined, sections and recommendation refs kept. Pure: no store, no clock.

How a line is read, in order:
- a line whose cells name at least three known columns is a header (they repeat on every page);
- a line of one cell is a heading: page furniture if it repeats or reads like a footer, a
  section ("Agency: West Mercia police", "Overview Report Recommendations", or an agency name
  standing just above a table), otherwise a title and ignored;
- under a header, a row that starts a recommendation ("1", "3)", "1.1", "Recommendation No 3")
  is a new action; a row without one continues the action above it — unless it brings its own
  holder and a fresh target date while the action above already has both, when it is a second
  action under the same recommendation;
- rows of dashes and rows before any header (titles, contents lists) are never actions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from dhr_workflow.importer.readers import Line
from dhr_workflow.importer.text import clean, join

OVERVIEW = "overview"

# Column roles by header wording (normalised: lower case, "&" as "and", no punctuation).
# Order matters: the first pattern that matches the whole header wins.
COLUMN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (role, re.compile(pattern))
    for role, pattern in (
        # Columns of `dhr-workflow export` (importer/export.py): before "action" and "outcome",
        # whose patterns would take "Action key" and "Workflow status". Read-only columns get a
        # role of their own so no wider pattern claims them; nothing reads it.
        ("action_key", r"action key"),
        ("status", r"workflow status"),
        ("readonly", r"due date parsed|flags"),
        ("ref", r"#|no|ref|ref no|number|rec|rec(ommendation)? (no|number|ref)"),
        ("section", r"section|agency section"),
        ("recommendation", r"recommendations?( text)?"),
        ("scope", r"scope.*"),
        ("milestones", r"(key )?milestones.*|(desired|expected|intended) outcomes?"),
        ("target", r"target.*|deadline.*|due date|due|timescales?|revised (target|due) date.*"),
        (
            "outcome",
            r".*outcome.*|.*status|progress.*|.*action taken.*|updates?|"
            r"completion date|date completed|completed|rag.*",
        ),
        (
            "owner",
            r"action holder|implementation lead|lead officers?.*|owner|"
            r"responsible (officer|person|lead)|lead person|named lead",
        ),
        (
            "agency",
            r"(lead |responsible )?(agency|organisation|organization|partner)"
            r"( (organisation|organization|agency|partner))?",
        ),
        ("action", r"actions?.*|agreed actions?"),
    )
)
_FOOTER = re.compile(r"confidential|not to be (photo)?copied|^page \d+( of \d+)?$|^\d+$", re.I)
_TITLE = re.compile(
    r"action plan|domestic homicide review|^appendix|^contents|allocated actions|"
    r"^(individual management (report|review)|imr|single agency|agency)( recommendations)?$|"
    r"^recommendations$",
    re.I,
)
# "Avon and Somerset Police Recommendations" above a table names the agency.
_HEADING_TAIL = re.compile(r"\s+(recommendations|action plan|actions)$", re.I)
_AGENCY_HEADING = re.compile(r"^agency\s*[:\-–]\s*(?P<name>.+)$", re.I)
_DEBRIS = re.compile(r"^[\s\-–—_=.|*]*$")
_REF_WORDED = re.compile(
    r"^\s*(?:recommendation|rec\.?|r)\s*(?:no\.?|number|#)?\s*(?P<ref>\d+(?:\.\d+)*[a-z]?)\b"
    r"[.):]?\s*|^\s*\((?P<paren>\d+(?:\.\d+)*[a-z]?)\)\s*",
    re.I,
)
_REF_BARE = re.compile(
    r"^\s*(?P<ref>\d+(?:\.\d+)*[a-z]?)\s*[).:](?!\d)\s*|^\s*(?P<dotted>\d+\.\d+(?:\.\d+)*)\s+"
)
_REF_ONLY = re.compile(r"^\s*(?P<ref>\d+(?:\.\d+)*[a-z]?)[.)]?\s*$")
_SMALL_WORDS = {"of", "and", "the", "for", "to", "within", "in", "on", "at", "by", "with", "&"}


@dataclass
class PlanRow:
    """One action as the plan states it (text already cleaned)."""

    line: int
    section: str
    section_agency: str | None
    rec_ref: str
    index: int  # 1 for the first action of a recommendation, 2 for the second...
    rec_text: str = ""
    scope: str = ""
    text: str = ""
    agency: str = ""
    owner: str = ""
    milestones: str = ""
    target: str = ""
    outcome: str = ""
    agency_from_action: bool = False
    action_key: str = ""  # from an export: the action this row corrects (importer/export.py)
    status: str = ""  # from an export's Workflow status column, as written

    @property
    def key(self) -> str:
        """Identity across re-imports of the same or a revised plan."""
        return f"{self.section}|{self.rec_ref}|{self.index}"

    @property
    def ref(self) -> str:
        return (
            self.rec_ref if self.index == 1 else f"{self.rec_ref}{chr(ord('a') + self.index - 1)}"
        )

    @property
    def lead_agency(self) -> str | None:
        return self.agency or self.section_agency or None


@dataclass
class ParsedPlan:
    rows: list[PlanRow] = field(default_factory=list)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    headers_found: int = 0
    title: str | None = None


def normalise_header(text: str) -> str:
    text = clean(text).lower().replace("&", " and ")
    return " ".join(re.sub(r"[^a-z0-9#]+", " ", text).split())


def column_roles(cells: Sequence[str]) -> dict[int, str] | None:
    """The role of each column if this line is a header, else None."""
    roles: dict[int, str] = {}
    for i, cell in enumerate(cells):
        name = normalise_header(cell)
        role = next((r for r, p in COLUMN_PATTERNS if name and p.fullmatch(name)), None)
        if role is None:
            continue
        earlier = next((j for j, r in roles.items() if r == role), None)
        if earlier is None:
            roles[i] = role
        elif re.search(r"\b(revised|updated|new|current)\b", name):
            del roles[earlier]  # "Revised target date" beats the original one
            roles[i] = role
    wanted = {"recommendation", "action", "target", "ref"}
    if (
        len(roles) >= 3
        and wanted & set(roles.values())
        and ("target" in roles.values() or "action" in roles.values())
    ):
        return roles
    return None


class _Parser:
    def __init__(self, lines: Sequence[Line]) -> None:
        self.lines = lines
        self.plan = ParsedPlan()
        self.roles: dict[int, str] | None = None
        self.header: tuple[str, ...] = ()
        self.section: str = OVERVIEW
        self.section_agency: str | None = None
        self.current: PlanRow | None = None
        self.furniture = self._repeated_headings()
        # The actions of each (section, recommendation) so far: a row finds its siblings
        # without a scan of every row before it (a large plan made that quadratic).
        self.by_rec: dict[tuple[str, str], list[PlanRow]] = {}

    def _repeated_headings(self) -> set[str]:
        counts = Counter(
            " ".join(ln.cells[0].split()).lower()
            for ln in self.lines
            if len(ln.cells) == 1 and ln.cells[0].strip()
        )
        return {text for text, n in counts.items() if n > 1}

    def run(self) -> ParsedPlan:
        for position, line in enumerate(self.lines):
            if not line.cells:  # a new sheet: its own header and sections
                self.roles, self.current = None, None
                self.section, self.section_agency = OVERVIEW, None
                continue
            if len(line.cells) == 1:
                self._heading(position, line)
                continue
            roles = column_roles(line.cells)
            if roles is not None:
                self.roles, self.header = roles, line.cells
                self.plan.headers_found += 1
            elif self.roles is not None:
                self._row(line)
        return self.plan

    # --- headings --------------------------------------------------------------------------
    def _heading(self, position: int, line: Line) -> None:
        text = clean(line.cells[0])
        flat = " ".join(text.split())
        agency = _AGENCY_HEADING.match(flat)
        if agency:  # even when it repeats on every page
            self._enter(agency["name"].strip(), agency=True)
        elif not flat or self._is_furniture(flat):
            return
        elif "overview" in flat.lower():
            self._enter(OVERVIEW, agency=False)
        elif _TITLE.search(flat):
            if self.plan.title is None and "domestic homicide review" in flat.lower():
                self.plan.title = flat
        elif self._precedes_header(position) or (
            # a spreadsheet's section row between the rows of one table
            self.roles is not None and _looks_like_name(flat) and self._precedes_ref(position)
        ):
            self._enter(_HEADING_TAIL.sub("", flat), agency=True)
        elif self.current is not None and self.roles is not None:
            self._continue_first_column(text)

    def _is_furniture(self, flat: str) -> bool:
        return flat.lower() in self.furniture or bool(_FOOTER.search(flat))

    def _continue_first_column(self, text: str) -> None:
        # A spreadsheet row with only its first cell filled, inside a table: a wrapped cell.
        assert self.roles is not None
        role = self.roles.get(0, "recommendation")
        if role in ("ref", "section", "recommendation"):
            self._continue(text, {})
        else:
            self._continue("", {role: text})

    def _next_line(self, position: int) -> Line | None:
        """The next line that is not blank or page furniture."""
        for index in range(position + 1, len(self.lines)):  # no copy of the rest of the file
            line = self.lines[index]
            if len(line.cells) == 1:
                flat = " ".join(clean(line.cells[0]).split())
                if not flat or self._is_furniture(flat):
                    continue
            return line
        return None

    def _precedes_ref(self, position: int) -> bool:
        line = self._next_line(position)
        return (
            line is not None
            and len(line.cells) > 1
            and column_roles(line.cells) is None
            and self._ref(self._cells(line))[0] is not None
        )

    def _precedes_header(self, position: int) -> bool:
        line = self._next_line(position)
        return line is not None and len(line.cells) > 1 and column_roles(line.cells) is not None

    def _enter(self, name: str, *, agency: bool) -> None:
        self.section, self.section_agency = name, (name if agency else None)
        self.current = None  # never join a row to an action from another section

    # --- table rows ------------------------------------------------------------------------
    def _row(self, line: Line) -> None:
        assert self.roles is not None
        cells = self._cells(line)
        if not any(cells.values()):
            return
        if all(_DEBRIS.match(v) for v in line.cells):
            return
        if not any(c.strip() for c in line.cells[1:]):
            flat = " ".join(clean(line.cells[0]).split())
            if self._is_furniture(flat):  # a footer that kept its tabs
                return
        if cells.get("section"):
            self._section_cell(cells["section"])
        ref, rec_text = self._ref(cells)
        if ref is not None:
            self._start(line, ref, rec_text, cells)
        elif self._second_action(cells):
            self._append_rec_text(rec_text)
            assert self.current is not None
            self._start(line, self.current.rec_ref, None, cells)
        elif self.current is not None:
            self._continue(rec_text, cells)
        else:
            self.plan.ignored.append((line.number, "a row with no recommendation to belong to"))

    def _section_cell(self, value: str) -> None:
        """A spreadsheet's Section column, read like a heading."""
        flat = " ".join(value.split())
        agency = _AGENCY_HEADING.match(flat)
        name, is_agency = (
            (agency["name"].strip(), True)
            if agency
            else (OVERVIEW, False)
            if "overview" in flat.lower()
            else (_HEADING_TAIL.sub("", flat), True)
        )
        if name != self.section:
            self._enter(name, agency=is_agency)

    def _cells(self, line: Line) -> dict[str, str]:
        assert self.roles is not None
        out: dict[str, str] = {}
        for i, role in self.roles.items():
            out[role] = clean(line.cells[i]) if i < len(line.cells) else ""
        extra = [clean(c) for c in line.cells[len(self.header) :] if c.strip()]
        if extra:  # cells past the header's width: a row that overflowed its last column
            last = self.roles[max(self.roles)]
            out[last] = " ".join([out[last], *extra]).strip()
        return out

    def _ref(self, cells: dict[str, str]) -> tuple[str | None, str]:
        rec = cells.get("recommendation", "")
        if "ref" in cells:
            ref, _ = _leading_ref(cells["ref"])
            return ref, rec
        return _leading_ref(rec)

    def _second_action(self, cells: dict[str, str]) -> bool:
        """A row without a ref that brings its own holder and target under a complete action."""
        cur = self.current
        if cur is None or not cur.target or not (cur.owner or cur.agency):
            return False
        holder = cells.get("owner") or cells.get("agency") or ""
        target = cells.get("target", "")
        return _fresh(holder) and _fresh(target)

    def _start(self, line: Line, ref: str, rec_text: str | None, cells: dict[str, str]) -> None:
        same_rec = self.by_rec.setdefault((self.section, ref), [])
        row = PlanRow(
            line=line.number,
            section=self.section,
            section_agency=self.section_agency,
            rec_ref=ref,
            index=len(same_rec) + 1,
        )
        row.rec_text = (
            rec_text if rec_text is not None else (same_rec[0].rec_text if same_rec else "")
        )
        for role in (
            *("scope", "text", "agency", "owner", "milestones", "target", "outcome"),
            *("action_key", "status"),
        ):
            setattr(row, role, cells.get("action" if role == "text" else role, ""))
        self._agency_in_action_column(row)
        self.plan.rows.append(row)
        same_rec.append(row)
        self.current = row

    def _agency_in_action_column(self, row: PlanRow) -> None:
        # "Action Required by Agency" columns hold either the agency's name or the action.
        assert self.roles is not None
        header = next((i for i, r in self.roles.items() if r == "action"), None)
        if row.agency or header is None:
            return
        if "agency" in normalise_header(self.header[header]) and _looks_like_name(row.text):
            row.agency, row.text, row.agency_from_action = row.text, "", True

    def _append_rec_text(self, more: str) -> None:
        """The recommendation's own text: one text shared by all its actions."""
        cur = self.current
        if not more or cur is None:
            return
        merged = join(cur.rec_text, more)
        for row in self.by_rec[(cur.section, cur.rec_ref)]:
            row.rec_text = merged

    def _continue(self, rec_text: str, cells: dict[str, str]) -> None:
        cur = self.current
        assert cur is not None
        self._append_rec_text(rec_text)
        for role in ("scope", "agency", "owner", "milestones", "target", "outcome"):
            if cells.get(role):
                setattr(cur, role, join(getattr(cur, role), cells[role]))
        if cells.get("action"):
            cur.text = join(cur.text, cells["action"])
        if cells.get("action_key"):  # a keyed row whose ref was cleared: the import says so
            cur.action_key = f"{cur.action_key}\n{cells['action_key']}"


def _leading_ref(text: str) -> tuple[str | None, str]:
    """The recommendation ref a cell starts with ("1", "3)", "1.1", "Recommendation No 3",
    "Rec 3", "(2)") and the text after it."""
    only = _REF_ONLY.match(text)
    if only:  # a cell holding just the number
        return only["ref"], ""
    for pattern in (_REF_WORDED, _REF_BARE):
        m = pattern.match(text)
        if m:
            ref = next(g for g in m.groups() if g)
            return ref, text[m.end() :].strip()
    return None, text


def _fresh(text: str) -> bool:
    """Starts like a cell of its own (capital or digit), not the tail of a wrapped one."""
    return bool(text) and (text[0].isupper() or text[0].isdigit())


def _looks_like_name(text: str) -> bool:
    words = text.split()
    if not words or len(words) > 10 or "\n" in text or text.rstrip().endswith("."):
        return False
    significant = [w for w in words if w.lower() not in _SMALL_WORDS]
    capitalised = sum(1 for w in significant if w[0].isupper())
    return bool(significant) and capitalised / len(significant) >= 0.6


def parse_lines(lines: Sequence[Line]) -> ParsedPlan:
    return _Parser(lines).run()
