"""Atomic replacement of a file and the write lock shared by threads and processes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphub.errors import DataDirError, LockTimeout
from apphub.store.atomic import TEMP_SUFFIX, atomic_write, exclusive_lock, remove_stale_temporaries, stage, swap


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


# -- atomic_write ------------------------------------------------------------------------------


def test_replacing_a_file_keeps_its_mode_and_gives_a_new_inode(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(b"[a]\nk = old\n")
    os.chmod(path, 0o640)
    old_inode = path.stat().st_ino
    reader = path.open("rb")  # a reader that opened the old file keeps reading the old bytes

    try:
        atomic_write(path, b"[a]\nk = new\n", mode=0o600)

        assert path.read_bytes() == b"[a]\nk = new\n"
        assert mode_of(path) == 0o640  # the file's own mode wins over the one for new files
        assert path.stat().st_ino != old_inode
        assert reader.read() == b"[a]\nk = old\n"
    finally:
        reader.close()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o400])
def test_a_new_file_gets_the_given_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "new.ini"
    old_umask = os.umask(0o077)
    try:
        atomic_write(path, b"data", mode=mode)
    finally:
        os.umask(old_umask)

    assert path.read_bytes() == b"data"
    assert mode_of(path) == mode
    assert leftovers(tmp_path) == []


def test_a_new_file_without_a_mode_is_0644(tmp_path: Path) -> None:
    path = tmp_path / "plain.ini"

    atomic_write(path, b"x")

    assert mode_of(path) == 0o644


def test_the_old_content_stays_in_place_until_the_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(b"old bytes\n")
    seen: list[tuple[bytes, bytes, Path]] = []
    real_replace = os.replace

    def watching_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        seen.append((Path(target).read_bytes(), Path(source).read_bytes(), Path(source).parent))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watching_replace)
    atomic_write(path, b"new bytes\n")

    assert seen == [(b"old bytes\n", b"new bytes\n", tmp_path)]
    assert path.read_bytes() == b"new bytes\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(b"old bytes\n")
    os.chmod(path, 0o600)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    full = r"cannot write .*config\.ini: the disk holding .* is full \(No space left"
    with pytest.raises(DataDirError, match=full) as caught:
        atomic_write(path, b"new bytes\n")
    assert isinstance(caught.value.__cause__, OSError)

    assert path.read_bytes() == b"old bytes\n"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.ini"]


def test_a_failed_replace_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.ini"
    target.mkdir()  # a folder where the file should be: os.replace fails

    with pytest.raises(DataDirError, match=r"config\.ini") as caught:
        atomic_write(target, b"data")
    assert isinstance(caught.value.__cause__, IsADirectoryError)

    assert target.is_dir()
    assert leftovers(tmp_path) == []


def test_writing_into_a_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match=r"missing/config\.ini") as caught:
        atomic_write(tmp_path / "missing" / "config.ini", b"data")
    assert isinstance(caught.value.__cause__, FileNotFoundError)

    assert not (tmp_path / "missing").exists()


# -- remove_stale_temporaries ------------------------------------------------------------------


def test_stale_temporaries_of_the_file_are_removed_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(b"keep")
    stale = [tmp_path / f".config.ini.{pid}.123456789.0{TEMP_SUFFIX}" for pid in (111, 222)]
    others = [
        tmp_path / f".system.ini.111.123456789.0{TEMP_SUFFIX}",  # another file's temporary
        tmp_path / "config.ini.bak",
        tmp_path / ".config.ini.swp",
    ]
    for leftover in stale + others:
        leftover.write_bytes(b"half-written")

    removed = remove_stale_temporaries(path)

    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)
    assert path.read_bytes() == b"keep"
    assert remove_stale_temporaries(path) == []


# -- exclusive_lock ----------------------------------------------------------------------------


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "locks" / "config.ini.lock"


def test_the_lock_file_and_its_folder_are_created(lock_path: Path) -> None:
    with exclusive_lock(lock_path, timeout=1):
        assert lock_path.is_file()

    assert mode_of(lock_path) == 0o600


def test_a_second_thread_waits_for_the_lock(lock_path: Path) -> None:
    acquired = threading.Event()
    order: list[str] = []

    def second() -> None:
        with exclusive_lock(lock_path, timeout=10):
            order.append("second")
            acquired.set()

    with exclusive_lock(lock_path, timeout=1):
        thread = threading.Thread(target=second)
        thread.start()
        assert not acquired.wait(0.3)  # blocked while the first holder has it
        order.append("first releases")
    assert acquired.wait(10)
    thread.join(10)
    assert order == ["first releases", "second"]


def test_a_second_thread_times_out(lock_path: Path) -> None:
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with exclusive_lock(lock_path, timeout=0.2, what="config.ini"):
                pass
        except LockTimeout as exc:
            errors.append(exc)

    with exclusive_lock(lock_path, timeout=1):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(10)

    assert len(errors) == 1
    assert "config.ini" in str(errors[0])
    with exclusive_lock(lock_path, timeout=1):  # free again once the holder left
        pass


def test_the_lock_is_released_when_the_block_raises(lock_path: Path) -> None:
    with pytest.raises(RuntimeError), exclusive_lock(lock_path, timeout=1):
        raise RuntimeError("boom")

    with exclusive_lock(lock_path, timeout=0.2):
        pass


HOLDER = textwrap.dedent(
    """
    import sys, pathlib
    from apphub.store.atomic import exclusive_lock
    with exclusive_lock(pathlib.Path(sys.argv[1]), timeout=10):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    """
)

WAITER = textwrap.dedent(
    """
    import sys, pathlib, time
    from apphub.errors import LockTimeout
    from apphub.store.atomic import exclusive_lock
    start = time.monotonic()
    try:
        with exclusive_lock(pathlib.Path(sys.argv[1]), timeout=float(sys.argv[2])):
            print("acquired", flush=True)
    except LockTimeout as exc:
        print(f"timeout after {time.monotonic() - start:.2f}: {exc}", flush=True)
        sys.exit(3)
    """
)


@pytest.fixture
def holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock until its stdin gets a line."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "released"


def test_another_process_holding_the_lock_makes_us_time_out(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    start = time.monotonic()
    with pytest.raises(LockTimeout) as caught, exclusive_lock(lock_path, timeout=0.3, what="config.ini"):
        pytest.fail("the lock was acquired while another process held it")
    elapsed = time.monotonic() - start

    assert 0.3 <= elapsed < 3
    assert "another process held config.ini" in str(caught.value)
    assert str(lock_path) in str(caught.value)

    release(holder)
    with exclusive_lock(lock_path, timeout=5):
        pass


def test_we_get_the_lock_as_soon_as_the_other_process_releases_it(
    lock_path: Path, holder: subprocess.Popen[str]
) -> None:
    got_it = threading.Event()

    def wait_for_lock() -> None:
        with exclusive_lock(lock_path, timeout=10):
            got_it.set()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    assert not got_it.wait(0.3)
    release(holder)
    assert got_it.wait(5)
    thread.join(5)


def test_another_process_waits_for_our_lock_and_times_out(lock_path: Path) -> None:
    with exclusive_lock(lock_path, timeout=1):
        result = subprocess.run(
            [sys.executable, "-c", WAITER, str(lock_path), "0.3"], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("timeout after")

    after = subprocess.run(
        [sys.executable, "-c", WAITER, str(lock_path), "5"], capture_output=True, text=True, timeout=30
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "acquired"


def test_a_staged_file_follows_a_symlink_by_default(tmp_path: Path) -> None:
    real = tmp_path / "volume" / "app.ini"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "app.ini"
    link.symlink_to(real)
    swap(stage(link, b"new\n"), link)
    assert link.is_symlink()
    assert real.read_text() == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_without_following_a_symlink_found_at_the_path_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.conf"
    outside.write_text("do not touch\n")
    target = tmp_path / "app.conf"
    target.symlink_to(outside)  # put there after the caller resolved and checked `target`
    staged = stage(target, b"mine\n", new_mode=0o600, follow_symlink=False)
    swap(staged, target, follow_symlink=False)
    assert not target.is_symlink()
    assert target.read_text() == "mine\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600, "not the link's 0777"
    assert outside.read_text() == "do not touch\n"
