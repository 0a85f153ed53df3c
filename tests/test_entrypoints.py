"""The installed entry points as a user meets them: real processes, real exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        args,
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_module_and_console_script(tmp_path: Path) -> None:
    module = _run(sys.executable, "-m", "dhr_workflow", "--help", cwd=tmp_path)
    assert module.returncode == 0 and "Usage: dhr-workflow" in module.stdout
    script = shutil.which("dhr-workflow", path=str(Path(sys.executable).parent))
    assert script is not None, "the dhr-workflow console script is not installed"
    version = _run(script, "--version", cwd=tmp_path)
    assert version.returncode == 0 and "dhr-workflow, version" in version.stdout


def test_user_mistakes_in_a_real_process_are_one_line(tmp_path: Path) -> None:
    dhr = [sys.executable, "-m", "dhr_workflow"]
    not_init = _run(*dhr, "actions", "list", cwd=tmp_path)
    assert not_init.returncode == 2
    assert not_init.stderr.strip() == (
        "error: no database at dhr-workflow.db; run `dhr-workflow init` first"
    )
    assert _run(*dhr, "init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "dhr-workflow.db").stat().st_mode & 0o077 == 0, "database must be private"
    unknown = _run(*dhr, "reviews", "set", "X1", "--published", "2024-01-01", cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "error: no review with ref 'X1' (see `dhr-workflow reviews list`)",
    )
    bad_cfg = _run(*dhr, "reviews", "list", cwd=tmp_path, env={"DHR_HTTP_PORT": "0"})
    assert bad_cfg.returncode == 2
    assert bad_cfg.stderr.strip().startswith("error: setting http_port (DHR_HTTP_PORT)")
    for result in (not_init, unknown, bad_cfg):
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_wheel_ships_default_rules_and_templates(tmp_path: Path) -> None:
    """A plain `pip install .` must find rules/ and templates/email/, not only an editable one."""
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(tmp_path),
        str(ROOT),
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("dhr_workflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_rules = {p.name for p in (ROOT / "rules").glob("*.yaml")}
    assert shipped_rules, "rules/ has no rule files"
    for name in shipped_rules:
        assert f"dhr_workflow/_defaults/rules/{name}" in names
    for template in (ROOT / "templates" / "email").iterdir():
        assert f"dhr_workflow/_defaults/templates/email/{template.name}" in names
    assert "dhr_workflow/migrations/versions/0001_initial_schema.py" in names
