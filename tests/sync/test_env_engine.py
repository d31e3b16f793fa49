"""The sync engine and a container's environment, with an in-package fake of the engine's side (a
container whose env can be read and recreated, an engine that can be down, a recreate that can be
undone): the corner cases a real engine does not produce on demand. The real thing is in
tests/integration/test_env_containers.py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from apphub.envvars.store import EnvValue
from apphub.errors import BackendUnavailable
from apphub.reload.base import ActionSpec, Backends, ContainerEnv, Reloaders
from apphub.reload.health import HealthChecker, HealthSpec
from apphub.reload.recreate import ContainerRecreateAction
from apphub.sync import apply as apply_module
from apphub.sync.engine import SyncEngine
from apphub.sync.settings import SyncSettings
from tests.sync.conftest import TEST_ACTOR, SyncWorld, wait_until

SECRET = "it's $3cr3tQZX 100% \"q\""


@dataclass
class FakeUndo:
    box: FakeContainer
    previous: dict[str, str]
    calls: list[str]

    def keep(self) -> None:
        self.calls.append("keep")

    def undo(self) -> None:
        self.calls.append("undo")
        self.box.env = dict(self.previous)
        self.box.running = True


@dataclass
class FakeContainer:
    """One container `box`: its env, whether it runs, and what was done to it."""

    env: dict[str, str] = field(default_factory=lambda: {"PATH": "/bin"})
    managed: frozenset[str] = frozenset()
    running: bool = True
    down: bool = False  # the engine does not answer
    fail_recreates: int = 0  # the next recreates find the engine down
    crash_on: str | None = None  # a value of MODE the new container exits on
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reader(self, name: str) -> ContainerEnv | None:
        if self.down:
            raise BackendUnavailable(f"the container engine cannot be reached (asked for {name})")
        return ContainerEnv(dict(self.env), self.managed)

    def recreate(self, service: str, action: ActionSpec) -> FakeUndo:
        assert isinstance(action, ContainerRecreateAction)
        self.calls.append("recreate")
        if self.down or self.fail_recreates:
            self.fail_recreates = max(0, self.fail_recreates - 1)
            raise BackendUnavailable(f"service {service}: container-recreate: the engine is down")
        undo = FakeUndo(self, dict(self.env), self.calls)
        for name in action.unset:
            self.env.pop(name, None)
        self.env.update(action.env)
        self.managed = frozenset(action.env)
        self.running = self.crash_on is None or self.env.get("MODE") != self.crash_on
        return undo

    def restart(self, service: str, action: ActionSpec) -> None:
        self.calls.append("restart")

    def backends(self, settings: SyncSettings) -> Backends:
        container = self

        class Probe:
            def check(self, service: str, spec: HealthSpec) -> str | None:
                return None if container.running else f"container {spec.container} is exited (exit code 3)"

        return Backends(Reloaders({"container-recreate": self.recreate, "container-restart": self.restart}),
                        HealthChecker({"container": Probe()}), self.reader, lambda names: [])


@pytest.fixture
def box() -> FakeContainer:
    return FakeContainer()


def engine_for(world: SyncWorld, box: FakeContainer, **service: Any) -> SyncEngine:
    world.manifest({"app": {"inject": {"container": "box", "timeout": 2}, **service}, "plain": {
        "files": [{"path": str(world.path("plain.json")), "map": {"port": "${web.port}"}}]}})
    engine = SyncEngine(world.core, box.backends, watch=False)
    engine.start()
    wait_until(lambda: engine.status.engine.syncs >= 1, 10, "the first sync")
    return engine


def test_a_retry_after_the_engine_was_down_recreates_and_is_no_drift(world: SyncWorld, box: FakeContainer) -> None:
    engine = engine_for(world, box, reload={"strategy": "container-restart", "container": "box"})
    try:
        box.fail_recreates = 1
        world.core.envvars.set("app", {"FOO": EnvValue("bar")}, TEST_ACTOR)
        first = world.sync_now(engine)
        assert (first.outcomes["app"].result, first.outcomes["app"].action) == ("failed", "container-recreate")
        wait_until(lambda: box.env.get("FOO") == "bar", 5, "the retry's recreate")
        assert "restart" not in box.calls  # a restart keeps the old env: never reported as applying it
        wait_until(lambda: engine.status.service("app").state == "applied", 5, "the service applied")
        for _ in range(2):
            report = world.sync_now(engine, full=True)
            assert report.outcomes["app"].result == "unchanged"
        assert engine.status.service("app").state == "applied"
        assert world.audit("sync.drift") == []
    finally:
        engine.stop()


def test_an_engine_that_cannot_be_asked_is_pending_not_drift(world: SyncWorld, box: FakeContainer) -> None:
    engine = engine_for(world, box)
    try:
        box.down = True
        world.core.envvars.set("app", {"FOO": EnvValue("bar")}, TEST_ACTOR)
        for _ in range(2):
            report = world.sync_now(engine, full=True)
            assert report.outcomes["app"].result == "unchanged", report.outcomes["app"]
        status = engine.status.service("app")
        assert "cannot be compared now" in (status.pending or "")
        assert status.state != "drifted"
        assert world.audit("sync.drift") == []
        assert box.calls == []
        box.down = False
        wait_until(lambda: box.env.get("FOO") == "bar", 5, "the recreate once the engine answers")
        wait_until(lambda: engine.status.service("app").pending is None, 5, "nothing pending")
    finally:
        engine.stop()


def test_without_a_health_probe_a_crashed_container_is_put_back(world: SyncWorld, box: FakeContainer) -> None:
    box.crash_on = "crash"
    engine = engine_for(world, box)  # no `health:` in the manifest
    try:
        world.core.envvars.set("app", {"MODE": EnvValue("crash")}, TEST_ACTOR)
        report = world.sync_now(engine)
        outcome = report.outcomes["app"]
        assert (outcome.result, outcome.action) == ("failed", "container-recreate"), outcome
        assert "is exited" in (outcome.error or "")
        assert box.calls == ["recreate", "undo"]
        assert "MODE" not in box.env
        assert box.running
    finally:
        engine.stop()


def test_the_old_container_goes_back_even_when_a_file_cannot(world: SyncWorld, box: FakeContainer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    box.crash_on = "crash"
    engine = engine_for(world, box, env_file=str(world.path("app/.env")))
    try:
        monkeypatch.setattr(apply_module, "_restore_file", lambda file: f"{file.spec.path} failed: disk gone")
        world.core.envvars.set("app", {"MODE": EnvValue("crash")}, TEST_ACTOR)
        outcome = world.sync_now(engine).outcomes["app"]
        assert outcome.result == "failed"
        assert "disk gone" in (outcome.error or "")
        assert box.calls[-1] == "undo"
        assert box.running
    finally:
        engine.stop()


def test_a_broken_env_ini_at_start_holds_back_only_the_services_taking_an_environment(
        world: SyncWorld, box: FakeContainer) -> None:
    world.core.data.env_ini.write_text("[app]\n9LIVES = x\n")
    world.set("web", port=8099)
    engine = engine_for(world, box)
    try:
        wait_until(lambda: world.path("plain.json").exists(), 5, "plain's file written")
        assert '"port": 8099' in world.path("plain.json").read_text()
        pending = engine.status.service("app").pending or ""
        assert "waits for a valid env.ini" in pending
        assert "9LIVES" in pending
        assert box.calls == []
    finally:
        engine.stop()


def test_the_plan_masks_a_secret_as_the_env_writers_escape_it(world: SyncWorld, box: FakeContainer) -> None:
    world.manifest({"app": {"env_file": str(world.path("app/.env")),
                            "inject": {"program": "app", "conf": str(world.path("app/program.conf"))}}})
    world.path("app").mkdir(parents=True, exist_ok=True)
    world.path("app/program.conf").write_text("[program:app]\ncommand=/bin/true\n")
    world.core.envvars.set("global", {"LANG": EnvValue("C.UTF-8")}, TEST_ACTOR)
    engine = SyncEngine(world.core, box.backends, watch=False)
    engine.start()
    try:
        wait_until(lambda: engine.status.engine.syncs >= 1, 10, "the first sync")
        env = world.core.envvars.preview("app", {"TOKEN": EnvValue(SECRET.replace('"', ""), secret=True)})
        plan = engine.plan(world.core.config.snapshot(), env)
    finally:
        engine.stop()
    shown = str(plan.to_dict())
    for fragment in ("3cr3tQZX", "100%"):
        assert fragment not in shown, (fragment, shown[max(0, shown.find(fragment) - 300): shown.find(fragment) + 100])
    assert "TOKEN" in shown
