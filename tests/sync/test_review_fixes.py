"""Pins for the defects a review of the sync engine found (each of these failed before its fix):
an error after the swap that escaped the rollback, a swap failing half-way, a symlink leading a
write outside the roots, a FIFO at a target hanging the thread, secrets in plan diffs and in the
log of a successful reload, a shutdown during a gate undoing a good change, and a restart of
apphub re-trying bytes that had failed their gate.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from apphub.db import Database
from apphub.sync.journal import Journal
from apphub.sync.manifest import load_manifest
from apphub.sync.plan import Planner
from tests.sync.conftest import ADMIN_PASSWORD, HttpService, SyncWorld, wait_until


def _journal(world: SyncWorld) -> dict[str, str]:
    database = Database(world.data.database)
    try:
        return {name: entry.state for name, entry in Journal(database).entries().items()}
    finally:
        database.close()


def _two_services(world: SyncWorld, **a_extra: object) -> tuple[Path, Path]:
    """`a` (JSON) and `b` (INI, depends on a), both reading web.title."""
    a, b = world.path("web/app.json"), world.path("db/db.ini")
    world.manifest({
        "a": {"files": [{"path": str(a), "format": "json", "mode": "merge", "map": {"x": "${web.title}"}}],
              "reload": world.exec_reload("a", quote=a), **a_extra},
        "b": {"files": [{"path": str(b), "format": "ini", "mode": "merge", "map": {"s.x": "${web.title}"}}],
              "reload": world.exec_reload("b", quote=b), "depends_on": ["a"]},
    })
    return a, b


def test_an_unexpected_error_in_a_gate_rolls_the_service_back_and_holds_back_its_dependents(
        world: SyncWorld) -> None:
    a, b = _two_services(world)
    with world.engine() as engine:
        world.settle(engine)
        a_before, b_before = a.read_bytes(), b.read_bytes()
        # A probe whose port comes from a text key: not a port, so the probe itself raises.
        _two_services(world, health={"tcp": "127.0.0.1:${web.title}", "timeout": 2})
        world.settle(engine)
        reloads = len(world.reloads())
        world.set("web", title="Other")
        report = world.sync_now(engine)
        assert report.outcomes["a"].result == "failed", report.outcomes["a"]
        assert report.outcomes["b"].result == "failed"
        assert "held back" in (report.outcomes["b"].error or "")
        assert a.read_bytes() == a_before, "both keep their previous files"
        assert b.read_bytes() == b_before, "both keep their previous files"
        assert _journal(world) == {"a": "failed", "b": "failed"}
        assert [r.service for r in world.reloads()[reloads:]] == ["a", "a"], "a reload, and the rollback's"
        for _ in range(3):
            world.sync_now(engine, full=True)
        assert len(world.reloads()) == reloads + 2, "the failed bytes are not tried again and again"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root and chattr")
def test_a_swap_that_fails_half_way_puts_back_the_files_already_swapped(world: SyncWorld) -> None:
    a, b = _two_services(world)
    with world.engine() as engine:
        world.settle(engine)
        a_before = a.read_bytes()
        reloads = len(world.reloads())
        if subprocess.run(["chattr", "+i", str(b)], capture_output=True).returncode != 0:
            pytest.skip("this file system does not take the immutable flag")
        try:
            world.set("web", title="T2")
            report = world.sync_now(engine)
            assert report.refused, report.refused
            assert "put back" in report.refused[0], report.refused
            assert a.read_bytes() == a_before, "a's new file was put back when b's could not be swapped"
            assert len(world.reloads()) == reloads, "nothing is reloaded"
            assert not list(world.root.rglob("*apphub-tmp")), "no temporary file is left"
        finally:
            subprocess.run(["chattr", "-i", str(b)], check=True)
        report = world.sync_now(engine, full=True)
        assert {name: o.result for name, o in report.outcomes.items()} == {"a": "applied", "b": "applied"}
        assert "T2" in a.read_text()
        assert "T2" in b.read_text()


def test_a_symlink_put_at_a_target_does_not_lead_a_write_outside_the_roots(world: SyncWorld,
                                                                            tmp_path: Path) -> None:
    victim = tmp_path / "outside" / "victim.json"
    victim.parent.mkdir()
    victim.write_text('{"important": "do not touch"}\n')
    world.standard()  # web: drift repair
    app = world.path("web/app.json")
    with world.engine() as engine:
        world.settle(engine)
        link = app.with_name("app.json.lnk")
        os.symlink(victim, link)
        os.replace(link, app)
        report = world.sync_now(engine, full=True)
        assert victim.read_text() == '{"important": "do not touch"}\n'
        assert report.refused, report.refused
        assert "not under a root" in report.refused[0], report.refused
        plan = engine.plan(world.core.config.snapshot()).to_dict()
        assert "do not touch" not in json.dumps(plan), "the linked file is not read into a diff either"


def test_a_fifo_at_a_target_is_refused_and_does_not_hang_the_engine(world: SyncWorld) -> None:
    world.standard()
    app = world.path("web/app.json")
    with world.engine() as engine:
        world.settle(engine)
        app.unlink()
        os.mkfifo(app)
        report = world.sync_now(engine, full=True, timeout=5)
        assert report.refused, report.refused
        assert "not a regular file" in report.refused[0], report.refused
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert not any(thread.name == "apphub-sync" and thread.is_alive() for thread in threading.enumerate())


def _secret_planner(world: SyncWorld, path: Path) -> Planner:
    world.manifest({"web": {"files": [{"path": str(path), "format": "json", "mode": "merge",
                                       "map": {"auth.password": "${web.admin_password}"}}]}})
    manifest = load_manifest(world.data.root / "services.yaml", [str(world.root)], world.data.root)
    return Planner(manifest, world.templates, {})


def test_a_json_escaped_secret_is_masked_in_a_plan_diff(world: SyncWorld) -> None:
    secret = 'Pa"ss\\word-99'
    world.set("web", admin_password=secret)
    snapshot = world.core.config.snapshot()
    diff = _secret_planner(world, world.path("web/app.json")).plan(snapshot).services["web"].files[0].diff()
    assert "auth" in diff
    assert "********" in diff
    assert json.dumps(secret)[1:-1] not in diff
    assert secret not in diff


def test_a_secret_no_version_holds_any_more_is_masked_in_a_plan_diff(world: SyncWorld) -> None:
    path = world.path("web/app.json")
    path.write_text(json.dumps({"auth": {"password": "An-Old-Secret-0001"}}) + "\n")
    world.set("web", admin_password="New-Secret-4242")
    snapshot = world.core.config.snapshot()
    diff = _secret_planner(world, path).plan(snapshot, previous=snapshot).services["web"].files[0].diff()
    assert '-{"auth": {"password": "********"}}' in diff, diff
    assert "An-Old-Secret" not in diff
    assert "New-Secret" not in diff


def test_after_a_failed_apply_the_plan_does_not_show_the_secret_the_file_went_back_to(world: SyncWorld) -> None:
    app = world.path("web/app.json")
    world.manifest({"web": {"files": [{"path": str(app), "format": "json", "mode": "merge",
                                       "map": {"auth.password": "${web.admin_password}"}}],
                            "reload": world.exec_reload("web", quote=app, fail_on="New-Secret")}})
    with world.engine() as engine:
        world.set("web", admin_password="New-Secret-4242")
        report = world.sync_now(engine)
        assert report.outcomes["web"].result == "failed"
        assert ADMIN_PASSWORD in app.read_text(), "rolled back to the previous secret"
        diff = engine.plan(world.core.config.snapshot()).to_dict()["services"][0]["files"][0]["diff"]
        assert "password" in diff
        assert ADMIN_PASSWORD not in diff
        assert "New-Secret" not in diff


def test_a_successful_exec_reload_does_not_log_what_the_command_printed(world: SyncWorld,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    app = world.path("web/app.json")
    world.manifest({"web": {"files": [{"path": str(app), "format": "json", "mode": "merge",
                                       "map": {"auth.password": "${web.admin_password}"}}],
                            "reload": {"strategy": "exec", "command": ["cat", str(app)]}}})
    caplog.set_level(logging.DEBUG)
    with world.engine() as engine:
        world.settle(engine)
    assert any("succeeded" in record.getMessage() for record in caplog.records)
    assert not [record.getMessage() for record in caplog.records if ADMIN_PASSWORD in record.getMessage()]


def test_stopping_during_a_health_gate_keeps_the_change_and_the_next_start_finishes_it(
        world: SyncWorld, http_service: Callable[[], HttpService]) -> None:
    service = http_service()
    app = world.path("web/app.json")
    world.manifest({"web": {"files": [{"path": str(app), "format": "json", "mode": "merge",
                                       "map": {"title": "${web.title}"}}],
                            "reload": world.exec_reload("web", quote=app),
                            "health": {"http": f"{service.url}/health", "timeout": 20, "interval": 0.1}}})
    with world.engine() as engine:
        world.settle(engine)
        reloads = len(world.reloads())
        service.health_status = 503  # slow to come back after its reload
        world.set("web", title="NewTitle")
        wait_until(lambda: len(world.reloads()) > reloads, 5, "the reload")
        time.sleep(0.3)
    assert '"title": "NewTitle"' in app.read_text(), "a stop is not a failure: the change stays"
    assert len(world.reloads()) == reloads + 1, "and the service is not reloaded back"
    assert _journal(world) == {"web": "applying"}
    service.health_status = 200
    with world.engine() as engine:  # the next start reloads it and runs its gate
        world.settle(engine)
        assert len(world.reloads()) == reloads + 2
        assert _journal(world) == {"web": "applied"}
        assert engine.status_dict()["services"][0]["state"] == "applied"


def test_a_restart_with_no_change_does_not_retry_bytes_that_failed_their_gate(world: SyncWorld) -> None:
    app = world.path("web/app.json")
    world.manifest({"web": {"files": [{"path": str(app), "format": "json", "mode": "merge",
                                       "map": {"title": "${web.title}"}}],
                            "reload": world.exec_reload("web", quote=app, fail_on="Broken")}})
    with world.engine() as engine:
        world.set("web", title="Broken")
        assert world.sync_now(engine).outcomes["web"].result == "failed"
        world.settle(engine)
    reloads = len(world.reloads())
    with world.engine() as engine:  # apphub restarted, nothing changed
        world.settle(engine)
        status = engine.status_dict()["services"][0]
        assert status["state"] == "failed", status
        assert "Broken" in (status["last_error"] or ""), status
    assert len(world.reloads()) == reloads, "zero reloads"
