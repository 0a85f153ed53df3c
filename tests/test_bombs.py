"""Resource bombs: rule files, templates and spreadsheets that would take gigabytes or hang are
refused early, in one line naming the file, with memory and time measured."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from dhr_workflow import sandbox
from dhr_workflow.cli import main
from dhr_workflow.engine import load_rules
from dhr_workflow.errors import InvalidInput
from dhr_workflow.ruleset import load_dir

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates" / "email"
LONDON = ZoneInfo("Europe/London")
MB = 1_000_000

# The classic "billion laughs": 9 levels of 9 aliases, 10^9 strings once expanded.
ALIAS_BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{x}: &{x} [{','.join([f'*{p}'] * 9)}]"
            for p, x in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "rules: *i",
    ]
)
LADDER = """\
ladders:
  - id: deadline
    schedule: "0 8 * * 1-5"
    steps:
      - {at: +1d, notify: {to: [owner], template: overdue}}
"""


@contextmanager
def measured(limit_mb: float, seconds: float) -> Iterator[None]:
    """The block's peak Python memory (tracemalloc) and wall time stay under the limits. The
    times leave room for a busy machine (tracemalloc itself slows allocation): what they
    catch is a bomb that runs on for minutes."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit_mb * MB, f"peak {peak / MB:.0f} MB"
    assert took < seconds, f"took {took:.1f} s"


def _rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


# --- rule files --------------------------------------------------------------------------------


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 700
    rules = _rules(tmp_path, ALIAS_BOMB, "bomb.yaml")
    with measured(limit_mb=20, seconds=5), pytest.raises(InvalidInput) as caught:
        load_dir(rules, tz=LONDON)
    assert str(caught.value) == (
        "rules/bomb.yaml:5: refused: its aliases expand to more than 20000 values "
        "(an alias bomb?); a rule file needs far fewer"
    )


@pytest.mark.parametrize(
    "text",
    [
        "rules: " + "[" * 1000 + "]" * 1000,
        "rules:\n" + "".join(f"{'  ' * i}- \n" for i in range(1000)),
        "rules: " + "{a: " * 1000 + "1" + "}" * 1000,
    ],
    ids=["flow sequences", "block sequences", "flow mappings"],
)
def test_deep_nesting_is_one_line_not_a_traceback(tmp_path: Path, text: str) -> None:
    with measured(limit_mb=20, seconds=5), pytest.raises(InvalidInput) as caught:
        load_dir(_rules(tmp_path, text, "deep.yaml"), tz=LONDON)
    assert str(caught.value).startswith("rules/deep.yaml:")
    assert str(caught.value).endswith(": refused: nested more than 50 levels deep")


def test_a_few_aliases_are_still_fine(tmp_path: Path) -> None:
    text = """\
ladders:
  - id: deadline
    schedule: &weekdays "0 8 * * 1-5"
    steps:
      - {at: -7d, notify: &owner {to: [owner], template: due_soon}}
      - {at: +1d, notify: *owner}
  - id: again
    schedule: *weekdays
    steps:
      - {at: +30d, notify: *owner}
"""
    assert len(load_dir(_rules(tmp_path, text), tz=LONDON).ladders) == 2


# --- templates ---------------------------------------------------------------------------------

TEMPLATE_BOMBS = {
    "nested range(100000)": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "range() of more than 10000 numbers",
    ),
    "nested loops within range": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "it loops or calls more than 200000 times",
    ),
    "recursive loop": (
        "{% for x in [range(5000)] * 5000 recursive %}{% if x is iterable %}{{ loop(x) }}"
        "{% endif %}{% endfor %}",
        "it loops or calls more than 200000 times",
    ),
    "string times a number": ('{{ "x" * 500000000 }}', "more than 2000000 characters"),
    "list times a number": ("{{ ([0] * 500000000)|length }}", "more than 2000000 characters"),
    "doubling with ~": (
        '{% set ns = namespace(s="x" * 1000) %}{% for i in range(40) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "more than 2000000 characters",
    ),
    "doubling a block": (
        '{% set ns = namespace(s="x" * 1000) %}{% for i in range(40) %}{% set t %}'
        "{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}",
        "more than 2000000 characters",
    ),
    "center": ('{{ "x"|center(500000000) }}', "more than 2000000 characters"),
    "ljust": ('{{ "x".ljust(500000000) }}', "more than 2000000 characters"),
    "%-format width": ('{{ "%500000000s"|format("x") }}', "more than 2000000 characters"),
    "str.format width": ('{{ "{:>{w}}".format("x", w=500000000) }}', "2000000 characters"),
    "indent": ('{{ ("\\n" * 1000000)|indent(1000) }}', "more than 2000000 characters"),
    "replace": ('{{ ("x" * 1000000).replace("x", "y" * 1000) }}', "2000000 characters"),
    "join of references": (
        '{% set b = "x" * 1000000 %}{{ [b, b, b, b, b, b, b, b]|join }}',
        "more than 2000000 characters",
    ),
    "printing references": (
        '{% set b = "x" * 1000000 %}{{ [b, b, b, b, b, b, b, b] }}',
        "more than 2000000 characters",
    ),
    "map over references": (
        '{% set b = "x" * 1000000 %}{{ [b, b, b, b, b, b, b, b]|map("upper")|list|length }}',
        "more than 2000000 characters",
    ),
    "batch filler": ('{{ range(3)|batch(500000000, "x")|list }}', "2000000 characters"),
    "writing a flood": (
        '{% for i in range(10000) %}{{ "x" * 1000000 }}{% endfor %}',
        "it writes more than 2000000 characters",
    ),
    "big numbers": ("{{ (10 ** 100000000) % 7 }}", "a number of more than 100000 bits"),
    "growing a list in place": (
        "{% set l = [1] %}{% for i in range(30) %}{{ l.extend(l) }}{% endfor %}",
        "access to attribute 'extend' of 'list' object is unsafe",
    ),
    "lipsum": ("{{ lipsum(n=100000000) }}", "'lipsum' is undefined"),
    "infinite recursion": (
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "it recurses too deeply or needs too much memory",
    ),
}


