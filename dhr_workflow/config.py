"""Settings: the one place that reads configuration.

Precedence: explicit overrides > ``DHR_*`` environment variables > the TOML file named by
``--config`` or ``DHR_CONFIG`` > defaults. Everything else in the package receives a
:class:`Settings` object and never reads the environment itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dhr_workflow.errors import ConfigError

ENV_PREFIX = "DHR_"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _default_dir(name: str) -> Path:
    """The shipped defaults: inside the wheel after `pip install .`, at the repo top otherwise."""
    installed = _PACKAGE_DIR / "_defaults" / name
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / name


class Settings(BaseSettings):
    """Every setting of the product; environment names are ``DHR_`` + the field name."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = "sqlite:///dhr-workflow.db"
    timezone: str = "Europe/London"
    # Bank holidays for business-day offsets ("+10bd").
    holidays_region: Literal["england", "wales", "scotland", "northern_ireland"] = "england"
    partnership: str | None = None
    rules_dir: Path = Field(default_factory=lambda: _default_dir("rules"))
    templates_dir: Path = Field(default_factory=lambda: _default_dir("templates") / "email")

    mail_transport: Literal["file", "smtp"] = "file"
    mail_dir: Path = Path("mail")
    mail_from: str = "dhr-workflow@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    # Outbox: temporary failures retry with exponential backoff (base * 2^attempt, +-20%),
    # never waiting longer than the cap, until the message has been tried for give-up hours;
    # then it is dead and the coordinator is told. Max attempts, if set, also ends it sooner.
    mail_max_attempts: int | None = Field(default=None, ge=1, le=10_000)
    mail_retry_seconds: float = Field(default=60.0, gt=0)
    mail_retry_max_seconds: float = Field(default=900.0, gt=0, le=86_400)
    mail_give_up_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    mail_batch_size: int = Field(default=50, ge=1, le=1000)
    # A claimed message not recorded within this time is claimed again (a crashed sender).
    mail_lease_seconds: float = Field(default=300.0, gt=0)
    # Quiet hours: send only inside this window in DHR_TIMEZONE, e.g. "mon-fri 08:00-18:00";
    # bank holidays (DHR_HOLIDAYS_REGION) are outside it. Unset: send at any time.
    send_window: str | None = None

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value:
            from dhr_workflow.durations import parse_window

            parse_window(value)
        return value or None

    # How often the daemon's sender looks at the outbox (it is also woken after each tick).
    send_interval_seconds: float = Field(default=30.0, gt=0)
    # Feeds carry review ref, recommendation, agency and date; "full" adds plan text.
    feed_detail: Literal["minimal", "full"] = "minimal"
    # A feed's version stamp is reused this long: a burst of calendar clients costs one query.
    # Changes and revocations show in feeds at most this much later.
    feed_cache_seconds: float = Field(default=5.0, ge=0, le=3600)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # The address people use to reach the web app and feeds (links in emails start with it);
    # https here also makes the session cookie Secure.
    base_url: str | None = None
    # Addresses of proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    # forwarded_allow_ips: comma-separated addresses, or "*"). Behind a TLS proxy on another
    # host, name it here, or every visitor looks like the proxy to the sign-in limits.
    trusted_proxies: str = "127.0.0.1"
    # Signs the web app's session cookies. Unset: a key is made once and kept in the database,
    # shared by every replica. Set it to rotate the key (everyone signs in again).
    secret_key: SecretStr | None = None
    # Largest plan file the web app accepts for import.
    upload_limit_mb: float = Field(default=10.0, gt=0, le=200)
    # An open port meets slow and hostile clients: at most this many HTTP connections at once
    # (more get 503 and are closed at once, so the scheduler and the sender keep the file
    # handles and database connections they need), and a client must send a request's headers
    # within the read timeout (and never pause longer than it inside a body).
    http_max_connections: int = Field(default=200, ge=1, le=100_000)
    http_read_timeout: float = Field(default=10.0, gt=0, le=300)

    # An append-only file on another path (another disk, a mounted share) where the audit log's
    # head is written (`audit anchor`, and daily by the daemon): evidence outside the database
    # that no recent event was removed (`audit verify --anchors FILE`).
    audit_anchor_file: Path | None = None

    # Reports (`dhr-workflow report`, "Download report"): the security marking printed at the
    # top and bottom of every page ("" prints none), and the largest PDF attached to the
    # scheduled partnership report (a larger one is not attached; the email says so).
    report_marking: str = Field(default="OFFICIAL-SENSITIVE", max_length=100)
    report_attach_mb: float = Field(default=5.0, ge=0, le=100)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (e.g. Europe/London)") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL (e.g. sqlite:///dhr.db)") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("only sqlite:// and postgresql:// databases are supported")
        return value

    @field_validator("mail_from")
    @classmethod
    def _looks_like_address(cls, value: str) -> str:
        if "@" not in value or any(c in value for c in "\r\n<> "):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def public_base_url(self) -> str:
        return (self.base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def database_url_for_display(self) -> str:
        """The database URL with any password hidden, safe for logs and messages."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning any problem into a one-line :class:`ConfigError`."""
    env_path = os.environ.get(f"{ENV_PREFIX}CONFIG")
    path = config_file or (Path(env_path) if env_path else None)
    if path is not None:
        _check_toml(path)

    class _Configured(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _Configured(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _check_toml(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (check --config / DHR_CONFIG)"
        ) from None
    except OSError as exc:  # a directory, no permission...
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else "?"
    where = f" in {path}" if path else ""
    if err["type"] == "extra_forbidden":
        return f"unknown setting {field!r}{where}; see .env.example for the list of settings"
    message = err["msg"].removeprefix("Value error, ")
    return f"setting {field} ({ENV_PREFIX}{field.upper()}){where}: {message}"
