"""Rule evaluation: a function of the store and ``at``. Reads only; :func:`commit` writes.

Semantics users rely on:
- the firing ledger's unique (rule, subject, period) makes every tick idempotent;
- a ladder fires only the highest step an action has reached; lower steps not yet fired are
  recorded as superseded, so catching up after downtime sends one message, not a backlog;
- a ladder period includes the due date, so a changed date restarts the ladder;
- ``repeat`` re-fires every interval while the action stays open;
- a recurring review rule fires for its latest occurrence not yet fired;
- completed and withdrawn actions never fire;
- firings of one tick are grouped into one message per rule, template and recipients.

The package, read top down: :mod:`.rules` loads and checks the rule set; :mod:`.selection`
finds what fires (with the pure ladder arithmetic of :mod:`.ladder`); :mod:`.digests` groups
and renders it; :mod:`.ledger` writes it; :mod:`.model` holds the data they pass along.
Calendar follow-ups live beside the calendar, in :mod:`dhr_workflow.invitations`.
"""

from dhr_workflow.engine.ledger import commit, commit_rest, parts
from dhr_workflow.engine.model import CALENDAR_RULE, Context, Gap, Hit, Key, Message, TickResult
from dhr_workflow.engine.rules import load_rules
from dhr_workflow.engine.selection import evaluate, unanchored

__all__ = [
    "CALENDAR_RULE",
    "Context",
    "Gap",
    "Hit",
    "Key",
    "Message",
    "TickResult",
    "commit",
    "commit_rest",
    "evaluate",
    "load_rules",
    "parts",
    "unanchored",
]
