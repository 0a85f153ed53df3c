"""Rule files: YAML in the rules directory, validated into pydantic models.

Errors name the file, the line and the field, e.g.
``rules/deadlines.yaml:14: ladders[0] (deadline): steps[2].at: '+10x' is not a duration``.
Two kinds of entry:

- ``ladders``: ordered steps at offsets from each action's due date;
- ``rules``: a selection plus a schedule (cron, or every N months from a review anchor date),
  per action or per review.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dhr_workflow.durations import Offset, parse_cron, parse_offset
from dhr_workflow.errors import InvalidInput
from dhr_workflow.models import ActionStatus, ReviewStatus

ROLES = (
    "owner",
    "agency.lead",
    "agency.manager",
    "coordinator",
    "partnership.chair",
    "review.family_liaison",
)
REVIEW_ROLES = ("coordinator", "partnership.chair", "review.family_liaison")
# Templates written for a victim's family: progress in plain words, no names, no case detail.
FAMILY_SAFE = frozenset({"family_update"})
ANCHOR_FIELDS = (
    "review.plan_agreed_on",
    "review.report_accepted_on",
    "review.published_on",
    "review.completed_on",
)
_ADDRESS = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"']+$")
_EVERY = re.compile(r"^\s*(?P<n>\d{1,3})\s*(?P<unit>months?|weeks?|days?)\s*$")


def _as_list(value: Any) -> Any:
    """YAML lets a single item stand for a one-item list: ``to: owner``."""
    return value if value is None or isinstance(value, list | tuple) else [value]


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _offset(value: Any) -> Offset:
    if isinstance(value, Offset):
        return value
    return parse_offset(value)


OffsetField = Annotated[Offset, BeforeValidator(_offset)]


class Notify(_Strict):
    to: StrList
    cc: StrList = Field(default_factory=list)
    template: str
    calendar: Literal["invite"] | None = None

    @field_validator("to", "cc")
    @classmethod
    def _known_recipients(cls, values: list[str]) -> list[str]:
        for v in values:
            if v not in ROLES and not _ADDRESS.match(v):
                raise ValueError(f"{v!r} is neither a role ({', '.join(ROLES)}) nor an address")
        return values

    @field_validator("to")
    @classmethod
    def _someone(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("names nobody; give at least one role or address")
        return values

    @model_validator(mode="after")
    def _family_safe(self) -> Notify:
        # A victim's family must never receive internal names or case detail.
        if "review.family_liaison" in [*self.to, *self.cc] and self.template not in FAMILY_SAFE:
            raise ValueError(
                f"review.family_liaison may only receive family-safe templates "
                f"({', '.join(sorted(FAMILY_SAFE))}), not {self.template!r}"
            )
        return self


NotifyList = Annotated[list[Notify], BeforeValidator(_as_list), Field(min_length=1)]
RuleId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S+$")]


class Every(_Strict):
    every: str
    from_: str = Field(alias="from")

    @field_validator("every")
    @classmethod
    def _interval(cls, value: str) -> str:
        if not _EVERY.match(str(value)):
            raise ValueError(f"{value!r} is not an interval (e.g. 6 months, 2 weeks, 30 days)")
        return str(value)

    @field_validator("from_")
    @classmethod
    def _anchor(cls, value: str) -> str:
        if value not in ANCHOR_FIELDS:
            raise ValueError(f"{value!r} is not a review date ({', '.join(ANCHOR_FIELDS)})")
        return value

    def step(self) -> tuple[int, str]:
        m = _EVERY.match(self.every)
        assert m is not None
        return int(m["n"]), m["unit"].rstrip("s")

    @property
    def anchor(self) -> str:
        return self.from_.removeprefix("review.")


class Selection(_Strict):
    """``applies_to``: whitelisted fields only; compiled to SQL by :mod:`selection`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    status: StrList | None = None
    review_status: StrList | None = Field(None, alias="review.status")
    review_ref: StrList | None = Field(None, alias="review.ref")
    review_kind: StrList | None = Field(None, alias="review.kind")
    agency: StrList | None = None
    scope: StrList | None = None
    needs_review: bool | None = None
    has_due_date: bool | None = None
    due_before: OffsetField | dt.date | None = None
    due_after: OffsetField | dt.date | None = None
    due_within: OffsetField | None = None
    not_updated_for: OffsetField | None = None

    @field_validator("due_within")
    @classmethod
    def _ahead(cls, value: Offset | None) -> Offset | None:
        if value is not None and value.n <= 0:
            raise ValueError("due_within looks ahead: use a positive duration, e.g. 14d")
        return value

    @field_validator("status")
    @classmethod
    def _statuses(cls, values: list[str] | None) -> list[str] | None:
        return _members(values, ActionStatus)

    @field_validator("review_status")
    @classmethod
    def _review_statuses(cls, values: list[str] | None) -> list[str] | None:
        return _members(values, ReviewStatus)

    def action_fields(self) -> set[str]:
        review_only = {"review_status", "review_ref", "review_kind"}
        return {k for k, v in self if v is not None} - review_only


