"""Rule files: the shipped set is valid; every mistake is one line naming file, line, field."""

from __future__ import annotations

import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from dhr_workflow.cli import main
from dhr_workflow.engine import load_rules
from dhr_workflow.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates" / "email"
LONDON = ZoneInfo("Europe/London")

LADDER = """\
ladders:
  - id: deadline
    schedule: "0 8 * * 1-5"
    applies_to: {status: [open, in_progress]}
    steps:
      - {at: -30d, notify: {to: [owner], template: due_soon}}
      - {at: -7d, notify: {to: owner, template: due_soon, calendar: invite}}
      - {at: +1d, notify: {to: [owner], cc: [agency.lead], template: overdue}}
"""


def _rules(tmp_path: Path, text: str, name: str = "deadlines.yaml") -> Path:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_shipped_rules_are_valid() -> None:
    ruleset, _ = load_rules(ROOT / "rules", TEMPLATES, LONDON)
    assert ruleset.ids == ["deadline", "six-monthly-report", "undated-actions", "stale-actions"]
    [ladder] = ruleset.ladders
    assert [str(s.at) for s in ladder.steps] == ["-30d", "-7d", "+1d", "+10bd", "+30d"]
    assert str(ladder.steps[-1].repeat) == "+30d"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "at: +1d",
            "at: +10x",
            "deadlines.yaml:8: ladders[0] (deadline): steps[2].at: '+10x' is not a duration",
        ),
        (
            '"0 8 * * 1-5"',
            '"0 8 * * 1-9"',
            "deadlines.yaml:2: ladders[0] (deadline): schedule: '0 8 * * 1-9' is not a valid cron "
            "expression (weekday range '1-9' is out of range",
        ),
        (
            '"0 8 * * 1-5"',
            '"every day"',
            "deadlines.yaml:2: ladders[0] (deadline): schedule: 'every day' is not a cron",
        ),
        (
            "template: overdue",
            "template: overdeu",
            "deadlines.yaml:2: deadline: steps[2].notify[0].template: template 'overdeu' "
            "does not exist",
        ),
        (
            "cc: [agency.lead]",
            "cc: [agency.boss]",
            "deadlines.yaml:8: ladders[0] (deadline): steps[2].notify[0].cc: 'agency.boss' is "
            "neither a role",
        ),
        (
            "applies_to: {status: [open, in_progress]}",
            "applies_to: {state: open}",
            "deadlines.yaml:4: ladders[0] (deadline): applies_to.state: unknown field",
        ),
        (
            "applies_to: {status: [open, in_progress]}",
            "applies_to: {status: [open, pending]}",
            "deadlines.yaml:4: ladders[0] (deadline): applies_to.status: 'pending' is not one of",
        ),
        (
            "calendar: invite",
            "calendar: yes",
            "deadlines.yaml:7: ladders[0] (deadline): steps[1].notify[0].calendar: Input should be",
        ),
        (
            "at: -7d",
            "at: -60d",
            "deadlines.yaml:5: ladders[0] (deadline): steps: steps must be in order",
        ),
        (
            "    steps:",
            "    stpes:",
            "deadlines.yaml:5: ladders[0] (deadline): stpes: unknown field",
        ),
        (
            "  - id: deadline\n",
            "  - name: deadline\n",
            "deadlines.yaml:2: ladders[0] (?): name: unknown field",
        ),
    ],
)
def test_mistakes_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in LADDER
    directory = _rules(tmp_path, LADDER.replace(old, new))
    with pytest.raises(InvalidInput) as err:
        load_rules(directory, TEMPLATES, LONDON)
    assert str(err.value).startswith(f"rules/{message}"), str(err.value)
    assert "\n" not in str(err.value)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    _rules(tmp_path, LADDER)
    directory = _rules(tmp_path, LADDER, "more.yaml")
    with pytest.raises(
        InvalidInput,
        match=r"rules/more.yaml:2: ladders\[0\].id: duplicate id "
        r"'deadline' \(also at rules/deadlines.yaml:2\)",
    ):
        load_rules(directory, TEMPLATES, LONDON)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - id: r\n    schedule: {every: 6 months, from: review.plan_agreed_on}\n"
            "    notify: {to: coordinator, template: needs_review}\n",
            "'every ... from' schedules are for scope: review",
        ),
        (
            "rules:\n  - id: r\n    scope: review\n    schedule: {every: 6 months, from: "
            "review.plan_agreed_on}\n    notify: {to: owner, template: partnership_report}\n",
            "'owner' needs an action",
        ),
        (
            "rules:\n  - id: r\n    scope: review\n    schedule: {every: 6 fortnights, from: "
            "review.plan_agreed_on}\n    notify: {to: partnership.chair, template: "
            "partnership_report}\n",
            "'6 fortnights' is not an interval",
        ),
        (
            "rules:\n  - id: r\n    scope: review\n    schedule: {every: 6 months, from: "
            "review.start}\n    notify: {to: partnership.chair, template: partnership_report}\n",
            "'review.start' is not a review date",
        ),
        (
            "rules:\n  - id: r\n    scope: review\n    applies_to: {needs_review: true}\n"
            "    schedule: '0 9 * * 1'\n    notify: {to: coordinator, template: needs_review}\n",
            "needs_review select actions",
        ),
        (
            "rules:\n  - id: r\n    schedule: '0 9 * * 1'\n    notify: {to: [], template: x}\n",
            "names nobody",
        ),
        ("ladders: [\n", "not valid YAML"),
        ("- just\n- a list\n", "a rule file is a mapping"),
    ],
)
def test_more_mistakes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_rules(_rules(tmp_path, text), TEMPLATES, LONDON)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="the rules directory does not exist"):
        load_rules(tmp_path / "nope", TEMPLATES, LONDON)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no rule files"):
        load_rules(tmp_path / "empty", TEMPLATES, LONDON)