def _bomb(tmp_path: Path, template: str) -> tuple[Path, Path]:
    templates = tmp_path / "email"
    shutil.copytree(TEMPLATES, templates)
    (templates / "overdue.txt").write_text(template + "\n")
    return _rules(tmp_path, LADDER), templates


@pytest.mark.parametrize(("template", "message"), TEMPLATE_BOMBS.values(), ids=list(TEMPLATE_BOMBS))
def test_template_bombs_are_stopped_at_rules_check(
    tmp_path: Path, template: str, message: str
) -> None:
    rules, templates = _bomb(tmp_path, template)
    with measured(limit_mb=40, seconds=5), pytest.raises(InvalidInput) as caught:
        load_rules(rules, templates, LONDON)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("rules/rules.yaml:2: deadline: steps[0].notify[0].template: ")
    assert f"{templates}/overdue: template cannot be rendered: " in line
    assert message in line


def test_render_time_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2^40 macro calls; within the step limit here, so the clock stops it
    monkeypatch.setattr(sandbox, "STEPS", 10**9)
    monkeypatch.setattr(sandbox, "SECONDS", 0.3)
    rules, templates = _bomb(
        tmp_path,
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
    )
    with measured(limit_mb=20, seconds=3), pytest.raises(InvalidInput, match=r"0\.3 s to render"):
        load_rules(rules, templates, LONDON)


def test_rules_check_prints_one_line_for_a_template_bomb(tmp_path: Path) -> None:
    rules, templates = _bomb(tmp_path, '{{ "x" * 500000000 }}')
    result = CliRunner().invoke(
        main, ["rules", "check", str(rules)], env={"DHR_TEMPLATES_DIR": str(templates)}
    )
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: rules/rules.yaml:2: deadline: ")
    assert "overdue: template cannot be rendered: it makes a text or list of more than" in line


def test_the_shipped_templates_render_well_within_the_limits() -> None:
    from dhr_workflow.templates import Templates, sample_context

    templates = Templates(TEMPLATES)
    context = sample_context("all")
    context["actions"] = context["actions"] * 500  # a very large digest
    with measured(limit_mb=40, seconds=5):
        for name in sorted(templates.names()):
            templates.render(name, context)


def test_sandbox_still_renders_what_templates_do() -> None:
    env = sandbox.BoundedEnvironment({}, autoescape=True)

    def render(source: str, **values: Any) -> str:
        return sandbox.collect(env.from_string(source).generate(**values))

    with sandbox.budget():
        loop = "{% for a in xs %}{{ loop.index }}/{{ loop.length }} {% endfor %}"
        assert render(loop, xs="ab") == "1/2 2/2 "
        assert render("{{ xs|map('upper')|join(', ') }}", xs=["a", "b"]) == "A, B"
        assert render("{{ '%s-%02d'|format('x', 7) }} {{ '{:>3}'.format(1) }}") == "x-07   1"
        assert render("{{ 'a' ~ b }}", b="<b>") == "a&lt;b&gt;"
        assert render("{{ (xs * 2)|length }} {{ 2 ** 10 }}", xs=[1]) == "2 1024"
        assert render("{{ x|attr('missing') is defined }}", x=1) == "False"


# --- spreadsheets ------------------------------------------------------------------------------

PLAN_ROWS = [
    ["Recommendation", "Action", "Lead Agency", "Target date"],
    ["1) Train staff", "Run domestic abuse training", "Police", "31/03/2025"],
]


def _far_cell_book(path: Path) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in PLAN_ROWS:
        sheet.append(row)
    sheet["XFD1048576"] = "x"  # the last cell Excel has: a sheet "17 billion cells" big
    book.save(path)
    return path


def _claimed_dimension_book(path: Path) -> Path:
    """A small workbook whose <dimension ref> claims the whole sheet."""
    import io
    import re
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in PLAN_ROWS:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data, n = re.subn(
                    rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', data
                )
                assert n == 1
            target.writestr(item, data)
    return path


@pytest.mark.parametrize("make", [_far_cell_book, _claimed_dimension_book])
def test_spreadsheet_is_read_from_the_cells_it_has(
    cli: Any, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    import json

    from dhr_workflow.importer import read_plan

    path = make(tmp_path / "plan.xlsx")
    assert path.stat().st_size < 10_000
    with measured(limit_mb=20, seconds=0.5):  # it was minutes (one far cell) or a second
        _, plan = read_plan(path)
    assert len(plan.rows) == 1
    result = cli("import", str(path), "--review", "X1", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["created"] == 1
    stray = (
        ["sheet 'Sheet': cell XFD1048576 beyond column IV (256) left out; "
         "no plan table is that wide"]
        if make is _far_cell_book
        else []
    )  # fmt: skip
    assert report["warnings"] == stray


def test_stray_far_cell_is_named_in_the_import_report(cli: Any, tmp_path: Path) -> None:
    result = cli("import", str(_far_cell_book(tmp_path / "plan.xlsx")), "--review", "X1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "warning: plan.xlsx: sheet 'Sheet': cell XFD1048576 beyond column IV (256) left out; "
        "no plan table is that wide"
    )