def _members(values: list[str] | None, enum: Iterable[Any]) -> list[str] | None:
    allowed = [e.value for e in enum]
    for v in values or []:
        if v not in allowed:
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
    return values


Schedule = Annotated[str | Every, Field(union_mode="left_to_right")]


class Step(_Strict):
    at: OffsetField
    notify: NotifyList
    repeat: OffsetField | None = None

    @field_validator("repeat")
    @classmethod
    def _forward(cls, value: Offset | None) -> Offset | None:
        if value is not None and value.n <= 0:
            raise ValueError("repeat must be a positive interval, e.g. 30d")
        return value


class Ladder(_Strict):
    id: RuleId
    schedule: Schedule
    applies_to: Selection = Field(default_factory=Selection)
    steps: list[Step]

    @field_validator("schedule")
    @classmethod
    def _cron_only(cls, value: str | Every) -> str | Every:
        if not isinstance(value, str):
            raise ValueError('a ladder runs on a cron schedule, e.g. "0 8 * * 1-5"')
        return value

    @model_validator(mode="after")
    def _no_family(self) -> Ladder:
        for step in self.steps:
            if any("review.family_liaison" in [*n.to, *n.cc] for n in step.notify):
                raise ValueError(
                    "steps: review.family_liaison is told about a review, not "
                    "about single actions (use a scope: review rule)"
                )
        return self

    @field_validator("steps")
    @classmethod
    def _ordered(cls, steps: list[Step]) -> list[Step]:
        if not steps:
            raise ValueError("a ladder needs at least one step")
        days = [s.at.apply(dt.date(2024, 1, 15)) for s in steps]
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError("steps must be in order of their offsets, earliest first")
        return steps


class Rule(_Strict):
    id: RuleId
    schedule: Schedule
    scope: Literal["action", "review"] = "action"
    applies_to: Selection = Field(default_factory=Selection)
    notify: NotifyList

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_shape(cls, value: Any) -> Any:
        if not isinstance(value, str | dict):
            raise ValueError(
                'must be a cron string ("0 8 * * 1-5") or '
                "{every: 6 months, from: review.plan_agreed_on}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if isinstance(self.schedule, Every) and self.scope != "review":
            raise ValueError("schedule: 'every ... from' schedules are for scope: review")
        if self.scope == "review":
            extra = self.applies_to.action_fields()
            if extra:
                raise ValueError(
                    f"applies_to: {', '.join(sorted(extra))} select actions; "
                    "a review rule selects on review.status/ref/kind"
                )
        elif any("review.family_liaison" in [*n.to, *n.cc] for n in self.notify):
            raise ValueError(
                "notify: review.family_liaison is told about a review, not about "
                "single actions (use a scope: review rule)"
            )
        if self.scope == "review":
            for n in self.notify:
                for role in [*n.to, *n.cc]:
                    if role in ROLES and role not in REVIEW_ROLES:
                        raise ValueError(
                            f"notify: {role!r} needs an action; a review rule "
                            f"can notify {', '.join(REVIEW_ROLES)} or addresses"
                        )
        return self


class RuleFile(_Strict):
    ladders: list[Ladder] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True)
