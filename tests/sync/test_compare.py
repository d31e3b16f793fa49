"""SyncEngine.compare (GET /api/v1/settings/diff?services=true): what going from one version to
another does to each service, both versions rendered, as the sync itself would do it; and the
status the console shows when a round fails unexpectedly."""

from __future__ import annotations

from pathlib import Path

import pytest

from apphub.core import Core
from apphub.sync.apply import Applier
from apphub.sync.engine import SyncEngine
from tests.sync.conftest import SyncWorld, make_world
from tests.sync.test_env_engine import FakeContainer


@pytest.fixture
def world(core: Core, tmp_path: Path) -> SyncWorld:
    return make_world(core, tmp_path)


def test_a_container_environment_change_is_the_recreate_the_sync_does(world: SyncWorld) -> None:
    box = FakeContainer()
    world.manifest({"app": {"inject": {"container": "box", "timeout": 2}, "env": {"APP_PORT": "${web.port}"}}})
    engine = SyncEngine(world.core, box.backends, watch=False)
    engine.start()
    try:
        world.sync_now(engine)
        old = world.core.config.snapshot()
        world.set("web", port=9107)
        new = world.core.config.snapshot()

        [app] = engine.compare(old, new).to_dict()["services"]
        report = world.sync_now(engine)
    finally:
        engine.stop()

    assert report.outcomes["app"].action == "container-recreate"
    assert (app["changed"], app["action"]) == (True, "container-recreate")
    assert app["env"]["changes"] == [{"name": "APP_PORT", "change": "changed", "before": "8081", "after": "9107",
                                      "secret": False}]
    assert "pending" not in app  # no engine was asked: both sides are renders


def test_a_service_the_old_version_cannot_render_is_left_out_with_why(world: SyncWorld) -> None:
    world.template("web.json.j2", '{"title": "{{ settings.web.title }}", "port": {{ settings.web.port }}}\n')
    target = world.path("web/raw.json")
    world.manifest({"web": {"files": [{"path": str(target), "format": "json", "template": "web.json.j2"}],
                            "reload": world.exec_reload("web")}})
    with world.engine(watch=False) as engine:
        world.set("web", title='Bad "quote', port=8100)  # breaks the raw JSON: the sync refuses it
        old = world.core.config.snapshot()
        world.set("web", title="Later", port=8300)
        world.sync_now(engine)  # the disk holds 8300
        world.set("web", title="Good", port=8200)
        new = world.core.config.snapshot()

        compared = engine.compare(old, new).to_dict()

    assert compared["services"] == []  # never a diff against the disk in its place
    [note] = compared["notes"]
    assert note.startswith(f"service web is left out: version {old.version[:12]} cannot be rendered for it")


def test_a_substituted_value_takes_the_action_of_its_cause(world: SyncWorld) -> None:
    world.standard()
    with world.engine(watch=False) as engine:
        world.set("db", name="${web.title}-db")
        world.sync_now(engine)
        old = world.core.config.snapshot()
        world.set("web", title="Renamed")
        new = world.core.config.snapshot()

        db = engine.compare(old, new).services["db"]
        report = world.sync_now(engine)

    assert db.changed
    assert db.action.strategy == report.outcomes["db"].action


def test_an_unexpected_error_in_an_apply_leaves_no_service_applying(world: SyncWorld,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    world.standard()
    with world.engine(watch=False) as engine:
        def broken(*_: object) -> None:  # a bug, a MemoryError... in the middle of the apply
            raise KeyError("unexpected")

        monkeypatch.setattr(Applier, "_swap_all", broken)
        world.set("web", port=8111)
        report = world.sync_now(engine)

        web = engine.status.service("web")
        assert report.refused == ["internal error in the sync engine; see the apphub log"]
        assert (web.state, web.last_error) == ("interrupted", report.refused[0])
        assert engine.status.engine.refused == report.refused
