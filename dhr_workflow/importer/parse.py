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
- in a section whose recommendations carry no numbers, a row whose recommendation cell starts
  afresh (a capital, after a finished cell above) is the next recommendation, numbered in order;
  a lower-case start or an unfinished cell above is the same cell wrapped;
- rows of dashes and rows before any header (titles, contents lists) are never actions.

Once read, each row's names are settled (``names.py``): the organisation is told apart from
the person or role beside it, broken hyphens mended, and a cell that cannot be an agency's name
(a date, a fragment) is kept in the owner text and flagged. Each agency section gets a short
prefix so that refs shown to people ("NC 2") are unique within the plan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from dhr_workflow.importer import names
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
_AGENCY_HEADING = re.compile(
    r"^(?:lead\s+)?(?:agency|organisation|organization)\s*[:\-–—]\s*(?P<name>.+)$", re.I
)
# The generic half of a section heading ("Single Agency Recommendations – Northshire
# Constabulary", "IMR Recommendations: Northshire NHS Trust"); the other half is the agency.
_GENERIC_HEADING = re.compile(
    r"(?:(?:single|individual|partner|multi)[\s-]+)?(?:agency|agencies|imr|"
    r"individual management (?:review|report)s?)?\s*(?:recommendations?|action plan|actions?)"
    r"(?:\s+for)?|appendix\s+\w+|(?:section|part)\s+\w+",
    re.I,
)
_HEADING_PARTS = re.compile(r"\s*[:–—]\s*|\s+-\s+")
_RECOMMENDATIONS_FOR = re.compile(r"^(?:recommendations?|actions?)\s+for\s+(?P<name>.+)$", re.I)
_DHR = re.compile(r"domestic homicide review|\bDHR\b", re.I)
_ACTION_PLAN_TAIL = re.compile(r"[\s:–—-]*\baction plan\s*$", re.I)
_PARTNERSHIP = re.compile(r"\b(partnership|community safety|csp)\b", re.I)
# A cell that ends mid-sentence continues on the next row.
_UNFINISHED = re.compile(
    r"(?:[,;\-–(/&]|\b(?:and|or|of|the|to|for|with|in|on|at|by|a|an|that|which|including|"
    r"from|as|is|are|be|when|where|who|whose|if|should|must|will|would|can|could|than|such|"
    r"into|about|under|over|between|all|any|their|its|this|these|those|has|have|not|so))\s*$",
    re.I,
)
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
    numbered: bool = True  # False: the plan wrote no number; rec_ref counts them in order
    prefix: str = ""  # the section's short prefix ("NC"); empty in the overview
    flags: list[str] = field(default_factory=list)  # review reasons about garbled cells
    action_key: str = ""  # from an export: the action this row corrects (importer/export.py)
    status: str = ""  # from an export's Workflow status column, as written

    @property
    def key(self) -> str:
        """Identity across re-imports of the same or a revised plan."""
        key = f"{self.section}|{self.rec_ref}|{self.index}"
        return key if self.numbered else f"{key}|unnumbered"

    @property
    def ref(self) -> str:
        return (
            self.rec_ref if self.index == 1 else f"{self.rec_ref}{chr(ord('a') + self.index - 1)}"
        )

    @property
    def display_ref(self) -> str:
        """The ref people see, unique within the plan: "NC 2" in a section, "2" in the
        overview."""
        return f"{self.prefix} {self.ref}" if self.prefix else self.ref

    @property
    def lead_agency(self) -> str | None:
        return self.agency or self.section_agency or None


