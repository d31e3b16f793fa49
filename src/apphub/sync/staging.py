"""apphub's own staging files next to a target: telling them from anyone else's file, and removing
those a failed swap or a killed apphub left behind (issue 8).

A file is staged as `.<name>.<pid>.<ns>.<n>.apphub-tmp` next to the target `<name>`
(store/atomic.py). Normally it is renamed over the target or removed at once; it stays when the
folder turned read-only between staging and swap (nothing can be removed from it then either),
or when apphub was killed in between. Such files are removed next to every target when the
engine starts and next to a target each time it is applied.

Only a file that is exactly that, for that target, is removed: a regular file (not a link, not a
folder), named after the target with three numbers, whose writer is gone: this process (which
stages a target only within its own apply, never while its leftovers are removed), a process
that no longer runs, or one whose file has not changed for an hour (a pid reused since).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from apphub.store.atomic import temporary_pid

logger = logging.getLogger("apphub.sync")

STALE_AFTER_S = 3600.0
def remove_leftovers(target: str) -> list[str]:
    """Remove apphub's staging files that nobody will swap any more next to `target` (its real
    path); what was removed. One that cannot be removed (the folder is read-only) is logged and
    tried again next time."""
    folder, name = os.path.split(target)
    try:
        with os.scandir(folder or ".") as scan:
            found = [(entry, pid) for entry in scan if (pid := temporary_pid(name, entry.name)) is not None]
    except OSError:  # no folder yet (the first apply creates it), or not one
        return []
    removed = []
    for entry, pid in found:
        if not _left_behind(entry, pid):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("cannot remove %s, a staged file left by an earlier apply: %s (tried again at the "
                           "next apply of %s)", entry.path, exc.strerror or exc, target)
            continue
        removed.append(entry.path)
    if removed:
        logger.info("removed %d staged file(s) left next to %s by an earlier apply", len(removed), target)
    return removed


def discard_staged(path: Path) -> None:
    """Remove a staged file this apply no longer needs; if it cannot be removed now (its folder
    turned read-only), say so: `remove_leftovers` removes it later."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove the staged file %s: %s (removed at the next apply of its target, or "
                       "when apphub starts)", path, exc.strerror or exc)


def _left_behind(entry: os.DirEntry[str], pid: int) -> bool:
    """A regular file whose writer is gone: this process, one that no longer runs, or one that has
    not touched it for an hour (its pid may be another process's since)."""
    try:
        status = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode):
        return False
    if pid == os.getpid() or time.time() - status.st_mtime > STALE_AFTER_S:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False
