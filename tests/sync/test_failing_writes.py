"""The sync thread never acts on a version whose write fails: between the rename of config.ini and
its undo (the folder flush failed), the new bytes are on disk for a moment, and a round that read
them would render and reload the services for a write reported as not made.
"""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

import apphub.store.atomic
from apphub.errors import DataDirError
from tests.sync.conftest import SyncWorld


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
