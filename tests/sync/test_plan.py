"""Planning: which services a change touches, how strong their action is, what the diff shows.

A plan renders into memory and compares with the disk; it never writes a file or reloads a
service. `apphub plan --set S.K=V` shows the same plan to an operator before the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from apphub.store.snapshot import changed_keys
from apphub.sync.manifest import load_manifest
from apphub.sync.plan import Plan, Planner
from tests.cli.conftest import run_apphub
from tests.sync.conftest import ADMIN_PASSWORD, API_TOKEN_DEFAULT, SyncWorld

MASK = "********"


def _planner(world: SyncWorld) -> Planner:
    manifest = load_manifest(world.data.root / "services.yaml", [str(world.root)], world.data.root)
    return Planner(manifest, world.templates, {})


def _plan_change(world: SyncWorld, planner: Planner, changes: dict[str, dict[str, Any]]) -> tuple[Plan, list[str]]:
    """Plan `changes` the way the engine does: only the services that read a changed key."""
    current = world.core.config.snapshot()
    planner.plan(current)  # what every service reads now
    proposed = world.core.config.preview(changes)
    changed = changed_keys(current, proposed)
    assert changed is not None
    affected = planner.affected(changed)
    return planner.plan(proposed, previous=current, services=affected), affected


def _write_renders(plan: Plan) -> None:
    """Put every file at its render (what a first sync would have done)."""
    for service in plan.services.values():
        for file in service.files:
            Path(file.spec.path).write_bytes(file.after)


def _levels_manifest(world: SyncWorld, **extra: Any) -> None:
    app = world.path("web/app.json")
    world.manifest({
        "web": {"files": [{"path": str(app), "mode": "merge",
                           "map": {"server.port": "${web.port}", "server.title": "${web.title}",
                                   "motd": "${web.motd}"}}],
                "reload": {"reload": world.exec_reload("web-reload"), "restart": world.exec_reload("web-restart"),
                           **extra}},
        "db": {"files": [{"path": str(world.path("db/db.ini")), "mode": "merge",
                          "map": {"database.port": "${db.port}"}}],
               "reload": world.exec_reload("db")},
    })


def _command_name(plan: Plan, service: str) -> str:
    action = plan.services[service].action
    return str(getattr(action, "command", [None, action.strategy])[1])


# -- which services ------------------------------------------------------------------------------


def test_a_change_of_one_key_renders_only_the_services_that_read_it(world: SyncWorld) -> None:
    world.standard()
    planner = _planner(world)

    plan, affected = _plan_change(world, planner, {"web": {"port": 9001}})
    assert affected == ["web"]
    assert set(plan.services) == {"web"}
    assert plan.services["web"].because == ["web.port"]

    plan, affected = _plan_change(world, planner, {"db": {"name": "shop"}})
    assert affected == ["db"]
    assert set(plan.services) == {"db"}

    # nobody reads the admin password: nothing to render, nothing to reload
    plan, affected = _plan_change(world, planner, {"web": {"admin_password": "An0ther-passw0rd"}})
    assert affected == []
    assert plan.services == {}


def test_a_service_not_rendered_yet_is_always_affected(world: SyncWorld) -> None:
    world.standard()
    planner = _planner(world)
    assert planner.affected({("web", "motd")}) == ["web", "db"]  # nothing rendered: both may read it
    planner.plan(world.core.config.snapshot(), services=["web"])
    assert planner.affected({("web", "motd")}) == ["web", "db"]  # db still unknown
    planner.plan(world.core.config.snapshot(), services=["db"])
    assert planner.affected({("web", "motd")}) == ["web"]


def test_a_template_records_what_it_reads(world: SyncWorld) -> None:
    world.template("site.conf.j2", "listen {{ settings.web.port }};\n# {{ settings.db.name }}\n")
    world.manifest({"site": {"files": [{"path": str(world.path("web/site.conf")), "template": "site.conf.j2"}],
                             "reload": world.exec_reload("site")},
                    "web": {"files": [{"path": str(world.path("web/app.json")), "mode": "merge",
                                       "map": {"server.port": "${web.port}"}}]}})
    planner = _planner(world)
    plan, affected = _plan_change(world, planner, {"db": {"name": "shop"}})
    assert affected == ["site"]
    assert "+# shop" in plan.services["site"].files[0].diff()


# -- how strong an action -----------------------------------------------------------------------


def test_the_level_is_the_strongest_apply_of_the_changed_keys_the_service_read(world: SyncWorld) -> None:
    _levels_manifest(world)
    planner = _planner(world)
    _write_renders(planner.plan(world.core.config.snapshot()))

    plan, _ = _plan_change(world, planner, {"web": {"motd": "maintenance at 6"}})
    web = plan.services["web"]
    assert (web.changed, web.level, web.action.strategy) == (True, "hot", "none"), "hot: no action"
    assert web.to_dict()["action"] == "none"

    plan, _ = _plan_change(world, planner, {"web": {"title": "Shop"}})
    assert plan.services["web"].level == "reload"
    assert _command_name(plan, "web") == "web-reload"

    plan, _ = _plan_change(world, planner, {"web": {"port": 9001}})
    assert plan.services["web"].level == "restart"
    assert _command_name(plan, "web") == "web-restart"

    plan, _ = _plan_change(world, planner, {"web": {"title": "Shop", "motd": "hi"}})
    assert (plan.services["web"].level, _command_name(plan, "web")) == ("reload", "web-reload")

    plan, _ = _plan_change(world, planner, {"web": {"title": "Shop", "port": 9001, "motd": "hi"}})
    assert (plan.services["web"].level, _command_name(plan, "web")) == ("restart", "web-restart")
    assert sorted(plan.services["web"].because) == ["web.motd", "web.port", "web.title"]


def test_a_hot_change_gets_the_action_declared_for_hot(world: SyncWorld) -> None:
    _levels_manifest(world, hot=world.exec_reload("web-hot"))
    planner = _planner(world)
    _write_renders(planner.plan(world.core.config.snapshot()))
    plan, _ = _plan_change(world, planner, {"web": {"motd": "maintenance at 6"}})
    assert (plan.services["web"].level, _command_name(plan, "web")) == ("hot", "web-hot")


def test_one_action_serves_every_level_beyond_hot(world: SyncWorld) -> None:
    world.standard()
    planner = _planner(world)
    _write_renders(planner.plan(world.core.config.snapshot()))
    for changes in ({"web": {"title": "Shop"}}, {"web": {"port": 9001}}):
        plan, _ = _plan_change(world, planner, changes)
        assert _command_name(plan, "web") == "web"
    plan, _ = _plan_change(world, planner, {"web": {"motd": "x"}})
    assert plan.services["web"].action.strategy == "none"


def test_a_plan_with_no_earlier_version_restarts_what_differs(world: SyncWorld) -> None:
    _levels_manifest(world)
    planner = _planner(world)
    plan = planner.plan(world.core.config.snapshot())
    assert plan.services["web"].changed
    assert (plan.services["web"].level, _command_name(plan, "web")) == ("restart", "web-restart")
    _write_renders(plan)
    again = _planner(world).plan(world.core.config.snapshot())
    assert not again.changed(), "files at their render: nothing to do"
    assert again.to_dict()["services"][0]["action"] == "none"


# -- diffs ---------------------------------------------------------------------------------------


def _secrets_manifest(world: SyncWorld) -> Path:
    env = world.path("web/secrets.env")
    world.manifest({"web": {"files": [
        {"path": str(world.path("web/app.json")), "mode": "merge", "map": {"server.port": "${web.port}"}},
        {"path": str(env), "map": {"ADMIN_PASSWORD": "${web.admin_password}", "API_TOKEN": "${web.api_token}",
                                   "PORT": "${web.port}"}},
    ], "reload": world.exec_reload("web")}})
    return env


def test_diffs_mask_secrets_and_a_secrets_schema_default(world: SyncWorld) -> None:
    _secrets_manifest(world)
    planner = _planner(world)
    first = planner.plan(world.core.config.snapshot())
    diff = first.services["web"].files[1].diff()
    assert "+PORT=8081" in diff
    assert ADMIN_PASSWORD not in diff
    assert API_TOKEN_DEFAULT not in diff, "the schema default of a secret is a secret too"
    assert diff.count(MASK) == 2
    assert ADMIN_PASSWORD.encode() in first.services["web"].files[1].after, "the file itself holds the plaintext"
    _write_renders(first)

    new_password = "N3w-secret-Pass-99"
    plan, affected = _plan_change(world, planner, {"web": {"admin_password": new_password}})
    assert affected == ["web"]
    text = json.dumps(plan.to_dict())
    assert new_password not in text
    assert ADMIN_PASSWORD not in text
    assert API_TOKEN_DEFAULT not in text
    diff = plan.services["web"].files[1].diff()
    assert f"-ADMIN_PASSWORD={MASK}" in diff, diff
    assert f"+ADMIN_PASSWORD={MASK}" in diff, diff
    assert plan.services["web"].files[1].holds_secret
    assert not plan.services["web"].files[0].holds_secret


def test_a_render_error_refuses_the_plan_without_showing_a_secret(world: SyncWorld) -> None:
    world.template("bad.j2", "{{ settings.web.admin_password }} {{ settings.web.nonexistent }}\n")
    world.manifest({"web": {"files": [{"path": str(world.path("web/bad.conf")), "template": "bad.j2"}]}})
    plan = _planner(world).plan(world.core.config.snapshot())
    assert plan.refused
    assert "service web, file 1" in plan.errors[0]
    assert "nonexistent" in plan.errors[0]
    assert ADMIN_PASSWORD not in json.dumps(plan.to_dict())


# -- apphub plan -------------------------------------------------------------------------------


def _rendered(world: SyncWorld) -> None:
    """The standard services with their files at the render, as after a first sync."""
    world.standard()
    _write_renders(_planner(world).plan(world.core.config.snapshot()))


def _files_state(world: SyncWorld) -> dict[str, tuple[bytes, int]]:
    found = {}
    for path in [world.path("web/app.json"), world.path("db/db.ini"), world.data.config_ini]:
        found[str(path)] = (path.read_bytes(), os.stat(path).st_mtime_ns)
    return found


def test_apphub_plan_shows_the_diff_and_action_and_writes_nothing(world: SyncWorld, tmp_path: Path) -> None:
    _rendered(world)
    before = _files_state(world)
    result = run_apphub("plan", "--set", "web.port=9001", data=world.data, home=tmp_path / "xdg")
    assert result.returncode == 0, result.stderr
    assert "web: exec (restart: web.port)" in result.stdout
    assert '-    "port": 8081,' in result.stdout
    assert '+    "port": 9001,' in result.stdout
    assert "db: unchanged" in result.stdout
    assert _files_state(world) == before, "a plan touches nothing"
    assert world.reloads() == []

    result = run_apphub("plan", "--set", "web.port=9001", "--json", data=world.data, home=tmp_path / "xdg")
    assert result.returncode == 0, result.stderr
    services = {s["service"]: s for s in json.loads(result.stdout)["services"]}
    assert services["web"]["changed"]
    assert services["web"]["action"] == "exec"
    assert services["web"]["level"] == "restart"
    assert not services["db"]["changed"]
    assert services["db"]["action"] == "none"
    assert _files_state(world) == before


def test_apphub_plan_of_a_secret_masks_it(world: SyncWorld, tmp_path: Path) -> None:
    _secrets_manifest(world)
    _write_renders(_planner(world).plan(world.core.config.snapshot()))
    new_password = "N3w-secret-Pass-99"
    result = run_apphub("plan", "--set", f"web.admin_password={new_password}", data=world.data, home=tmp_path / "xdg")
    assert result.returncode == 0, result.stderr
    assert f"+ADMIN_PASSWORD={MASK}" in result.stdout
    assert new_password not in result.stdout + result.stderr
    assert ADMIN_PASSWORD not in result.stdout + result.stderr


def test_apphub_plan_refuses_an_invalid_change(world: SyncWorld, tmp_path: Path) -> None:
    _rendered(world)
    before = _files_state(world)
    result = run_apphub("plan", "--set", "web.port=99999", data=world.data, home=tmp_path / "xdg")
    assert result.returncode == 1
    assert "[web] port" in result.stderr
    assert _files_state(world) == before

