"""A write made on top of a hand edit that nothing has judged yet (the sync thread had not seen it,
or no server runs) records the hand-edited version as audited: the write must judge the hand edit's
keys too, or their values would reach the services unchecked."""

from __future__ import annotations

import re

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import ValidationFailed

ACTOR = Actor("unjudged-test", "test")


def hand_edit(core: Core, pattern: str, replacement: str) -> None:
    path = core.data.config_ini
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
    assert count == 1, pattern
    path.write_text(text)


def test_a_write_over_a_hand_edit_that_breaks_the_schema_is_refused_naming_the_hand_edited_key(core: Core) -> None:
    core.config.update({"gitea": {"user_email": "first@example.org"}}, ACTOR)  # the store knows this version
    hand_edit(core, r"^port = 9090$", "port = ninety")  # [cockpit] port
    with pytest.raises(ValidationFailed) as refused:
        core.config.update({"gitea": {"user_email": "second@example.org"}}, ACTOR)
    assert [(e.section, e.key) for e in refused.value.errors] == [("cockpit", "port")]
    assert "set by a hand edit apphub has not yet accepted" in refused.value.errors[0].message
    assert core.config.snapshot().document.get("gitea", "user_email") == "first@example.org"


def test_a_write_over_a_hand_edit_that_breaks_a_rule_is_refused(core: Core) -> None:
    core.config.update({"gitea": {"user_email": "first@example.org"}}, ACTOR)
    listen_port = core.config.snapshot().document.get("nginx_proxy_manager", "listen_port")
    hand_edit(core, r"^port = 9090$", f"port = {listen_port}")  # [cockpit] port on the console's port
    with pytest.raises(ValidationFailed) as refused:
        core.config.update({"gitea": {"user_email": "second@example.org"}}, ACTOR)
    assert ("cockpit", "port", "port_conflict") in [(e.section, e.key, e.rule) for e in refused.value.errors]


def test_a_write_over_a_valid_hand_edit_goes_through_and_the_write_may_fix_a_bad_one(core: Core) -> None:
    core.config.update({"gitea": {"user_email": "first@example.org"}}, ACTOR)
    hand_edit(core, r"^port = 9090$", "port = 9095")
    result = core.config.update({"gitea": {"user_email": "second@example.org"}}, ACTOR)
    assert result.changed
    assert core.config.snapshot().document.get("cockpit", "port") == "9095"
    hand_edit(core, r"^port = 9095$", "port = ninety")
    core.config.update({"cockpit": {"port": 9096}}, ACTOR)  # the write sets the broken key anew
    assert core.config.snapshot().document.get("cockpit", "port") == "9096"


def test_a_first_write_after_an_unknown_hand_edit_reports_the_files_problems_as_warnings(core: Core) -> None:
    # No write of this process came before: which keys the hand edit changed cannot be told, and
    # the file's problems may be old ones; they are reported, not refused.
    hand_edit(core, r"^port = 9090$", "port = ninety")
    result = core.config.update({"gitea": {"user_email": "second@example.org"}}, ACTOR)
    assert [(w.section, w.key, w.severity) for w in result.warnings] == [("cockpit", "port", "warning")]
    assert "(in the file as it is)" in result.warnings[0].message


def test_a_switch_of_environment_after_an_unknown_hand_edit_of_system_ini_is_still_judged_as_a_switch(
        core: Core) -> None:
    listen_port = core.config.snapshot().document.get("nginx_proxy_manager", "listen_port")
    (core.data.root / "config.prod.ini").write_text(f"[cockpit]\nport = {listen_port}\n")  # the console's port
    system_ini = core.data.system_ini
    system_ini.write_text(system_ini.read_text() + "\n# a note typed by hand\n")
    another_process = Core(core.data)  # which has written nothing yet
    try:
        with pytest.raises(ValidationFailed) as refused:
            another_process.system.update({"environments": {"active": "prod"}}, ACTOR)
    finally:
        another_process.close()
    assert ("cockpit", "port", "port_conflict", "error") in [
        (e.section, e.key, e.rule, e.severity) for e in refused.value.errors]
