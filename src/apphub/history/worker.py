"""The server's history process: commits what writes leave waiting, soon after each write.

A process of its own, not a thread: a commit is CPU work in pygit2 and Python that holds the GIL
(about a millisecond a version), and in the server's process it delayed the requests that came
meanwhile (PUT p99 2.0x that of no history, benchmarks/history.py); in a process of its own it runs
on another core. A write tells it (IniStore.after_write sets an event it waits on); hand edits and
other processes' writes (a CLI's) are found by polling. Reads record what waits themselves, so a
version is in the history the moment anyone asks, whether or not this process got to it yet. It
stops with the server, and by itself if the server dies (it watches its parent).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from multiprocessing.synchronize import Event
from pathlib import Path

from apphub.errors import ApphubError
from apphub.history.service import History

logger = logging.getLogger("apphub.history")

POLL_S = 1.0
COALESCE_S = 0.05  # writes in a burst become commits together (one branch move, one index transaction)
STOP_TIMEOUT_S = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HistoryWorker:
    def __init__(self, history: History) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._wake = context.Event()
        self._stop = context.Event()
        self._process = context.Process(target=run, name="apphub-history",
                                        args=(str(history.data.root), self._wake, self._stop, os.getpid(),
                                              logging.getLogger().getEffectiveLevel()), daemon=True)
        self._started = False
        history.wakers.append(self._wake.set)

    def start(self) -> None:
        self._process.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self._stop.set()
        self._wake.set()
        self._process.join(STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(STOP_TIMEOUT_S)


def run(root: str, wake: Event, stop: Event, parent: int, level: int) -> None:
    """The history process: record on every wake (after a short quiet time) and every POLL_S."""
    from apphub.core import Core
    from apphub.paths import DataDir

    logging.basicConfig(level=level, format=LOG_FORMAT)
    core = Core(DataDir(Path(root)))
    failing = False
    try:
        try:
            core.history.compact()
        except ApphubError as exc:
            logger.warning("history: git gc --auto at start: %s", exc)
        while not stop.is_set() and os.getppid() == parent:
            if wake.wait(POLL_S):
                wake.clear()
                if stop.wait(COALESCE_S):
                    break
            failing = _record(core.history, failing)
    finally:
        core.close()


def _record(history: History, failing: bool) -> bool:
    """Record what waits; whether recording fails now (said once per failure, not every second)."""
    try:
        history.record()
    except ApphubError as exc:
        if not failing:
            logger.error("history: versions wait to be committed: %s", exc)
        return True
    except Exception:
        logger.exception("history: recording failed unexpectedly")
        return True
    if failing:
        logger.info("history: recording works again")
    return False