def _templates(tmp_path: Path) -> Path:
    target = tmp_path / "email"
    shutil.copytree(TEMPLATES, target)
    return target


def test_template_that_fails_to_render_is_caught_at_check(tmp_path: Path) -> None:
    templates = _templates(tmp_path)
    (templates / "overdue.txt").write_text("Dear {{ addressee.name }}\n")
    with pytest.raises(
        InvalidInput, match="overdue: template cannot be rendered: 'addressee' is undefined"
    ):
        load_rules(_rules(tmp_path, LADDER), templates, LONDON)
    (templates / "overdue.txt").write_text("{% for a in actions %}\n")
    with pytest.raises(InvalidInput, match=r"overdue.txt:\d+: template error"):
        load_rules(_rules(tmp_path, LADDER), templates, LONDON)


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    templates = _templates(tmp_path)
    (templates / "overdue.txt").write_text("{{ actions.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(InvalidInput, match=r"unsafe|not safely|access to attribute"):
        load_rules(_rules(tmp_path, LADDER), templates, LONDON)


def test_missing_template_part(tmp_path: Path) -> None:
    templates = _templates(tmp_path)
    (templates / "overdue.html").unlink()
    with pytest.raises(InvalidInput, match="template 'overdue' does not exist"):
        load_rules(_rules(tmp_path, LADDER), templates, LONDON)


def test_rules_check_command(tmp_path: Path) -> None:
    ok = CliRunner().invoke(main, ["rules", "check"])
    assert ok.exit_code == 0, ok.stderr
    assert "rules/default.yaml:12: ladder deadline [0 8 * * 1-5]: -30d→due_soon" in ok.stdout
    assert ok.stdout.rstrip().endswith("4 rule(s) OK")
    bad = CliRunner().invoke(
        main, ["rules", "check", str(_rules(tmp_path, LADDER.replace("+1d", "+1x")))]
    )
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "error: rules/deadlines.yaml:8: ladders[0] (deadline): steps[2].at: '+1x' is not a "
        "duration (use d, bd, w or m, e.g. -7d or +10bd)"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # the family liaison only ever gets family-safe words about a whole review
        (
            "rules:\n  - id: r\n    scope: review\n    schedule: {every: 6 months, from: "
            "review.plan_agreed_on}\n    notify: {to: partnership.chair, cc: "
            "review.family_liaison, template: partnership_report}\n",
            "review.family_liaison may only receive family-safe templates (family_update)",
        ),
        (
            LADDER.replace("to: [owner], cc: [agency.lead]", "to: [review.family_liaison]").replace(
                "template: overdue", "template: family_update"
            ),
            "review.family_liaison is told about a review, not about single actions",
        ),
        # a template written for another kind of message
        (
            LADDER.replace("template: overdue", "template: partnership_report"),
            "steps[2].notify[0].template: 'partnership_report' does not fit a action message",
        ),
        (
            "rules:\n  - id: r\n    scope: review\n    schedule: {every: 6 months, from: "
            "review.plan_agreed_on}\n    notify: {to: partnership.chair, template: due_soon}\n",
            "notify[0].template: 'due_soon' does not fit a review message",
        ),
        # YAML that would otherwise be silently half-read
        (LADDER + "ladders: []\n", "deadlines.yaml:9: ladders: duplicate key"),
        (
            "rules:\n  - id: r\n    schedule: '0 9 * * 1'\n    notify: []\n",
            "notify: Value should have at least 1 item",
        ),
        (
            "rules:\n  - id: ''\n    schedule: '0 9 * * 1'\n    notify: {to: coordinator, "
            "template: needs_review}\n",
            "id: String should have at least 1 character",
        ),
        (
            "rules:\n  - id: " + "x" * 101 + "\n    schedule: '0 9 * * 1'\n    notify: {to: "
            "coordinator, template: needs_review}\n",
            "id: String should have at most 100",
        ),
        (
            "rules:\n  - id: r\n    schedule: 5\n    notify: {to: coordinator, template: "
            "needs_review}\n",
            "schedule: must be a cron string",
        ),
        (
            "rules:\n  - id: r\n    schedule: '0 9 * * 1#2'\n    notify: {to: coordinator, "
            "template: needs_review}\n",
            "weekday '1#2' is not supported",
        ),
        (
            "rules:\n  - id: r\n    schedule: '0 9 * * 1'\n    applies_to: {due_within: -7d}\n"
            "    notify: {to: coordinator, template: needs_review}\n",
            "due_within looks ahead",
        ),
        (
            "rules:\n  - id: r\n    schedule: '0 9 * * 1'\n    applies_to: {due_before: "
            "2024-13-01}\n    notify: {to: coordinator, template: needs_review}\n",
            "not valid here (month must be in 1..12)",
        ),
        (
            "rules:\n  - id: !!python/object:os.system x\n    schedule: '0 9 * * 1'\n"
            "    notify: {to: coordinator, template: needs_review}\n",
            "not valid here",
        ),
    ],
)
def test_rules_that_would_mislead_or_leak(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load_rules(_rules(tmp_path, text), TEMPLATES, LONDON)
    assert message in str(err.value)