class RuleSet:
    ladders: tuple[Ladder, ...]
    rules: tuple[Rule, ...]
    sources: dict[str, str]  # rule id -> "file:line"

    @property
    def ids(self) -> list[str]:
        return [x.id for x in self.entries()]

    def entries(self) -> list[Ladder | Rule]:
        return [*self.ladders, *self.rules]


# --- loading with line numbers ---------------------------------------------------------------


# Far beyond what a rule file needs: the shipped one nests 8 levels deep and holds 157 values.
MAX_DEPTH = 50
MAX_VALUES = 20_000  # counted with every alias expanded


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but is refused for its size."""


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that refuses, while composing, nesting deeper than MAX_DEPTH (it would
    exhaust the stack) and aliases that expand to more than MAX_VALUES values: a "billion
    laughs" file of a few hundred bytes would otherwise take gigabytes once walked."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self._depth >= MAX_DEPTH:
            raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._count(node, mark)
        return node

    def _count(self, node: yaml.Node, mark: yaml.Mark) -> None:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        size = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        if size > MAX_VALUES:
            raise _Refused(
                problem=f"its aliases expand to more than {MAX_VALUES} values "
                "(an alias bomb?); a rule file needs far fewer",
                problem_mark=mark,
            )
        self._sizes[id(node)] = size


def _compose(text: str, name: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, _Refused):
            raise InvalidInput(f"{where}: refused: {problem}") from None
        raise InvalidInput(f"{where}: not valid YAML ({problem})") from None
    if node is None:
        return {}, lines
    _walk(node, (), lines, name)
    try:
        return yaml.load(text, Loader=_LineLoader), lines  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:  # e.g. a python tag, or 2024-13-01
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{where}: not valid here ({problem})") from None


def _walk(
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    name: str = "",
    above: frozenset[int] = frozenset(),
) -> None:
    if id(node) in above:  # an alias inside its own anchor: a rule file is never a cycle
        raise InvalidInput(f"{name}:{node.start_mark.line + 1}: a YAML alias refers to itself")
    above = above | {id(node)}
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, _ in node.value:
            if isinstance(key.value, str | int | float | bool) and key.value in seen:
                # YAML would silently keep only the last one
                where = ".".join(str(p) for p in (*path, key.value))
                raise InvalidInput(f"{name}:{key.start_mark.line + 1}: {where}: duplicate key")
            if isinstance(key.value, str | int | float | bool):
                seen.add(key.value)
        for key, value in node.value:
            child = (*path, str(key.value) if not isinstance(key.value, str) else key.value)
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines, name, above)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, name, above)


def _describe(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], str]:
    """('ladders', 0, 'steps', 2, 'at') -> YAML path, "ladders[0] (deadline): steps[2].at"."""
    path, parts = [], []
    for item in loc:
        if isinstance(item, str) and item in {
            "str",
            "Every",
            "function-after[_consistent(), Rule]",
        }:
            continue
        path.append(item if not (isinstance(item, str) and item == "from_") else "from")
        parts.append(f"[{item}]" if isinstance(item, int) else f".{path[-1]}")
    text = "".join(parts).lstrip(".")
    if len(path) >= 2 and path[0] in ("ladders", "rules") and isinstance(path[1], int):
        try:
            rule_id = data[path[0]][path[1]].get("id", "?")
        except (KeyError, IndexError, TypeError, AttributeError):
            rule_id = "?"
        head = f"{path[0]}[{path[1]}] ({rule_id})"
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[2:]).lstrip(".")
        text = f"{head}: {rest}" if rest else head
    return tuple(path), text


def _line_for(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _message(err: dict[str, Any]) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field (check its spelling)"
    if err["type"] == "missing":
        return "required field is missing"
    return msg


def load_file(path: Path, display: str | None = None) -> RuleFile:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{name}: cannot read rule file ({exc})") from None
    data, lines = _compose(text, name)
    if not isinstance(data, dict):
        raise InvalidInput(f"{name}:1: a rule file is a mapping with 'ladders' and/or 'rules'")
    try:
        return RuleFile.model_validate(data)
    except ValidationError as exc:
        err = _first_useful(exc.errors())
        path_, field = _describe(tuple(err["loc"]), data)
        raise InvalidInput(f"{name}:{_line_for(path_, lines)}: {field}: {_message(err)}") from None


def _first_useful(errors: list[Any]) -> Any:
    """The error that best explains the mistake: a misspelt field before the "missing" it
    causes; a str-or-mapping union's string branch last."""
    rank = {"extra_forbidden": 0, "string_type": 2}
    return min(errors, key=lambda e: rank.get(e["type"], 1))


