"""Settings: environment over TOML file over defaults; bad values name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhr_workflow.config import Settings, load_settings
from dhr_workflow.errors import ConfigError


def test_defaults_are_the_embedded_ones() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///dhr-workflow.db"
    assert s.timezone == "Europe/London"
    assert s.mail_transport == "file"
    assert s.http_host == "127.0.0.1"
    assert s.public_base_url == "http://127.0.0.1:8080"
    assert s.rules_dir.is_dir() and s.rules_dir.name == "rules"
    assert s.templates_dir.is_dir() and s.templates_dir.name == "email"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHR_TIMEZONE", "Europe/Dublin")
    monkeypatch.setenv("DHR_HTTP_PORT", "9000")
    monkeypatch.setenv("DHR_SMTP_PASSWORD", "hunter2")
    s = load_settings()
    assert (s.timezone, s.http_port) == ("Europe/Dublin", 9000)
    assert s.smtp_password is not None and s.smtp_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s)


def test_toml_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "dhr.toml"
    cfg.write_text(
        'timezone = "Europe/Dublin"\nhttp_port = 9100\nbase_url = "https://dhr.example.org/"\n'
    )
    monkeypatch.setenv("DHR_HTTP_PORT", "9200")
    s = load_settings(cfg)
    assert s.timezone == "Europe/Dublin"
    assert s.http_port == 9200
    assert s.public_base_url == "https://dhr.example.org"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "dhr.toml"
    cfg.write_text('mail_transport = "smtp"\n')
    monkeypatch.setenv("DHR_CONFIG", str(cfg))
    assert load_settings().mail_transport == "smtp"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DHR_TIMEZONE": "Mars/Olympus"},
            "setting timezone (DHR_TIMEZONE): 'Mars/Olympus' is not a known time zone",
        ),
        (
            {"DHR_HTTP_PORT": "70000"},
            "setting http_port (DHR_HTTP_PORT): Input should be less than or equal to 65535",
        ),
        (
            {"DHR_HTTP_PORT": "eighty"},
            "setting http_port (DHR_HTTP_PORT): Input should be a valid integer",
        ),
        (
            {"DHR_MAIL_TRANSPORT": "pigeon"},
            "setting mail_transport (DHR_MAIL_TRANSPORT): Input should be 'file' or 'smtp'",
        ),
        (
            {"DHR_DATABASE_URL": "mysql://x/y"},
            "setting database_url (DHR_DATABASE_URL): only sqlite:// and postgresql://",
        ),
        (
            {"DHR_DATABASE_URL": "not a url"},
            "setting database_url (DHR_DATABASE_URL): is not a database URL",
        ),
        (
            {"DHR_MAIL_FROM": "nobody"},
            "setting mail_from (DHR_MAIL_FROM): 'nobody' is not an email address",
        ),
        (
            {"DHR_SMTP_SECURITY": "ssl"},
            "setting smtp_security (DHR_SMTP_SECURITY): Input should be",
        ),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "dhr.toml"
    cfg.write_text('time_zone = "Europe/London"\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'time_zone' in .*dhr.toml"):
        load_settings(cfg)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("timezone = \n")
    with pytest.raises(ConfigError, match=r"broken.toml is not valid TOML"):
        load_settings(broken)


def test_database_url_display_hides_password() -> None:
    s = Settings(database_url="postgresql+psycopg://dhr:s3cret@db.example.org/dhr")
    assert "s3cret" not in s.database_url_for_display
    assert "db.example.org" in s.database_url_for_display


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    names = {line.split("=")[0].lstrip("# ") for line in example.splitlines() if "=" in line}
    expected = {f"DHR_{field.upper()}" for field in Settings.model_fields} | {"DHR_CONFIG"}
    assert expected <= names, f"missing from .env.example: {sorted(expected - names)}"
