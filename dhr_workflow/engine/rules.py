"""Loading the rule set and checking it against the templates, once, at start-up."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from dhr_workflow.engine.model import CALENDAR_TEMPLATE
from dhr_workflow.errors import InvalidInput
from dhr_workflow.outbox import FAILURE_TEMPLATE
from dhr_workflow.ruleset import FAMILY_SAFE, Ladder, Notify, Rule, RuleSet, load_dir
from dhr_workflow.templates import Templates, family_safe, sample_context


def load_rules(rules_dir: Path, templates_dir: Path, tz: ZoneInfo) -> tuple[RuleSet, Templates]:
    """The rule set and its templates, fully checked: every template a rule names exists and
    renders against a sample of the messages that rule sends, so a broken or misplaced one
    is found now, not when it is due to send."""
    templates = Templates(templates_dir)
    ruleset = load_dir(rules_dir, tz=tz)
    available = templates.names()
    for item in ruleset.entries():
        kind = "review" if isinstance(item, Rule) and item.scope == "review" else "action"
        for path, notify in _notifies(item):
            where = f"{ruleset.sources[item.id]}: {item.id}: {path}.template"
            if notify.template not in available:
                have = ", ".join(sorted(available)) or "none"
                raise InvalidInput(
                    f"{where}: template {notify.template!r} does not exist (have: {have})"
                )
            sample = sample_context(kind)
            if notify.template in FAMILY_SAFE:
                sample = family_safe(sample)
            try:
                templates.render(notify.template, sample)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{where}: {notify.template!r} does not fit a {kind} message: {exc}"
                ) from None
    templates.check({FAILURE_TEMPLATE}, "failure")
    templates.check({CALENDAR_TEMPLATE}, "action")
    # Sent by the web app when someone asks for more time and when it is decided.
    templates.check({"extension_request", "extension_decision"}, "extension")
    return ruleset, templates


def _notifies(item: Ladder | Rule) -> list[tuple[str, Notify]]:
    if isinstance(item, Ladder):
        return [
            (f"steps[{i}].notify[{j}]", n)
            for i, step in enumerate(item.steps)
            for j, n in enumerate(step.notify)
        ]
    return [(f"notify[{j}]", n) for j, n in enumerate(item.notify)]
