"""Rollback: an earlier version written again, byte for byte, as a new version (history is never
rewritten), checked against today's schema and judged by the rules first; and its plan, which
touches nothing and judges the version exactly as the rollback would.

The first version is a version like any other: rolling back to it restores its settings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from apphub.audit.log import Actor
from apphub.errors import FieldError, IniParseError
from apphub.history.index import HistoryEntry
from apphub.history.inidiff import KeyChange
from apphub.history.recorder import CONFIG
from apphub.history.service import History
from apphub.store.inistore import IniStore, WriteResult
from apphub.store.snapshot import Snapshot

# What the sync engine would do to each service for a version (its plan, as a dict), if one runs.
ServicePlanner = Callable[[Snapshot], dict[str, Any]]


@dataclass
class RollbackPlan:
    """What a rollback to `target` would change, what refuses it (`problems`: the schema's, or the
    rules' errors), what the rules warn of (accepted all the same), and what each service would get."""

    target: HistoryEntry
    current_version: str
    changes: list[KeyChange]
    problems: list[FieldError]
    warnings: list[FieldError] = field(default_factory=list)
    services: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": {"commit": self.target.commit, "version": self.target.config_version,
                       "at": self.target.at, "author": self.target.author, "message": self.target.message},
            "current_version": self.current_version,
            "changes": [change.as_dict() for change in self.changes],
            "valid": not self.problems,
            "problems": [problem.as_dict() | {"text": str(problem)} for problem in self.problems],
            "warnings": [warning.as_dict() | {"text": str(warning)} for warning in self.warnings],
            "services": self.services,
            "notes": self.notes,
        }


def plan_rollback(history: History, store: IniStore, reference: str,
                  plan_services: ServicePlanner | None = None) -> RollbackPlan:
    """The plan of a rollback of `store`'s file to `reference`: nothing is written or reloaded."""
    target = history.resolve(reference)
    raw = history.content(target, store.name)
    current = store.snapshot()
    diff = history.diff(target.commit, None, store.name)
    changes = [_reversed(change) for change in diff.changes]
    try:
        snapshot = store.parse(raw)
    except IniParseError as exc:
        problem = FieldError("?", None, "ini", exc.public, file=store.name)
        return RollbackPlan(target, current.version, changes, [problem])
    found = store.restore_findings(current, snapshot)  # as the rollback itself will judge it
    problems = [finding for finding in found if finding.severity == "error"]
    warnings = [finding for finding in found if finding.severity != "error"]
    plan = RollbackPlan(target, current.version, changes, problems, warnings)
    if plan_services is not None and store.name in (CONFIG, "env.ini"):
        plan.services = plan_services(snapshot)
    if snapshot.version == current.version:
        plan.notes.append(f"{store.name} is at that version already: a rollback changes nothing")
    return plan


def _reversed(change: KeyChange) -> KeyChange:
    """A change of the diff target -> now, turned round: what the rollback does (now -> target)."""
    kind = {"added": "removed", "removed": "added"}.get(change.change, change.change)
    return KeyChange(change.section, change.key, kind, change.new, change.old, change.secret)


def rollback(history: History, store: IniStore, reference: str, actor: Actor, *, force: bool = False,
             message: str | None = None, if_match: Collection[str] | None = None) -> tuple[WriteResult, HistoryEntry]:
    """Write the version `reference` names as the new version of `store`'s file (validated against
    today's schema unless `force`; ValidationFailed names every problem). Its source is `rollback`."""
    target = history.resolve(reference)
    raw = history.content(target, store.name)
    shown = target.config_version if store.name == CONFIG and target.config_version else target.commit
    words = message or f"rollback to {shown[:12]} (commit {target.commit[:12]}, {target.at})"
    result = store.restore(raw, Actor(actor.name, "rollback", actor.request_id), if_match=if_match, force=force,
                           message=words)
    return result, target
