"""The rules every write path runs, over `config.ini` and `system.ini` together, and the small
hook the store calls them through (store/inistore.py RuleHook: the store knows no rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence

from apphub.errors import FieldError
from apphub.paths import DataDir
from apphub.rules.base import SYSTEM, Candidate, KeyRef, Rule, sorted_findings
from apphub.rules.crosskey import CrossKeyRule
from apphub.rules.ports import port_rule
from apphub.rules.references import ReferenceRule
from apphub.rules.strength import StrengthRule
from apphub.store.inistore import RuleHook
from apphub.store.snapshot import Snapshot

logger = logging.getLogger("apphub.rules")

ENABLED = KeyRef(SYSTEM, "rules", "enabled")  # system.ini's switch for them all


def standard_rules(data: DataDir, system: Callable[[], Snapshot | None],
                   config: Callable[[], Snapshot | None]) -> RuleBook:
    """The rules of a data folder: the schema's cross-key rules, credential strength, references,
    port conflicts (which read the folder's services.yaml, and `system` and `config` as they are
    now, to tell whose port is whose)."""
    return RuleBook([CrossKeyRule(), StrengthRule(), ReferenceRule(), port_rule(data.root, system, config)])


class RuleBook:
    """A set of rules judged together; a rule that fails to run is a warning, never a refusal
    (a bug of one rule must not stop every write)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)

    def judge(self, files: Mapping[str, Snapshot], touched: Collection[KeyRef] | None = None) -> list[FieldError]:
        """Every finding of every rule for `files` ({"config.ini": snapshot, ...}), errors first."""
        candidate = Candidate(files, touched)
        if not candidate.switched_on(ENABLED):
            return []
        findings: list[FieldError] = []
        for rule in self.rules:
            try:
                findings += rule.check(candidate)
            except (MemoryError, RecursionError):
                raise  # not a rule's bug to pass over: the write fails
            except Exception:
                logger.exception("the rule %s failed to run", rule.name)
                first = next(iter(files), "config.ini")
                findings.append(FieldError("*", None, rule.name, f"the rule {rule.name} could not run (see the "
                                           "apphub log); it was not checked", file=first, severity="warning"))
        return sorted_findings(findings)

    def hook(self, file: str, others: Mapping[str, Callable[[], Snapshot | None]]) -> RuleHook:
        """What `file`'s store calls with the version it would write; `others`: how to read the other
        files as they are now (the last version that parses)."""

        def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
            files = {name: snapshot for name, read in others.items() if (snapshot := read()) is not None}
            files[file] = written
            refs = None if touched is None else [KeyRef(file, section, key) for section, key in touched]
            return self.judge(files, refs)

        return judge
