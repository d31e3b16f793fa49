"""The target-folder reader on the real file system: every way of changing a target file is
reported with the target's real path, other files in the same folder are not, a write through
`apphub.store.atomic` is reported once (its temporary file never), and it stops promptly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apphub.store.atomic import atomic_write
from apphub.sync.watcher import TargetWatch


class Seen:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, kind: str, path: str) -> None:
        assert kind == "target"
        with self._changed:
            self.paths.append(path)
            self._changed.notify_all()

    def wait_for(self, path: Path, timeout: float = 2.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: str(path) in self.paths, timeout):
                raise AssertionError(f"no event for {path} within {timeout} s; saw {self.paths}")

    def quiet(self, seconds: float = 0.3) -> list[str]:
        """What arrives in the next `seconds`."""
        before = len(self.paths)
        time.sleep(seconds)
        return self.paths[before:]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    folder = tmp_path / "web"
    folder.mkdir()
    path = folder / "app.json"
    path.write_text('{"port": 1}\n')
    return path


@pytest.fixture
def seen(target: Path) -> Iterator[Seen]:
    seen = Seen()
    watch = TargetWatch(seen)
    watch.start()
    watch.add([str(target)])
    try:
        yield seen
    finally:
        watch.stop()


def _in_place(path: Path) -> None:
    with open(path, "r+") as handle:
        handle.write('{"port": 2}\n')
        handle.truncate()


def _rename_over(path: Path) -> None:
    temporary = path.with_name(".app.json.swp")
    temporary.write_text('{"port": 3}\n')
    os.rename(temporary, path)


def _sed(path: Path) -> None:
    subprocess.run([shutil.which("sed") or "sed", "-i", "s/1/4/", str(path)], check=True)


def _cp(path: Path) -> None:
    source = path.parent.parent / "other.json"
    source.write_text('{"port": 5}\n')
    subprocess.run(["cp", str(source), str(path)], check=True)


def _delete(path: Path) -> None:
    path.unlink()


def _rename_away(path: Path) -> None:
    os.rename(path, path.with_name("app.json.bak"))


EDITS: dict[str, Callable[[Path], None]] = {
    "write in place": _in_place,
    "temp file renamed over it": _rename_over,
    "sed -i": _sed,
    "cp over it": _cp,
    "delete": _delete,
    "renamed away": _rename_away,
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_way_of_changing_a_target_is_reported(target: Path, seen: Seen, edit: str) -> None:
    EDITS[edit](target)
    seen.wait_for(target)
    assert set(seen.paths) == {str(target)}, "only the target, never a temporary or backup name"


def test_other_files_in_the_folder_are_not_reported(target: Path, seen: Seen) -> None:
    (target.parent / "unrelated.txt").write_text("x")
    os.rename(target.parent / "unrelated.txt", target.parent / "renamed.txt")
    assert seen.quiet() == []


def test_an_atomic_write_is_reported_once(target: Path, seen: Seen) -> None:
    atomic_write(target, b'{"port": 9}\n')
    seen.wait_for(target)
    assert seen.paths + seen.quiet() == [str(target)]


def test_a_symlinked_target_is_reported_by_its_real_path(tmp_path: Path) -> None:
    real = tmp_path / "volume" / "app.ini"
    real.parent.mkdir()
    real.write_text("a = 1\n")
    link = tmp_path / "app.ini"
    link.symlink_to(real)
    seen = Seen()
    watch = TargetWatch(seen)
    watch.start()
    try:
        watch.add([str(link)])
        real.write_text("a = 2\n")
        seen.wait_for(real)
    finally:
        watch.stop()


def test_a_missing_folder_is_skipped_and_the_rest_watched(tmp_path: Path, target: Path) -> None:
    seen = Seen()
    watch = TargetWatch(seen)
    watch.start()
    try:
        watch.add([str(tmp_path / "not-yet" / "x.conf"), str(target)])
        _in_place(target)
        seen.wait_for(target)
    finally:
        watch.stop()


def test_it_stops_promptly_while_idle(target: Path) -> None:
    watch = TargetWatch(Seen())
    watch.start()
    watch.add([str(target)])
    started = time.monotonic()
    watch.stop()
    assert time.monotonic() - started < 1.0
    assert not any(thread.name == "apphub-target-watch" and thread.is_alive() for thread in threading.enumerate())


def test_a_folder_created_later_is_watched_once_asked_again(tmp_path: Path) -> None:
    target = tmp_path / "cockpit.socket.d" / "listen.conf"
    seen = Seen()
    watch = TargetWatch(seen)
    watch.start()
    try:
        watch.add([str(target)])
        target.parent.mkdir()  # what the first apply does for a drop-in folder
        watch.add(())
        target.write_text("[Socket]\n")
        seen.wait_for(target)
    finally:
        watch.stop()
