"""Watching files with watchdog (inotify): the data folder, the templates, and the folders of the
target files, so that every way of saving a file is seen.

Editors save in different ways: in place (`modified`), by writing a temporary file and renaming
it over the original (vim, IDEs, `sed -i`: `moved` or `created`), by deleting and recreating
(`deleted`, `created`), `cp` over it (`modified`). Watching the folder, not the file, sees all of
them, and sees a file that is recreated after a delete (an inotify watch on the file itself dies
with its inode).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

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

# What a file event means for the engine: "config" (config.ini, system.ini, services.yaml or a
# template changed) or "target" (a file the engine writes was touched by someone).
Callback = Callable[[str, str], None]

# The events that can change a file's bytes once the writer is done: close after writing (in
# place, `cp`), create and rename (a temporary file renamed over it), delete. Asking inotify for
# these only, and not for open, close-without-write, modify (one per write call) and attribute
# changes, cuts what the kernel queues and watchdog's threads decode to about a third: the
# engine's own staging and swapping in the target folders was most of this process's CPU.
CONTENT_EVENTS = [FileClosedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent]


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
        self._targets: set[str] = set()
        self._observer: BaseObserver | None = None

    def start(self, targets: Iterable[str]) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.name = "apphub-watcher"
        self._schedule(self._data_root, recursive=False)
        if os.path.isdir(self._templates):
            self._schedule(self._templates, recursive=True)
        self.watch_targets(targets)
        self._observer.start()

    def watch_targets(self, targets: Iterable[str]) -> None:
        """Also watch these target files' folders (when the manifest changes, call it again)."""
        new = {os.path.realpath(path) for path in targets}
        if self._observer is None:
            self._targets = new
            return
        for folder in {os.path.dirname(path) for path in new - self._targets}:
            if os.path.isdir(folder) and folder not in (self._data_root,):
                self._schedule(folder, recursive=False)
        self._targets |= new

    def stop(self, timeout: float = 2.0) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None

    def _schedule(self, folder: str, recursive: bool) -> None:
        assert self._observer is not None
        self._observer.schedule(_Handler(self._classify, self._callback), folder, recursive=recursive,
                                event_filter=CONTENT_EVENTS)

    def _classify(self, path: str) -> str | None:
        # Every watched folder was scheduled by its real path, so an event's path is already
        # real up to its last part (a symlinked target is watched in the folder it points into).
        folder, name = os.path.split(path)
        if folder == self._data_root:
            return "config" if name in ("config.ini", "system.ini", "services.yaml") else None
        if path.startswith(self._templates + os.sep):
            return "config"
        if path in self._targets:
            return "target"
        return None
