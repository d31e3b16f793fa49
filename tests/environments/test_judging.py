"""The rules judge config.ini under the active environment's overlay: a finding about a value the
overlay sets names the overlay's file and line, whichever file the write that brought it to light
went to."""

from __future__ import annotations

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import ValidationFailed

ACTOR = Actor("judging-test", "test")


def test_a_config_ini_write_refused_for_a_value_the_overlay_sets_names_the_overlay(core: Core) -> None:
    core.config.update({"nginx_proxy_manager": {"nike_name": "9091"}}, ACTOR)
    core.environments.update("prod", {"cockpit": {"port": "${nginx_proxy_manager.nike_name}"}}, ACTOR)
    core.system.update({"environments": {"active": "prod"}}, ACTOR)
    overlay = core.environments.overlay("prod")
    assert overlay is not None
    with pytest.raises(ValidationFailed) as refused:
        core.config.update({"nginx_proxy_manager": {"nike_name": "not-a-port"}}, ACTOR)
    found = [(f.file, f.line, f.section, f.key) for f in refused.value.errors]
    assert found == [("config.prod.ini", overlay.document.line_of("cockpit", "port"), "cockpit", "port")]


def test_active_base_typed_by_hand_is_config_ini_alone(core: Core) -> None:
    core.environments.update("prod", {"gitea": {"user_email": "prod@example.org"}}, ACTOR)
    system_ini = core.data.system_ini
    text = system_ini.read_text()
    assert "\nactive = \n" in text
    system_ini.write_text(text.replace("\nactive = \n", "\nactive = base\n"))
    assert core.environments.active() is None
    assert core.environments.active_problem() is None
    core.config.update({"gitea": {"user_email": "base@example.org"}}, ACTOR)
    assert core.environments.effective(core.environments.active()).document.get("gitea", "user_email") == \
        "base@example.org"
