"""Hold a process at the moment it opens a folder: fanotify permission events (Linux, root).

With FAN_OPEN_PERM on a folder, every open of that folder waits in the kernel until the listener
answers. A test can look at the world at that instant (the bytes of a file, the rows of a
database) and decide to kill the opener before it runs one more instruction. That makes a crash
at a chosen moment reachable on purpose, in an unmodified program: for a writer, the folder is
opened to flush it right after a rename.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
from collections.abc import Callable
from pathlib import Path

_FAN_CLOEXEC = 0x1
_FAN_CLASS_CONTENT = 0x4
_FAN_MARK_ADD = 0x1
_FAN_OPEN_PERM = 0x10000
_FAN_ONDIR = 0x40000000
_FAN_ALLOW = 0x1
_AT_FDCWD = -100
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
_METADATA = struct.Struct("IBBHQii")
_RESPONSE = struct.Struct("iI")

# Decides, for one open by `pid`, whether to kill the opener before it goes on.
Decide = Callable[[int], bool]


def fanotify_unavailable() -> str | None:
    """Why this machine cannot hold opens (not root, an old kernel), or None if it can."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.fanotify_init(_FAN_CLASS_CONTENT | _FAN_CLOEXEC, os.O_RDONLY)
    if fd < 0:
        return f"fanotify_init failed: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return None


class OpenGate:
    """Answers every open of `folder`; kills the opener instead when `decide(pid)` says so."""

    def __init__(self, folder: Path, decide: Decide) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.fanotify_init(_FAN_CLASS_CONTENT | _FAN_CLOEXEC, os.O_RDONLY)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "fanotify_init")
        marked = libc.fanotify_mark(self._fd, _FAN_MARK_ADD, ctypes.c_uint64(_FAN_OPEN_PERM | _FAN_ONDIR),
                                    _AT_FDCWD, str(folder).encode())
        if marked != 0:
            error = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(error, f"fanotify_mark {folder}")
        self._decide = decide
        self._stop = threading.Event()
        self.killed: list[int] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="open-gate", daemon=True)

    def __enter__(self) -> OpenGate:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        os.close(self._fd)  # the kernel allows whatever was still waiting

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._fd], [], [], 0.05)
                if not ready:
                    continue
                buffer = os.read(self._fd, 4096)
                offset = 0
                while offset + _METADATA.size <= len(buffer):
                    length, _, _, _, _, event_fd, pid = _METADATA.unpack_from(buffer, offset)
                    offset += length
                    try:
                        if self._decide(pid):
                            os.kill(pid, 9)  # delivered before the open returns to user space
                            self.killed.append(pid)
                    finally:
                        os.write(self._fd, _RESPONSE.pack(event_fd, _FAN_ALLOW))
                        os.close(event_fd)
        except BaseException as exc:  # surfaced by the test, never swallowed
            self.error = exc
