"""The manifest (`DATA/services.yaml`): what is refused and how it is named, and what happens
to a running engine and to `apphub check` when the file an operator saved is broken.

An operator who gets a manifest wrong must be told which service, which file (its place in the
list and its path) and which field, and the services must keep running on the last good one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from apphub.errors import ManifestError
from apphub.sync.manifest import load_manifest
from tests.cli.conftest import run_apphub
from tests.sync.conftest import SyncWorld, wait_until


def _good_file(world: SyncWorld, name: str = "web/app.json") -> dict[str, Any]:
    return {"path": str(world.path(name)), "map": {"server.port": "${web.port}"}}


def _refusal(world: SyncWorld, services: dict[str, Any], roots: list[str] | None = None, **top: Any) -> str:
    """Write services.yaml and load it as the engine does; the refusal's text."""
    world.manifest(services, **top)
    with pytest.raises(ManifestError) as caught:
        load_manifest(world.data.root / "services.yaml", roots if roots is not None else [str(world.root)],
                      world.data.root)
    return str(caught.value)


def _assert_names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} is not named in:\n{message}"


def test_a_good_manifest_loads(world: SyncWorld) -> None:
    world.standard()
    manifest = load_manifest(world.data.root / "services.yaml", [str(world.root)], world.data.root)
    assert list(manifest.services) == ["web", "db"]
    assert manifest.services["web"].files[0].format == "json"  # told by the extension


def test_a_file_whose_format_nothing_tells_is_refused(world: SyncWorld) -> None:
    path = str(world.path("web/app.conf"))
    message = _refusal(world, {"web": {"files": [_good_file(world), {"path": path, "map": {"a": "${web.port}"}}]}})
    _assert_names(message, "service web", f"file 2 ({path})", "`format`")


def test_map_and_template_together_are_refused(world: SyncWorld) -> None:
    path = str(world.path("web/app.json"))
    message = _refusal(world, {"web": {"files": [{"path": path, "map": {"a": "${web.port}"}, "template": "x.j2"}]}})
    _assert_names(message, "service web", f"file 1 ({path})", "`map`", "`template`")


def test_an_unknown_reload_strategy_is_refused(world: SyncWorld) -> None:
    message = _refusal(world, {"web": {"files": [_good_file(world)],
                                       "reload": {"strategy": "teleport", "command": ["true"]}}})
    _assert_names(message, "service web", "reload", "strategy", "teleport")


def test_depends_on_an_unknown_service_is_refused(world: SyncWorld) -> None:
    message = _refusal(world, {"web": {"files": [_good_file(world)], "depends_on": ["cache"]}})
    _assert_names(message, "service web", "depends_on", "'cache'")


def test_a_dependency_cycle_is_refused(world: SyncWorld) -> None:
    message = _refusal(world, {
        "web": {"files": [_good_file(world)], "depends_on": ["db"]},
        "db": {"files": [_good_file(world, "db/db.json")], "depends_on": ["web"]},
    })
    _assert_names(message, "depends_on", "cycle", "db", "web")


def test_two_services_writing_one_file_are_refused(world: SyncWorld) -> None:
    message = _refusal(world, {"web": {"files": [_good_file(world)]}, "db": {"files": [_good_file(world)]}})
    _assert_names(message, "web", "db", str(world.path("web/app.json")))


def test_a_path_outside_the_roots_is_refused(world: SyncWorld, tmp_path: Path) -> None:
    outside = str(tmp_path / "elsewhere" / "app.json")
    message = _refusal(world, {"web": {"files": [_good_file(world), {"path": outside, "map": {"a": "${web.port}"}}]}})
    _assert_names(message, "service web", f"file 2 ({outside})", "path", "not under a root", str(world.root))


def test_no_roots_at_all_refuses_every_path(world: SyncWorld) -> None:
    message = _refusal(world, {"web": {"files": [_good_file(world)]}}, roots=[])
    _assert_names(message, "service web", "file 1", "none set")


def test_a_path_inside_the_data_folder_is_refused_even_under_a_root(world: SyncWorld, tmp_path: Path) -> None:
    inside = str(world.data.root / "config.json")
    # tmp_path holds both the data folder and srv: a root over both must not open the data folder
    message = _refusal(world, {"web": {"files": [{"path": inside, "map": {"a": "${web.port}"}}]}},
                       roots=[str(tmp_path)])
    _assert_names(message, "service web", f"file 1 ({inside})", "path", "inside the data folder")


def test_a_symlink_leading_outside_the_roots_is_refused(world: SyncWorld, tmp_path: Path) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    os.symlink(outside, world.path("link"))
    through_link = str(world.path("link/passwd.json"))
    message = _refusal(world, {"web": {"files": [{"path": through_link, "map": {"a": "${web.port}"}}]}})
    _assert_names(message, "service web", f"file 1 ({through_link})", "not under a root")


