"""The rollback plan judges a version exactly as the rollback does: today's schema, then the rules
on the keys the rollback changes. It once ran the schema alone and said `valid: true` to a version
the rollback then refused by the rules (review 12, defect 6)."""

from __future__ import annotations

import json

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import ValidationFailed
from apphub.history.index import HistoryEntry, HistoryQuery
from apphub.history.rollback import plan_rollback, rollback

API = Actor("admin", "api")
PLACEHOLDER = "admin123"  # the placeholder_password rule refuses it
STRONG = "Correct-Horse-Battery-417"
MISSING_VARIABLE = "http://${env:APPHUB_REVIEW_UNSET_VARIABLE}:3000/api/v1"  # a warning of the reference rule


def _rules(core: Core, enabled: bool) -> None:
    core.system.update({"rules": {"enabled": "true" if enabled else "false"}}, API)


def _newest(core: Core) -> HistoryEntry:
    core.history.record()
    return core.history.page(HistoryQuery(limit=1, file="config.ini"))[0][0]


def test_a_version_the_rules_refuse_is_planned_invalid_as_the_rollback_refuses_it(core: Core) -> None:
    _rules(core, enabled=False)
    core.config.update({"gitea": {"user_pwd": PLACEHOLDER}}, API)
    weak = _newest(core)
    _rules(core, enabled=True)
    core.config.update({"gitea": {"user_pwd": STRONG}}, API)
    core.history.record()

    plan = plan_rollback(core.history, core.config, weak.commit)
    with pytest.raises(ValidationFailed) as refused:
        rollback(core.history, core.config, weak.commit, API)

    answer = plan.as_dict()
    assert answer["valid"] is False
    assert [(p["section"], p["key"], p["rule"], p["file"]) for p in answer["problems"]] == [
        ("gitea", "user_pwd", "placeholder_password", "config.ini")]
    assert {(p.section, p.key, p.rule) for p in plan.problems} == {
        (e.section, e.key, e.rule) for e in refused.value.errors if e.severity == "error"}
    shown = json.dumps(answer)
    assert PLACEHOLDER not in shown
    assert STRONG not in shown


def test_the_rules_warnings_are_reported_and_leave_the_plan_valid(core: Core) -> None:
    _rules(core, enabled=False)
    core.config.update({"gitea": {"base_url": MISSING_VARIABLE}}, API)
    warned = _newest(core)
    _rules(core, enabled=True)
    core.config.update({"gitea": {"base_url": "http://websoft9-git:3000/api/v1"}}, API)
    core.history.record()

    answer = plan_rollback(core.history, core.config, warned.commit).as_dict()
    result, _ = rollback(core.history, core.config, warned.commit, API)

    assert answer["valid"] is True
    assert answer["problems"] == []
    assert [(w["section"], w["key"], w["rule"], w["severity"]) for w in answer["warnings"]] == [
        ("gitea", "base_url", "reference", "warning")]
    assert [w["text"] for w in answer["warnings"]] == [str(w) for w in result.warnings]


def test_only_the_keys_the_rollback_changes_are_judged_as_the_rollback_does(core: Core) -> None:
    # A placeholder the rules never saw (they were off) stays as it is in both versions: the
    # rollback does not touch it, so neither it nor its plan judges it.
    _rules(core, enabled=False)
    core.config.update({"gitea": {"user_pwd": PLACEHOLDER}}, API)
    _rules(core, enabled=True)
    core.config.update({"gitea": {"user_email": "first@example.com"}}, API)
    first = _newest(core)
    core.config.update({"gitea": {"user_email": "second@example.com"}}, API)
    core.history.record()

    answer = plan_rollback(core.history, core.config, first.commit).as_dict()
    result, _ = rollback(core.history, core.config, first.commit, API)

    assert answer["valid"] is True, answer["problems"]
    assert answer["warnings"] == []
    assert result.changed
