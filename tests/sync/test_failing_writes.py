"""The sync thread never acts on a version whose write fails: between the rename of config.ini and
its undo (the folder flush failed), the new bytes are on disk for a moment, and a round that read
them would render and reload the services for a write reported as not made.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import apphub.store.atomic
from apphub.errors import DataDirError
from tests.sync.conftest import SyncWorld, wait_until


def test_a_round_during_a_failing_write_applies_nothing_of_it(world: SyncWorld,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    world.standard()
    data_folder = world.data.root
    real = apphub.store.atomic._fsync_directory
    flushing, release = threading.Event(), threading.Event()

    def hanging_then_failing(folder: Path) -> None:
        staging = any(path.name.startswith(".config.ini.") for path in folder.iterdir())
        if folder != data_folder or staging:  # the services' folders, or a staged file's name
            real(folder)
            return
        flushing.set()
        release.wait(10)
        raise OSError(errno.EIO, "Input/output error")

    with world.engine() as engine:
        world.settle(engine)
        reloads = len(world.reloads())
        monkeypatch.setattr(apphub.store.atomic, "_fsync_directory", hanging_then_failing)
        failures: list[BaseException] = []

        def write() -> None:
            try:
                world.set("web", port=9999)
            except DataDirError as exc:
                failures.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        assert flushing.wait(10)
        assert "port = 9999" in world.data.config_ini.read_text()  # the moment a round must not use
        ticket = engine.request(immediate=True)
        time.sleep(0.5)  # time enough for a round that did not wait for the writer to apply its bytes
        release.set()
        writer.join(10)
        monkeypatch.undo()
        assert engine.wait(ticket, 10) is not None
        world.settle(engine)

    assert [type(failure) for failure in failures] == [DataDirError]
    assert "port = 9999" not in world.data.config_ini.read_text()
    assert '"port": 9999' not in world.path("web/app.json").read_text()
    assert len(world.reloads()) == reloads, world.reloads()[reloads:]


def test_a_writer_stopped_holding_the_lock_neither_stalls_a_round_nor_gets_config_ini_refused(
        world: SyncWorld) -> None:
    """A CLI write suspended with Ctrl-Z holds config.ini's lock. The round waits a moment, says
    config.ini is busy and runs again on a timer; config.ini is not refused and nothing is audited
    as invalid (it used to wait 10 s, then refuse config.ini with a `settings.invalid` event). Once
    the writer goes, a hand edit made meanwhile is applied and audited."""
    world.standard()
    lock = world.data.lock_for(world.data.config_ini)
    with world.engine() as engine:
        world.settle(engine)
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys, time;"
             " fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX);"
             " print('held', flush=True); time.sleep(30)", str(lock)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            world.data.config_ini.write_text(world.data.config_ini.read_text().replace("port = 8081", "port = 8181"))
            started = time.monotonic()
            report = engine.wait(engine.request(immediate=True, full=True), 20)
            took = time.monotonic() - started
            assert report is not None
            assert [reason.split(" (")[0] for reason in report.refused] == ["config.ini is busy"]
            assert took < 5, f"the round waited {took:.1f} s for the lock"
            assert engine.status.engine.config_error is None
            assert '"port": 8181' not in world.path("web/app.json").read_text()
        finally:
            holder.kill()
            holder.wait()
            holder.stdout.close()
        wait_until(lambda: '"port": 8181' in world.path("web/app.json").read_text(), 10, "the retry applying the edit")
        assert engine.status.engine.config_error is None
    assert world.audit("settings.invalid") == []
    assert [(row["old"], row["new"]) for row in world.audit_changes("settings.file")] == [("8081", "8181")]
