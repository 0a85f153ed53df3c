"""Files that mix encodings (UTF-8 with lines in Windows-1252 pasted in): a plan is read line by
line and the report names the lines; a contacts file is refused naming them. Never "ZoÃ«"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dhr_workflow.errors import InvalidInput
from dhr_workflow.importer.readers import decode
from tests.conftest import CliFn

HEADER = "Recommendation,Action,Lead Agency,Owner,Target date\n"
UTF8_ROW = "1) Train staff,Brief Zoë's team (£500 budget),Police,Zoë Brown,31/03/2025\n"
CP1252_ROW = "2) Fund refuge,Pay £500 to the refuge,Council,Renée Smith,30/06/2025\n"


def _mixed_plan(tmp_path: Path, name: str = "plan.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(HEADER.encode() + UTF8_ROW.encode("utf-8") + CP1252_ROW.encode("cp1252"))
    return path


@pytest.mark.parametrize(
    ("data", "text", "cp1252_lines"),
    [
        ("Zoë\n£500\n".encode(), "Zoë\n£500\n", []),
        ("Zoë\n£500\n".encode("cp1252"), "Zoë\n£500\n", []),  # one encoding throughout
        ("Zoë\n".encode() + "£500\n".encode("cp1252"), "Zoë\n£500\n", [2]),
        (
            "£1\n".encode("cp1252") + b"ok\r\n" + "Zoë\r".encode() + b"\x80",
            "£1\nok\r\nZoë\r€",
            [1, 4],
        ),
        ("\ufeffZoë\n".encode() + "é\n".encode("cp1252"), "Zoë\né\n", [2]),  # BOM dropped
    ],
)
def test_decode_line_by_line(data: bytes, text: str, cp1252_lines: list[int]) -> None:
    assert decode(Path("f.csv"), data) == (text, cp1252_lines)


def test_a_line_in_neither_encoding_is_refused_by_number() -> None:
    data = "Zoë\n".encode() + b"ok\n\x81\x8d\n"  # bytes Windows-1252 leaves undefined
    with pytest.raises(InvalidInput, match=r"^f\.csv:3: neither UTF-8 nor Windows-1252 text"):
        decode(Path("f.csv"), data)


def test_mixed_plan_keeps_every_name_and_says_which_lines(cli: CliFn, tmp_path: Path) -> None:
    result = cli("import", str(_mixed_plan(tmp_path)), "--review", "M1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == [
        "line 3 read as Windows-1252, the rest as UTF-8 (the file mixes them): check the "
        "accents and £ signs there"
    ]
    rows = json.loads(cli("actions", "list", "--review", "M1", "--json").stdout)
    assert [(r["text"], r["owner"]) for r in rows] == [
        ("Brief Zoë's team (£500 budget)", "Zoë Brown"),
        ("Pay £500 to the refuge", "Renée Smith"),
    ]
    text = cli("import", str(_mixed_plan(tmp_path)), "--review", "M1", "--dry-run").stdout
    assert text.strip().splitlines()[-1] == (
        "warning: plan.csv: line 3 read as Windows-1252, the rest as UTF-8 (the file mixes "
        "them): check the accents and £ signs there"
    )


def test_mixed_extracted_text_is_read_line_by_line(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "plan.txt"
    path.write_bytes(
        HEADER.replace(",", "\t").encode()
        + UTF8_ROW.replace(",", "\t").encode()
        + CP1252_ROW.replace(",", "\t").encode("cp1252")
    )
    result = cli("import", str(path), "--review", "M2", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["warnings"][0].startswith("line 3 read as Windows-1252")
    rows = json.loads(cli("actions", "list", "--review", "M2", "--json").stdout)
    assert {r["owner"] for r in rows} == {"Zoë Brown", "Renée Smith"}


def test_mixed_contacts_file_is_refused_naming_the_lines(cli: CliFn, tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"agency,role,name,email\n"
        + "Police,lead,Zoë Brown,zoe@police.example.org\n".encode()
        + "Council,lead,Renée Smith,renee@council.example.org\n".encode("cp1252")
        + "Health,lead,Noël Green,noel@health.example.org\n".encode("cp1252")
    )
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}:3: not a UTF-8 text CSV file (lines 3, 4 are not UTF-8): save it as "
        "CSV UTF-8 and check the accents and £ signs there"
    )
    assert json.loads(cli("contacts", "list", "--json").stdout) == []
