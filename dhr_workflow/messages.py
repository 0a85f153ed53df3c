"""An outbox row as an RFC 5322 message: multipart/alternative (text + HTML), calendar parts,
and any files attached (the partnership report's PDF).

The outbox row already holds the finished subject and bodies (rendered at enqueue); this only
assembles them with the headers automated mail must carry.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime

from dhr_workflow.models import Notification
from dhr_workflow.templates import clean_header

_METHOD = re.compile(r"^METHOD:(\w+)\s*$", re.M)


def calendar_parts(note: Notification) -> list[str]:
    return list(json.loads(note.calendar)) if note.calendar else []


class _Headers(HeaderRegistry):
    """The standard header registry, with its classes made once: the stock one builds a new
    class for every header of every message, which was most of the cost of building one."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        made = self._made.get(name.lower())
        if made is None:
            made = self._made[name.lower()] = super().__getitem__(name)
        return made


POLICY = email.policy.default.clone(header_factory=_Headers())


@dataclass(frozen=True)
class Attachment:
    """A file a message carries (the scheduled partnership report's PDF)."""

    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


def build(
    note: Notification,
    *,
    mail_from: str,
    now: dt.datetime,
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name="DHR action plans", addr_spec=mail_from)
    msg["To"] = ", ".join(clean_header(a, 320) for a in note.to_addrs)
    if note.cc_addrs:
        msg["Cc"] = ", ".join(clean_header(a, 320) for a in note.cc_addrs)
    if note.reply_to:  # answers go to the review's coordinator, not to a robot
        msg["Reply-To"] = clean_header(note.reply_to, 320)
    msg["Subject"] = clean_header(note.subject)
    msg["Date"] = format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = note.message_id  # stable: a repeat after a crash is recognisable
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, no loops
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(note.text_body)
    if note.html_body:
        msg.add_alternative(note.html_body, subtype="html")
    for n, ics in enumerate(calendar_parts(note), start=1):
        found = _METHOD.search(ics)
        method = found.group(1) if found else "PUBLISH"
        # base64 keeps the calendar's CRLF line endings intact through any relay
        msg.add_attachment(
            ics.encode(),
            maintype="text",
            subtype="calendar",
            filename=f"action-{n}.ics",
            params={"method": method},
            disposition="inline",
        )
    kept = (
        [Attachment(note.attachment_name or "attachment.pdf", note.attachment)]
        if note.attachment
        else []
    )
    for attached in (*kept, *attachments):
        msg.add_attachment(
            attached.content,
            maintype=attached.maintype,
            subtype=attached.subtype,
            filename=clean_header(attached.filename, 100),
        )
    return msg


def recipients(note: Notification) -> list[str]:
    return list(dict.fromkeys([*note.to_addrs, *note.cc_addrs]))