def load_dir(directory: Path, *, tz: ZoneInfo) -> RuleSet:
    """Every ``*.yaml``/``*.yml`` in ``directory``, checked as one set."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: the rules directory does not exist")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise InvalidInput(f"{directory}: no rule files (*.yaml) in the rules directory")
    ladders: list[Ladder] = []
    rules: list[Rule] = []
    sources: dict[str, str] = {}
    for path in files:
        display = f"{directory.name}/{path.name}"
        loaded = load_file(path, display)
        lines = _compose(path.read_text(encoding="utf-8"), display)[1]
        groups: list[tuple[str, Sequence[Ladder | Rule]]] = [
            ("ladders", loaded.ladders),
            ("rules", loaded.rules),
        ]
        for kind, items in groups:
            for i, item in enumerate(items):
                where = f"{display}:{lines.get((kind, i), 1)}"
                if item.id in sources:
                    raise InvalidInput(
                        f"{where}: {kind}[{i}].id: duplicate id {item.id!r} "
                        f"(also at {sources[item.id]})"
                    )
                sources[item.id] = where
                _check_schedule(item.schedule, where, f"{kind}[{i}] ({item.id})", tz)
        ladders += loaded.ladders
        rules += loaded.rules
    ruleset = RuleSet(tuple(ladders), tuple(rules), sources)
    return ruleset


def _check_schedule(schedule: str | Every, where: str, label: str, tz: ZoneInfo) -> None:
    if isinstance(schedule, str):
        try:
            parse_cron(schedule, tz)
        except ValueError as exc:
            raise InvalidInput(f"{where}: {label}: schedule: {exc}") from None


def summary(item: Ladder | Rule) -> str:
    """One line describing a rule, for `rules check`."""
    schedule = (
        item.schedule
        if isinstance(item.schedule, str)
        else f"every {item.schedule.every} from {item.schedule.from_}"
    )
    if isinstance(item, Ladder):
        steps = ", ".join(
            f"{s.at}→{'/'.join(n.template for n in s.notify)}"
            + (f" (every {s.repeat})" if s.repeat else "")
            for s in item.steps
        )
        return f"ladder {item.id} [{schedule}]: {steps}"
    targets = "; ".join(f"{n.template} to {', '.join(n.to)}" for n in item.notify)
    return f"rule {item.id} [{schedule}] per {item.scope}: {targets}"


REVIEW_CHECK = dt.time(7, 0)  # when recurring review rules are checked each day


def trigger(item: Ladder | Rule, tz: ZoneInfo) -> CronTrigger:
    """When the daemon runs a rule: its cron, or daily at 07:00 for a recurring review rule
    (which works out its own occurrence from the review's date). The forecast of what will be
    sent uses the same schedule."""
    if isinstance(item.schedule, Every):
        return CronTrigger(hour=REVIEW_CHECK.hour, minute=REVIEW_CHECK.minute, timezone=tz)
    return parse_cron(item.schedule, tz)