@pytest.mark.parametrize(("check", "why"), [
    ("nginx -t -c /etc/nginx.conf", "{staged}"),
    ("sh -c 'unbalanced {staged}", "cannot be split into words"),
])
def test_a_bad_check_command_is_refused(world: SyncWorld, check: str, why: str) -> None:
    path = str(world.path("web/app.json"))
    message = _refusal(world, {"web": {"files": [{"path": path, "map": {"a": "${web.port}"}, "check": check}]}})
    _assert_names(message, "service web", f"file 1 ({path})", "check", why)


def test_a_template_name_with_dotdot_is_refused(world: SyncWorld) -> None:
    path = str(world.path("web/nginx.conf"))
    message = _refusal(world, {"web": {"files": [{"path": path, "template": "../../.apphub/secret.key"}]}})
    _assert_names(message, "service web", f"file 1 ({path})", "template", "'..'")


def test_every_problem_is_listed_at_once(world: SyncWorld, tmp_path: Path) -> None:
    outside = str(tmp_path / "elsewhere.json")
    message = _refusal(world, {
        "web": {"files": [{"path": str(world.path("web/a.conf")), "map": {"a": "${web.port}"}}]},
        "db": {"files": [_good_file(world, "db/db.json")], "reload": {"strategy": "teleport"}},
    })
    _assert_names(message, "service web", "`format`", "service db", "teleport")
    message = _refusal(world, {"web": {"files": [{"path": outside, "map": {"a": "${web.port}"}}]},
                               "db": {"files": [{"path": str(world.data.root / "x.json"),
                                                 "map": {"a": "${db.port}"}}]}},
                       roots=[str(world.root)])
    _assert_names(message, "service web", outside, "service db", "inside the data folder")


# -- a running engine and the CLI ---------------------------------------------------------------


def test_a_broken_manifest_leaves_the_last_good_one_in_force(world: SyncWorld) -> None:
    world.standard()
    with world.engine() as engine:
        assert engine.status.engine.manifest_error is None
        world.manifest({"web": {"files": [_good_file(world)], "reload": {"strategy": "teleport"}}})
        wait_until(lambda: engine.status.engine.manifest_error is not None, 3, "the manifest refusal")
        error = engine.status.engine.manifest_error
        assert error is not None
        _assert_names(error, "services.yaml", "service web", "teleport")
        assert world.audit("sync.manifest_refused"), "a refused manifest is audited"
        reloads = len(world.reloads("web"))

        # the old manifest still applies a change: web's file, web's exec reload
        world.set("web", port=9001)
        wait_until(lambda: '"port": 9001' in world.path("web/app.json").read_text(), 3, "the change to app.json")
        wait_until(lambda: len(world.reloads("web")) == reloads + 1, 3, "web's reload")
        assert engine.status.engine.manifest_error is not None, "still broken, still said"

        # fixed: the error goes away, and the new manifest is in force (db is gone from it)
        world.manifest({"web": {"files": [_good_file(world)], "reload": world.exec_reload("web")}})
        wait_until(lambda: engine.status.engine.manifest_error is None, 3, "the fixed manifest")
        wait_until(lambda: [s["service"] for s in engine.status_dict()["services"]] == ["web"], 3,
                   "the status to follow the new manifest")


def test_a_manifest_that_is_not_yaml_is_refused_with_the_reason(world: SyncWorld) -> None:
    world.standard()
    with world.engine() as engine:
        (world.data.root / "services.yaml").write_text("services:\n  web: [unclosed\n", encoding="utf-8")
        wait_until(lambda: engine.status.engine.manifest_error is not None, 3, "the manifest refusal")
        assert "not valid YAML" in str(engine.status.engine.manifest_error)
        world.set("db", port=5999)
        wait_until(lambda: "port = 5999" in world.path("db/db.ini").read_text(), 3, "db.ini to change")


def test_apphub_check_reports_a_broken_manifest(world: SyncWorld, tmp_path: Path) -> None:
    outside = str(tmp_path / "elsewhere.json")
    world.manifest({"web": {"files": [_good_file(world), {"path": outside, "map": {"a": "${web.port}"}}]}})
    result = run_apphub("check", data=world.data, home=tmp_path / "xdg")
    assert result.returncode == 1, result
    _assert_names(result.stderr, "services.yaml", "service web", f"file 2 ({outside})", "path")

    world.standard()
    result = run_apphub("check", data=world.data, home=tmp_path / "xdg")
    assert result.returncode == 0, result.stderr
