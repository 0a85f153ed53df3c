"""Hostile input: whatever bytes arrive, the importer and the rule loader give a result or one
clear InvalidInput — never a crash, never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.parse import parse_lines
from dhr_workflow.importer.readers import Line, read_source
from dhr_workflow.ruleset import load_file

CELL = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "Recommendation",
            "Action",
            "Lead Agency",
            "Target date",
            "Status",
            "#",
            "1)",
            "Recommendation No 3",
            "<p>",
            "</li>",
            "<ul><li>x",
            "---",
            "",
            "Agency: Police",
            "Overview",
            "Completed",
            "December 2023",
            "Confidential – Not to be Photocopied",
            "&amp;",
            "<script>",
        ]
    ),
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(st.lists(st.lists(CELL, min_size=0, max_size=9), max_size=40))
def test_parser_never_crashes(rows: list[list[str]]) -> None:
    plan = parse_lines([Line(n, tuple(cells)) for n, cells in enumerate(rows, start=1)])
    for row in plan.rows:
        assert row.rec_ref
        assert "<script" not in row.text.lower()


@FUZZ
@pytest.mark.parametrize("fmt", ["auto", "text", "csv", "xlsx", "docx"])
@given(data=st.binary(max_size=2000))
def test_readers_only_raise_invalid_input(tmp_path: Path, fmt: str, data: bytes) -> None:
    path = tmp_path / "plan.txt"
    path.write_bytes(data)
    try:
        source = read_source(path, fmt)  # type: ignore[arg-type]
    except InvalidInput as exc:
        message = str(exc)
    else:
        parse_lines(source.lines)
        return
    assert "\n" not in message


YAML_BITS = st.sampled_from(
    [
        "ladders:",
        "rules:",
        "  - id: x",
        "    schedule: '0 8 * * 1-5'",
        "    steps:",
        "      - {at: -7d, notify: {to: owner, template: due_soon}}",
        "    notify: {to: [owner]}",
        "    applies_to: {status: open}",
        "  - {",
        "]",
        "!!python/object:os.system x",
        "&a [*a]",
        "    scope: review",
        "    schedule: {every: 6 months, from: review.plan_agreed_on}",
        "\t",
        "key: value: other",
        "- - -",
        "ladders: 5",
        "rules: [1, 2]",
    ]
)


@FUZZ
@given(st.lists(st.one_of(YAML_BITS, st.text(max_size=30)), max_size=25))
def test_rule_loader_only_raises_invalid_input(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        load_file(path, "rules/rules.yaml")
    except InvalidInput as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("rules/rules.yaml")
    assert "\n" not in message
