"""Review findings on environments/overlays.py, each a regression test:

- a name ending in a newline passed the name check (`$` matches before a final newline) and made
  `config.prod\\n.ini`, an environment the history never records;
- a first write that changes nothing (`PUT {}`, a promotion of no keys) left an overlay file: an
  environment nobody is recorded as making;
- system.ini's `active` typed by hand as a name no environment can have (`Prod`) refused every
  config.ini write with a finding naming no file, line or key, and refused the fix
  (`apphub environments use base`) too. Now: the sync applies config.ini alone (it refuses such an
  overlay), so a config.ini write is judged on config.ini alone and goes ahead; what asks for that
  environment (explain, the sync's status, `apphub check`) names system.ini, the line, and
  [environments] active; and a switch away from it is judged from what runs now.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.environments.compare import promote
from apphub.environments.overlays import check_name
from apphub.errors import ValidationFailed
from apphub.paths import DataDir
from tests.cli.conftest import RunApphub, apphub, audit_rows

__all__ = ["apphub"]  # the CLI's fixture, used here

ACTOR = Actor("environments-review-test", "test")


def _files(root: Path) -> list[str]:
    return sorted(path.name for path in root.glob("config*"))


def _overlay_events(data: DataDir) -> list[dict[str, object]]:
    return [dict(row) for row in audit_rows(data, "SELECT action, file FROM audit_events "
                                                  "WHERE file LIKE 'config.%.ini'", ())]


def _line(path: Path, section: str, key: str) -> int:
    current = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("["):
            current = line.strip()[1:-1]
        elif current == section and line.split("=")[0].strip() == key:
            return number
    raise AssertionError(f"[{section}] {key} is not in {path.name}")


def _type_active(data: DataDir, name: str, core: Core | None = None) -> int:
    """system.ini's [environments] active set to `name` by hand, as an operator's editor would;
    the line it is on. With `core`, the hand edit is then accounted for as the history does when
    it sees the file change (so a write's rules judge the keys it touches, not the whole file)."""
    text = data.system_ini.read_text(encoding="utf-8")
    assert "[environments]\nactive = \n" in text
    data.system_ini.write_text(text.replace("[environments]\nactive = \n", f"[environments]\nactive = {name}\n"),
                               encoding="utf-8")
    if core is not None:
        core.system.account_for_outside_change(None)
    return _line(data.system_ini, "environments", "active")


# -- a name ending in a newline -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["prod\n", "diff\n", "base\n"])
def test_a_name_ending_in_a_newline_is_refused_and_makes_no_file(core: Core, name: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_name(name)
    assert repr(name) in str(caught.value)  # the newline is shown, not hidden at the end of a line
    with pytest.raises(ValidationFailed):
        core.environments.update(name, {"gitea": {"user_email": "p@example.com"}}, ACTOR)
    assert _files(core.data.root) == ["config.ini"]


def test_a_file_whose_name_ends_in_a_newline_is_no_environment(core: Core) -> None:
    (core.data.root / "config.prod\n.ini").write_text("[gitea]\nuser_email = p@example.com\n", encoding="utf-8")
    assert core.environments.names() == []


def test_the_api_refuses_a_name_ending_in_a_newline(admin: httpx.Client, data_dir: DataDir) -> None:
    for name in ("prod%0A", "diff%0A"):
        answer = admin.put(f"/api/v1/environments/{name}/gitea", json={"user_email": "p@example.com"})
        assert answer.status_code == 422, answer.text
        assert "cannot name an environment" in answer.text
    assert _files(data_dir.root) == ["config.ini"]
    assert admin.get("/api/v1/environments").json()["environments"] == []


# -- a first write that changes nothing -----------------------------------------------------------


def test_a_first_write_that_changes_nothing_leaves_no_environment(core: Core) -> None:
    assert not core.environments.update("qa", {}, ACTOR).changed
    assert not promote(core.environments, "base", "stage", [], ACTOR).changed
    assert not promote(core.environments, "base", "stage2", None, ACTOR).changed  # nothing differs
    assert core.environments.names() == []
    assert _files(core.data.root) == ["config.ini"]
    assert _overlay_events(core.data) == []


def test_a_write_that_changes_nothing_keeps_an_existing_environment(core: Core) -> None:
    core.environments.update("prod", {"gitea": {"user_email": "p@example.com"}}, ACTOR)
    assert not core.environments.update("prod", {}, ACTOR).changed
    assert core.environments.names() == ["prod"]
    # an overlay made by hand with no key yet is the operator's: a write of nothing leaves it too
    (core.data.root / "config.empty.ini").write_text("# for later\n", encoding="utf-8")
    assert not core.environments.update("empty", {}, ACTOR).changed
    assert core.environments.names() == ["empty", "prod"]


def test_the_api_put_of_nothing_and_promote_of_no_keys_make_no_environment(admin: httpx.Client,
                                                                         data_dir: DataDir) -> None:
    for answer in (admin.put("/api/v1/environments/qa/gitea", json={}),
                   admin.post("/api/v1/environments/promote", json={"from": "base", "to": "stage", "keys": []}),
                   admin.post("/api/v1/environments/promote", json={"from": "base", "to": "stage2"})):
        assert answer.status_code == 200, answer.text
        assert answer.json()["changed"] == []
    assert admin.get("/api/v1/environments").json()["environments"] == []
    assert _files(data_dir.root) == ["config.ini"]
    assert _overlay_events(data_dir) == []


# -- system.ini's active typed as no environment's name ------------------------------------------


def test_a_config_ini_write_goes_ahead_judged_on_config_ini_alone(core: Core) -> None:
    core.environments.update("prod", {"cockpit": {"port": 9100}}, ACTOR)
    _type_active(core.data, "Prod")
    assert core.environments.overlay("Prod") is None
    # config.ini alone runs (the sync refuses the overlay), so prod's port is no conflict yet...
    assert core.config.update({"nginx_proxy_manager": {"listen_port": 9100}}, ACTOR).changed
    # ...and is found when prod is set to run: the switch is judged on what it changes from config.ini
    # alone. (After a hand edit of system.ini its write is judged as a whole file, where a port
    # conflict is a warning: either way it is reported.)
    try:
        findings = core.system.update({"environments": {"active": "prod"}}, ACTOR).warnings
    except ValidationFailed as refused:
        findings = refused.errors
    assert ("cockpit", "port", "port_conflict") in {(f.section, f.key, f.rule) for f in findings}


def test_the_sync_and_check_name_system_ini_its_line_and_the_key(core: Core) -> None:
    line = _type_active(core.data, "Prod")
    overlay, problems = core.environments.checked("Prod")
    assert overlay is None
    [problem] = problems
    assert problem.startswith(f"system.ini:{line}: [environments] active = 'Prod': 'Prod' cannot name an environment")
    assert "apphub environments use base" in problem
    found = core.findings()  # `apphub check`, validate without a proposal: no exception
    assert [(f.file, f.line, f.section, f.key) for f in found if f.file == "system.ini"] == [
        ("system.ini", line, "environments", "active")]


def test_a_valid_name_written_through_system_ini_replaces_it(core: Core) -> None:
    core.environments.update("prod", {"gitea": {"user_email": "p@example.com"}}, ACTOR)
    _type_active(core.data, "Prod", core)
    assert core.system.update({"environments": {"active": "prod"}}, ACTOR).changed
    assert core.environments.active() == "prod"
    assert core.environments.active_problem() is None


def test_over_the_api_writes_go_ahead_and_explain_names_system_ini(admin: httpx.Client, data_dir: DataDir) -> None:
    line = _type_active(data_dir, "Prod")
    written = admin.put("/api/v1/settings/gitea", json={"user_email": "ops@example.com"})
    assert written.status_code == 200, written.text
    explained = admin.get("/api/v1/settings/gitea/base_url/explain")
    assert explained.status_code == 422, explained.text
    [error] = explained.json()["errors"]
    assert (error["file"], error["line"], error["section"], error["key"], error["value"]) == (
        "system.ini", line, "environments", "active", "Prod")
    assert "cannot name an environment" in error["message"]
    base = admin.get("/api/v1/settings/gitea/base_url/explain", params={"environment": "base"})
    assert base.status_code == 200, base.text


def test_environments_use_base_fixes_it(apphub: RunApphub, core: Core) -> None:
    data_dir = core.data
    _type_active(data_dir, "Prod", core)
    done = apphub("environments", "use", "base")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "this host runs base" in done.stdout
    assert "[environments]\nactive = \n" in data_dir.system_ini.read_text(encoding="utf-8")
