"""Watching files: the data folder and the templates with watchdog, the folders of the target
files with one lean inotify reader, so that every way of saving a file is seen.

Editors save in different ways: in place (`modified`), by writing a temporary file and renaming
it over the original (vim, IDEs, `sed -i`: `moved` or `created`), by deleting and recreating
(`deleted`, `created`), `cp` over it (`modified`). Watching the folder, not the file, sees all of
them, and sees a file that is recreated after a delete (an inotify watch on the file itself dies
with its inode).

The target folders get their own reader because of what the engine does there: each file it writes
is a temporary file created, written, closed and renamed over the target, several events per file,
50 services' worth per change. watchdog runs a thread per watched folder and builds an event object
per event; at 50 folders that took more CPU than the apply itself and slowed it through the GIL.
One thread reading a raw inotify descriptor, asking the kernel for the four events that matter,
and dropping every name that is not a target with a set lookup costs a few microseconds a file.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from inotify_simple import INotify, flags
from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from apphub.sync.targets import resolve

logger = logging.getLogger("apphub.sync")

# What a file event means for the engine: "config" (config.ini, system.ini, services.yaml or a
# template changed) or "target" (a file the engine writes was touched by someone).
Callback = Callable[[str, str], None]

# The events that can change a file's bytes once the writer is done: close after writing (in
# place, `cp`), create and rename (a temporary file renamed over it), delete. Asking inotify for
# these only, and not for open, close-without-write, modify (one per write call) and attribute
# changes, cuts what the kernel queues and watchdog's threads decode to about a third: the
# engine's own staging and swapping in the target folders was most of this process's CPU.
CONTENT_EVENTS = [FileClosedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent]


_OVERLAY = re.compile(r"^config\.[a-z0-9][a-z0-9_-]{0,31}\.ini$")  # an environment's (environments/)


class _Handler(FileSystemEventHandler):
    def __init__(self, classify: Callable[[str], str | None], callback: Callback) -> None:
        self._classify = classify
        self._callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return  # the folder's own "modified" that accompanies each entry's event
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw) if raw else ""
            if not path:
                continue
            kind = self._classify(path)
            if kind is not None:
                self._callback(kind, path)


class Watcher:
    """Calls back with ("config" | "target", path) for every relevant file event."""

    def __init__(self, data_root: Path, templates_dir: Path, callback: Callback) -> None:
        self._data_root = os.path.realpath(data_root)
        self._templates = os.path.realpath(templates_dir)
        self._callback = callback
        self._pending: set[str] = set()
        self._observer: BaseObserver | None = None
        self._targets: TargetWatch | None = None

    def start(self) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.name = "apphub-watcher"
        self._schedule(self._data_root, recursive=False)
        if os.path.isdir(self._templates):
            self._schedule(self._templates, recursive=True)
        self._observer.start()
        self._targets = TargetWatch(self._callback, ignore_folders={self._data_root})
        self._targets.start()
        self.watch_targets(self._pending)

    def watch_targets(self, targets: Iterable[str]) -> None:
        """Also watch these target files (when the manifest changes, call it again)."""
        if self._targets is None:
            self._pending = set(targets)
            return
        self._targets.add(targets)

    def watch_created_folders(self) -> None:
        """Watch the target folders that were missing before and exist now (an apply creates them)."""
        if self._targets is not None:
            self._targets.add(())

    def stop(self, timeout: float = 2.0) -> None:
        if self._targets is not None:
            self._targets.stop(timeout)
            self._targets = None
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None

    def _schedule(self, folder: str, recursive: bool) -> None:
        assert self._observer is not None
        self._observer.schedule(_Handler(self._classify, self._callback), folder, recursive=recursive,
                                event_filter=CONTENT_EVENTS)

    def _classify(self, path: str) -> str | None:
        folder, name = os.path.split(path)
        if folder == self._data_root:
            if name in ("config.ini", "system.ini", "env.ini", "services.yaml") or _OVERLAY.match(name):
                return "config"
            return None
        if path.startswith(self._templates + os.sep):
            return "config"
        return None


class TargetWatch:
    """One thread reading inotify on the folders of the target files; calls back with
    ("target", real path) when a target is written, renamed onto or away, or deleted."""

    # Written in place or by `cp` (close after write), renamed onto, renamed away, deleted.
    MASK = flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE

    def __init__(self, callback: Callback, ignore_folders: Iterable[str] = ()) -> None:
        self._callback = callback
        self._ignore = set(ignore_folders)
        self._inotify = INotify()
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        self._targets: set[str] = set()  # real paths
        self._missing: set[str] = set()  # target folders that did not exist when added
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="apphub-target-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, targets: Iterable[str]) -> None:
        """Watch these targets too; and the folders of earlier ones that were missing, if they exist now."""
        real = {resolve(path) for path in targets}  # as the planner resolves them (FilePlan.real)
        with self._lock:  # the reader thread only ever sees whole new maps, swapped in below
            if not real and not self._missing:
                return
            folders = dict(self._folders)
            wanted = {os.path.dirname(path) for path in real} | self._missing
            self._missing = set()
            for folder in sorted(wanted - set(folders.values()) - self._ignore):
                try:
                    folders[self._inotify.add_watch(folder, self.MASK)] = folder
                except FileNotFoundError:
                    self._missing.add(folder)  # the apply that creates it calls `add` again
                except OSError as exc:
                    # Until it can be watched, the periodic check still finds drift there.
                    logger.warning("not watching %s for edits behind apphub's back: %s", folder, exc)
            self._folders = folders
            self._targets = self._targets | real

    def stop(self, timeout: float = 2.0) -> None:
        os.write(self._wake_write, b"x")
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._inotify.close()
            os.close(self._wake_read)
            os.close(self._wake_write)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._inotify.fileno(), select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_read in ready:
                return
            for event in self._inotify.read(timeout=0):
                if event.mask & flags.Q_OVERFLOW:
                    # Events were lost: let the engine look at every target.
                    for path in sorted(self._targets):
                        self._callback("target", path)
                    continue
                folder = self._folders.get(event.wd)
                if folder is None or not event.name:
                    continue
                path = os.path.join(folder, event.name)
                if path in self._targets:
                    self._callback("target", path)
