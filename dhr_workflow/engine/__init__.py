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

import sys
import types
from typing import Any

from dhr_workflow.engine import digests, selection
from dhr_workflow.engine.digests import RENDER_CHUNK
from dhr_workflow.engine.ledger import commit
from dhr_workflow.engine.model import CALENDAR_RULE, Context, Gap, Hit, Key, Message, TickResult
from dhr_workflow.engine.rules import load_rules
from dhr_workflow.engine.selection import CHUNK, evaluate, unanchored

__all__ = [
    "CALENDAR_RULE",
    "CHUNK",
    "RENDER_CHUNK",
    "Context",
    "Gap",
    "Hit",
    "Key",
    "Message",
    "TickResult",
    "commit",
    "evaluate",
    "load_rules",
    "unanchored",
]

# The chunk sizes are read where they are used (selection.CHUNK, digests.RENDER_CHUNK); tests
# shrink them on the package (``monkeypatch.setattr(engine, "CHUNK", 2)``), as they did when
# the engine was one module. Setting one here sets it there too, so that still takes effect.
_TUNABLES: dict[str, types.ModuleType] = {"CHUNK": selection, "RENDER_CHUNK": digests}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _TUNABLES:
            setattr(_TUNABLES[name], name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