@dataclass
class ParsedPlan:
    rows: list[PlanRow] = field(default_factory=list)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    headers_found: int = 0
    title: str | None = None
    partnership: str | None = None  # the partnership the title line names, if any


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
        # Whether this section writes its recommendations' numbers: None until its first
        # recommendation says so.
        self.numbered: bool | None = None
        self.current: PlanRow | None = None
        self.last_heading = ""  # the heading line before the title names the partnership
        self.after_header = False  # the last line was a table header
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
                self.roles = None
                self._enter(OVERVIEW, agency=False)
                continue
            if len(line.cells) == 1 or self._lone_heading(position, line):
                self._heading(position, line)
                continue
            roles = column_roles(line.cells)
            if roles is not None:
                self.roles, self.header = roles, line.cells
                self.plan.headers_found += 1
                self.after_header = True
            elif self.roles is not None:
                self._row(position, line)
                self.after_header = False
        _settle(self.plan.rows)
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
        elif "domestic homicide review" in flat.lower() or (
            self.roles is None and _DHR.search(flat)
        ):
            self._title(flat)
        elif (named := _named_in_heading(flat)) is not None:
            self._enter(named, agency=True)
        elif self._names_table_below(position, flat):  # "Northshire Women's Aid Action Plan"
            self._enter(_HEADING_TAIL.sub("", flat), agency=True)
        elif _TITLE.search(flat):
            pass
        elif self._precedes_header(position) or self._section_row(position, flat):
            self._enter(_HEADING_TAIL.sub("", flat), agency=True)
        elif self.current is not None and self.roles is not None:
            self._continue_first_column(line, text)
        if self.roles is None:
            self.last_heading = flat

    def _title(self, flat: str) -> None:
        """The review's title from the DHR heading; the partnership if the line (or the one
        above it) names one: "Safer Northshire Partnership — DHR into the death of 'Anna'"."""
        if self.plan.title is not None:
            return
        parts = [p for p in _HEADING_PARTS.split(flat) if p.strip()]
        title = next((p for p in parts if _DHR.search(p)), flat)
        self.plan.title = _ACTION_PLAN_TAIL.sub("", title).strip() or title
        others = [p for p in parts if p is not title and _PARTNERSHIP.search(p)]
        if others:
            self.plan.partnership = others[0].strip()
        elif _PARTNERSHIP.search(self.last_heading) and not _DHR.search(self.last_heading):
            self.plan.partnership = self.last_heading

    def _names_table_below(self, position: int, flat: str) -> bool:
        name = _HEADING_TAIL.sub("", flat)
        return (
            name != flat
            and not _GENERIC_HEADING.fullmatch(flat)
            and _looks_like_name(name)
            and self._precedes_header(position)
        )

    def _is_furniture(self, flat: str) -> bool:
        return flat.lower() in self.furniture or bool(_FOOTER.search(flat))

    def _continue_first_column(self, line: Line, text: str) -> None:
        # A spreadsheet row with only its first cell filled, inside a table: a wrapped cell,
        # or in a section without numbers, the next recommendation.
        assert self.roles is not None
        role = self.roles.get(0, "recommendation")
        if role == self._lead_role() and self._starts_unnumbered(text, {}):
            self._start(
                line,
                self._next_ref(),
                text if role == "recommendation" else "",
                {role: text},
                numbered=False,
            )
        elif role in ("ref", "section", "recommendation"):
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

    def _lone_heading(self, position: int, line: Line) -> bool:
        """A heading that kept its tabs: only the first cell filled, and it reads as one."""
        if any(c.strip() for c in line.cells[1:]):
            return False
        flat = " ".join(clean(line.cells[0]).split())
        return bool(
            _AGENCY_HEADING.match(flat)
            or _named_in_heading(flat)
            or (names.is_organisation(flat) and self._precedes_header(position))
            or self._section_row(position, flat)
        )

    def _section_row(self, position: int, flat: str) -> bool:
        """A spreadsheet's section row between the rows of one table: a name above a row
        that starts a recommendation."""
        return (
            self.roles is not None
            and _looks_like_name(flat)
            and (
                self._precedes_ref(position)
                or (names.is_organisation(flat) and self._precedes_unnumbered(position))
            )
        )

    def _precedes_unnumbered(self, position: int) -> bool:
        line = self._next_line(position)
        if line is None or len(line.cells) < 2 or column_roles(line.cells) is not None:
            return False
        lead = self._cells(line).get(self._lead_role(), "")
        return self.numbered is not True and _fresh(lead) and len(lead.split()) >= 3

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
        name = names.mend(name) if agency else name  # "Bi- Borough Adult Social Care"
        self.section, self.section_agency = name, (name if agency else None)
        self.current = None  # never join a row to an action from another section
        self.numbered = None

    # --- table rows ------------------------------------------------------------------------
    def _row(self, position: int, line: Line) -> None:
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
        lead = cells.get(self._lead_role(), "")
        if ref is not None:
            self.numbered = True
            self._start(line, ref, rec_text, cells)
        elif self._starts_unnumbered(lead, cells) and not self._numbers_follow(position):
            self._start(line, self._next_ref(), rec_text, cells, numbered=False)
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

    def _lead_role(self) -> str:
        """The column whose text starts a recommendation: its own, else the action's."""
        assert self.roles is not None
        return "recommendation" if "recommendation" in self.roles.values() else "action"

    def _starts_unnumbered(self, lead: str, cells: dict[str, str]) -> bool:
        """A recommendation with no number written: in a section that writes none, a lead cell
        that starts afresh, unless the one above is unfinished (a cell split by a page)."""
        # A recommendation is a sentence: "R | red | overdue" under a key's header is not one.
        if self.numbered or not _fresh(lead.lstrip("'\"‘“")) or len(lead.split()) < 3:
            return False
        cur = self.current
        if cur is None:
            return True
        above = cur.rec_text if self._lead_role() == "recommendation" else cur.text
        if _UNFINISHED.search(above):
            return False
        # Nothing else on the row starts a cell of its own: the cells above, wrapped. A lone
        # cell is wrapped unless the one above is finished, and always straight after a
        # header repeated by a page break.
        others = [v for role, v in cells.items() if role != self._lead_role() and v]
        if others:
            return any(_fresh(v) for v in others)
        finished = above.rstrip().endswith((".", "!", "?", ":", ")"))
        return finished and not self.after_header

    def _numbers_follow(self, position: int) -> bool:
        """Before a section's first recommendation: do the next rows write numbers? Then this
        unnumbered row is no recommendation of its own (a sub-heading, a stray cell)."""
        if self.numbered is not None:
            return False
        rows = 0
        for line in self.lines[position + 1 : position + 40]:
            if len(line.cells) < 2 or column_roles(line.cells) is not None:
                continue
            if self._ref(self._cells(line))[0] is not None:
                return True
            rows += 1
            if rows == 3:
                break
        return False

    def _next_ref(self) -> str:
        """The next number in this section for a recommendation the plan did not number."""
        self.numbered = False
        n = 1 + sum(1 for section, _ in self.by_rec if section == self.section)
        while (self.section, str(n)) in self.by_rec:
            n += 1
        return str(n)

    def _second_action(self, cells: dict[str, str]) -> bool:
        """A row without a ref that brings its own holder and target under a complete action."""
        cur = self.current
        if cur is None or not cur.target or not (cur.owner or cur.agency):
            return False
        holder = cells.get("owner") or cells.get("agency") or ""
        target = cells.get("target", "")
        return _fresh(holder) and _fresh(target)

    def _start(
        self,
        line: Line,
        ref: str,
        rec_text: str | None,
        cells: dict[str, str],
        *,
        numbered: bool = True,
    ) -> None:
        same_rec = self.by_rec.setdefault((self.section, ref), [])
        row = PlanRow(
            line=line.number,
            section=self.section,
            section_agency=self.section_agency,
            rec_ref=ref,
            index=len(same_rec) + 1,
            numbered=numbered if rec_text is not None else same_rec[0].numbered,
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


def _named_in_heading(flat: str) -> str | None:
    """The agency a section heading names beside generic words: "Single Agency
    Recommendations – Northshire Constabulary", "Recommendations for Northshire Council"."""
    if _DHR.search(flat):
        return None
    wanted = _RECOMMENDATIONS_FOR.match(flat)
    if wanted:
        return wanted["name"].strip() if _looks_like_name(wanted["name"]) else None
    parts = [p.strip() for p in _HEADING_PARTS.split(flat) if p.strip()]
    generic = [p for p in parts if _GENERIC_HEADING.fullmatch(p)]
    named = [p for p in parts if not _GENERIC_HEADING.fullmatch(p)]
    if generic and len(named) == 1 and _looks_like_name(named[0]):
        return _HEADING_TAIL.sub("", named[0])
    return None


def _settle(rows: list[PlanRow]) -> None:
    """Names settled once every wrapped cell is joined, and each section's prefix."""
    for row in rows:
        _settle_names(row)
    sections = [r.section for r in rows if r.section != OVERVIEW]
    prefixes = names.unique_prefixes(list(dict.fromkeys(sections)))
    for row in rows:
        row.prefix = prefixes.get(row.section, "")


def _settle_names(row: PlanRow) -> None:
    """Organisation apart from owner; a cell that cannot be an agency is flagged, not
    believed."""
    row.owner = names.mend(row.owner)
    if row.agency:
        person, body = names.split_holder(row.agency)
        row.agency = body or names.mend(row.agency)
        if body:
            row.owner = ", ".join(p for p in (person, row.owner) if p)
    elif not row.section_agency and row.owner:
        person, body = names.split_holder(row.owner)
        if body:
            row.agency, row.owner = body, person
    problem = names.agency_problem(row.agency) if row.agency else None
    if problem:
        shown = " ".join(row.agency.split())[:80]
        row.flags.append(
            f"agency: the lead agency cell {shown!r} {problem}, so no agency was made from it "
            "(kept in the owner text); the PDF may have run two columns together — check the "
            "plan and choose the agency"
        )
        row.owner = join(row.owner, row.agency) if row.owner != row.agency else row.owner
        row.agency = ""
    owner_problem = names.owner_problem(row.owner) if row.owner and not problem else None
    if owner_problem:
        shown = " ".join(row.owner.split())[:80]
        row.flags.append(
            f"text: the owner cell {shown!r} {owner_problem}; the PDF may have run two columns "
            "together (the due date is read only from the target column) — check it"
        )


def parse_lines(lines: Sequence[Line]) -> ParsedPlan:
    return _Parser(lines).run()
