"""Atomic file replacement and the lock that lets one writer at a time touch a file.

A write goes to a temporary file in the same folder, is flushed to disk, gets the old file's mode
and owner, and replaces the old file with `os.replace`, then the folder entry is flushed too. A
reader, or a process killed at any instant, sees either the old bytes or the new, never a mix.

The lock is `flock` on a sidecar file, not on the file itself: the file is replaced on every
write, and a lock on a replaced inode would guard nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from apphub.errors import DataDirError, LockTimeout, StorageFull

TEMP_SUFFIX = ".apphub-tmp"

# flock excludes other open file descriptions, threads of this process included, but a
# process-wide lock per path first keeps threads from spinning on the file lock.
_thread_locks: dict[Path, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(path, threading.Lock())


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, timeout: float = 10.0, what: str | None = None) -> Iterator[None]:
    """Hold the write lock of `lock_path` (threads and processes alike), waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    thread_lock = _thread_lock(lock_path)
    if not thread_lock.acquire(timeout=timeout):
        raise LockTimeout(f"another writer held {what or lock_path} for more than {timeout:g} s")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"another process held {what or lock_path} for more than {timeout:g} s "
                            f"(lock file {lock_path})"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock
    finally:
        thread_lock.release()


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically and durably, keeping its mode and owner (or using
    `mode` when new). All or nothing, the flush included: if the folder cannot be flushed after the
    rename, the previous file is put back (as far as the disk lets us) before the error is raised.

    A symlink is followed: the file it points to is replaced, and the link stays (a data folder
    whose config.ini links into a volume keeps writing into the volume).
    """
    final = final_path(path)
    with _translated(final):
        try:
            previous: bytes | None = final.read_bytes()
        except FileNotFoundError:
            previous = None
    replacement = Replacement.prepare(final, data, previous, mode=mode)
    try:
        replacement.swap()
    except BaseException:
        if replacement.swapped:
            with contextlib.suppress(DataDirError):
                replacement.undo()
        replacement.discard()  # the new bytes unswapped, or the staged name an undo put back: no data
        raise


@dataclass
class Replacement:
    """A new version of a file, staged next to it; the steps are separate so that a caller can
    record the swap (an audit event) between them, and undo it if the folder cannot be flushed.

    The staged file's name tells a caller (after its own process died, too) what became of the
    write: the rename takes it away, and `undo` puts it back before the previous version. So a
    write is made while the staged name is gone or the file holds the new bytes, and not made
    while the staged name is there and the file holds other bytes: true at every instant of
    `swap` and `undo` (VersionLog judges pending audit events this way). The name is flushed to
    disk with the folder before `prepare` returns (a power loss must not take the staged name and
    leave the rename undone), and `swapped` is read from the file system, not from what this
    object last did (an exception may come between the two).
    """

    path: Path  # the file replaced (a symlink's target)
    staged: Path
    previous: bytes | None  # what the file held, to put back; None when there was no file
    discarded: bool = False

    @classmethod
    def prepare(cls, path: Path, data: bytes, previous: bytes | None, *, mode: int | None = None) -> Replacement:
        """Stage `data` next to `path`, flushed, folder entry included; `previous` is what `path`
        holds now (None: no file). Nothing is changed at `path` yet; an error here leaves nothing
        behind."""
        path = final_path(path)
        replacement = cls(path, stage(path, data, new_mode=mode), previous)
        try:
            with _translated(path):
                _fsync_directory(path.parent)
        except BaseException:
            replacement.discard()
            raise
        return replacement

    @property
    def swapped(self) -> bool:
        """Whether the staged file is in place (renamed, not undone): its name is gone. Not
        meaningful after `discard`."""
        return not self.discarded and not os.path.lexists(self.staged)

    def swap(self) -> None:
        """Rename the staged file over the file, then flush the folder. `swapped` tells whether
        the rename happened when this raises (then `undo` it: it is not durable)."""
        with _translated(self.path):
            os.replace(self.staged, self.path)
            _fsync_directory(self.path.parent)

    def undo(self) -> None:
        """After the rename: the staged name back (an empty file: only its name counts), then the
        previous file back in place (or none, if there was none), the folder flushed as far as it
        can be. In that order the write reads as made until the one rename that takes it back.
        Raises DataDirError if it cannot (no room to stage the previous bytes again, a folder that
        refuses the rename); then the new version stays in place, and counts as made (the staged
        name may be back: it is removed with the write's event settled)."""
        restored = stage(self.path, self.previous) if self.previous is not None else None
        try:
            with _translated(self.path):
                os.close(os.open(self.staged, os.O_WRONLY | os.O_CREAT, 0o600))
                if restored is not None:
                    os.replace(restored, self.path)
                else:
                    os.unlink(self.path)
        except BaseException:
            # The staged name stays, if it came back: the file holds the new version (made) or, if
            # the rename did happen before an interruption, the previous one (not made).
            if restored is not None:
                discard(restored)
            raise
        with contextlib.suppress(OSError):
            _fsync_directory(self.path.parent)

    def discard(self) -> bool:
        """Remove the staged file, as far as the folder lets us; False if it is left (for a later
        cleanup)."""
        self.discarded = True
        return discard(self.staged)


def stage(path: Path, data: bytes, *, mode: int | None = None, new_mode: int | None = None,
          owner: tuple[int, int] | None = None, follow_symlink: bool = True) -> Path:
    """Write `data` to a temporary file next to `path`, flushed, with its final mode and owner.

    Mode: `mode` if given, else the current file's, else `new_mode` (0644 if None). Owner: `owner`
    if given, else the current file's (when we may), else ours. `swap` then puts it in place; a
    check can run on it in between. With `follow_symlink` false (for a path the caller resolved and
    checked), a symlink found at `path` is not written through: `swap` replaces the link itself.
    """
    path = final_path(path) if follow_symlink else Path(path)
    with _translated(path):
        try:
            current = path.stat() if follow_symlink else path.lstat()
        except FileNotFoundError:
            current = None
        if current is not None and stat.S_ISLNK(current.st_mode):
            current = None  # a symlink that will be replaced, not followed: its mode is no file's
        fd, temporary = _create_temporary(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                if mode is not None:
                    os.fchmod(handle.fileno(), mode)
                elif current is not None:
                    os.fchmod(handle.fileno(), current.st_mode & 0o7777)
                else:
                    os.fchmod(handle.fileno(), 0o644 if new_mode is None else new_mode)
                wanted = owner or ((current.st_uid, current.st_gid) if current is not None else None)
                if wanted is not None and os.geteuid() == 0 and wanted != (os.geteuid(), os.getegid()):
                    os.fchown(handle.fileno(), *wanted)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    return Path(temporary)


def swap(staged: Path, path: Path, *, sync_folder: bool = True, follow_symlink: bool = True) -> Path:
    """Put a staged file in place of `path` atomically (following a symlink at `path`, unless told
    not to: then a symlink there is replaced by the file itself); return the folder that now holds it.

    The rename is atomic at once; it is durable once the folder is flushed. A caller swapping
    many files passes `sync_folder=False` and flushes each folder once with `sync_folders`.
    """
    path = final_path(path) if follow_symlink else Path(path)
    with _translated(path):
        try:
            os.replace(staged, path)
        except BaseException:
            discard(staged)  # best effort: the rename's error is the one to tell (a read-only folder)
            raise
        if sync_folder:
            _fsync_directory(path.parent)
    return path.parent


def sync_folders(folders: Iterable[Path], pool: Executor | None = None) -> None:
    """Flush these folders' entries to disk, each once, in parallel on `pool` if given."""
    unique = sorted(set(folders))
    if pool is None or len(unique) < 2:
        for folder in unique:
            _sync_folder(folder)
        return
    for future in [pool.submit(_sync_folder, folder) for folder in unique]:
        future.result()


def _sync_folder(folder: Path) -> None:
    with _translated(folder):
        _fsync_directory(folder)


def final_path(path: Path) -> Path:
    """The file a write of `path` must replace: the file a symlink at `path` points to, else `path`.

    Only the last part matters: a rename works through symlinked folders, and the temporary file
    is created next to the file it replaces, so on its file system. One `lstat` instead of
    `realpath`'s one per part, which showed in the sync thread's profile at 50 files a change.
    """
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return Path(os.path.realpath(path))
    except FileNotFoundError:
        pass
    return Path(path)


def discard(staged: Path) -> bool:
    """Remove a staged file, as far as the folder lets us; False if it is left (for a later cleanup)."""
    try:
        os.unlink(staged)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"cannot write {path}: the disk holding {path.parent} is full "
                              f"({exc.strerror or exc})") from exc
        hint = ""
        if exc.errno == errno.EBUSY:
            hint = " (it is a single-file mount, which cannot be replaced atomically: mount its folder instead)"
        raise DataDirError(f"cannot write {path}: {exc.strerror or exc}{hint}") from exc


def _temporary_name(path: Path, attempt: int) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.{attempt}{TEMP_SUFFIX}"


def _create_temporary(path: Path) -> tuple[int, str]:
    for attempt in range(100):
        name = _temporary_name(path, attempt)
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), str(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_PID_MAX = 4194304  # Linux's PID_MAX_LIMIT: a larger "pid" is no process's, nor a name of ours


def temporary_pid(target_name: str, entry_name: str) -> int | None:
    """The pid in `entry_name` if it is the name of one of our temporary files of `target_name`
    (`.<name>.<pid>.<ns>.<n>.apphub-tmp`, exactly), else None."""
    prefix = f".{target_name}."
    if not (entry_name.startswith(prefix) and entry_name.endswith(TEMP_SUFFIX)):
        return None
    numbers = entry_name[len(prefix):-len(TEMP_SUFFIX)].split(".")
    if len(numbers) != 3 or not all(number.isascii() and number.isdigit() for number in numbers):
        return None
    pid = int(numbers[0])
    return pid if 0 < pid <= _PID_MAX else None


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files a killed writer left next to `path` (ours, of that file only: not
    those of `path.bak`); call it with the lock held."""
    removed = []
    path = Path(os.path.realpath(path))
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            if temporary_pid(path.name, entry.name) is not None and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed
