"""Every form of the web app: reading fields, and errors written for the person who sees them.

A form reader returns clean values and fills an :class:`Errors` with one message per field (the
GOV.UK error summary links to the field). Service refusals (``UserError``) are added to the
field they concern, so a person sees every problem in one place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from starlette.datastructures import FormData, UploadFile

from dhr_workflow.importer.text import strip_controls
from dhr_workflow.models import ActionStatus, ContactRole

TEXT_LIMIT = 5000


@dataclass
class Errors:
    """Field id -> message, in the order found (the order of the error summary)."""

    fields: dict[str, str] = field(default_factory=dict)

    def add(self, field_id: str, message: str) -> None:
        self.fields.setdefault(field_id, message)

    def get(self, field_id: str) -> dict[str, str] | None:
        message = self.fields.get(field_id)
        return {"text": message} if message else None

    def date(self, prefix: str) -> dict[str, str] | None:
        """The error of a GOV.UK date input, whichever of its three fields it is on."""
        for part in ("day", "month", "year"):
            found = self.get(f"{prefix}-{part}")
            if found:
                return found
        return None

    def summary(self) -> list[dict[str, str]]:
        return [{"text": m, "href": f"#{f}"} for f, m in self.fields.items()]

    def __bool__(self) -> bool:
        return bool(self.fields)


@dataclass
class Reader:
    """Reads one submitted form, collecting errors instead of stopping at the first."""

    form: FormData
    errors: Errors = field(default_factory=Errors)

    def raw(self, name: str) -> str:
        """A field as typed, trimmed, with Windows line endings made plain and control
        characters (NUL above all: PostgreSQL refuses it) removed."""
        value = self.form.get(name)
        if not isinstance(value, str):
            return ""
        return strip_controls(value.replace("\r\n", "\n").replace("\r", "\n")).strip()

    def text(
        self, name: str, label: str, *, required: bool = False, limit: int = TEXT_LIMIT
    ) -> str:
        value = self.raw(name)
        if required and not value:
            self.errors.add(name, f"Enter {label}")
        elif len(value) > limit:
            self.errors.add(
                name, f"{label[0].upper()}{label[1:]} must be {limit} characters or fewer"
            )
        return value

    def email(self, name: str, *, required: bool = True) -> str:
        value = self.raw(name)
        if not value:
            if required:
                self.errors.add(name, "Enter an email address")
            return ""
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError:
            self.errors.add(
                name, "Enter an email address in the correct format, like name@example.org"
            )
            return ""

    def choice(self, name: str, label: str, options: set[str], *, required: bool = True) -> str:
        value = self.raw(name)
        if not value:
            if required:
                self.errors.add(name, f"Select {label}")
            return ""
        if value not in options:
            self.errors.add(name, f"Select {label} from the list")  # noqa: S608 - not SQL
            return ""
        return value

    def date(self, name: str, label: str, *, required: bool = False) -> dt.date | None:
        """A GOV.UK date input: fields name-day, name-month, name-year."""
        parts = [self.raw(f"{name}-{p}") for p in ("day", "month", "year")]
        if not any(parts):
            if required:
                self.errors.add(f"{name}-day", f"Enter {label}")
            return None
        missing = [p for p, v in zip(("day", "month", "year"), parts, strict=True) if not v]
        if missing:
            self.errors.add(
                f"{name}-{missing[0]}", f"{label[0].upper()}{label[1:]} must include a {missing[0]}"
            )
            return None
        try:
            day, month, year = (int(p) for p in parts)
            if not 1900 <= year <= 2999:
                raise ValueError
            return dt.date(year, month, day)
        except ValueError:
            self.errors.add(
                f"{name}-day", f"{label[0].upper()}{label[1:]} must be a real date, like 31 3 2025"
            )
            return None


def number(value: str, limit: int = 2**31 - 1) -> int | None:
    """A whole number a person (or a URL) gave, if it is one in the id columns' range."""
    if value.isascii() and value.isdigit() and 0 < int(value) <= limit:
        return int(value)
    return None


def _cap(label: str) -> str:
    return label[:1].upper() + label[1:]


def date_fields(value: dt.date | None) -> dict[str, str]:
    """A date as the three values a GOV.UK date input shows."""
    if value is None:
        return {"day": "", "month": "", "year": ""}
    return {"day": str(value.day), "month": str(value.month), "year": str(value.year)}


STATUSES = {s.value for s in ActionStatus}
ROLES = {r.value for r in ContactRole}


def too_large(limit: int) -> str:
    return f"The file must be smaller than {limit / (1024 * 1024):.3g} MB"


def upload(form: FormData, name: str, errors: Errors, limit: int) -> tuple[str, bytes] | None:
    """An uploaded file's name and bytes, or None with the reason in ``errors``."""
    item = form.get(name)
    if not isinstance(item, UploadFile) or not item.filename:
        errors.add(name, "Select a plan file")
        return None
    data: Any = item.file.read(limit + 1)
    if len(data) > limit:
        errors.add(name, too_large(limit))
        return None
    if not data:
        errors.add(name, "The selected file is empty")
        return None
    return item.filename, bytes(data)
