"""The server's history thread: commits what writes leave waiting, soon after each write.

A write tells the history (IniStore.after_write); hand edits and other processes' writes (a CLI's)
are found by polling. Reads record what waits themselves, so a version is in the history the
moment anyone asks, whether or not this thread got to it yet.
"""

from __future__ import annotations

import logging
import threading

from apphub.errors import ApphubError
from apphub.history.service import History

logger = logging.getLogger("apphub.history")

POLL_S = 1.0
COALESCE_S = 0.05  # writes in a burst become commits together (one branch move, one index transaction)
STOP_TIMEOUT_S = 5.0


class HistoryWorker:
    def __init__(self, history: History) -> None:
        self._history = history
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apphub-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._history.notify()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        try:
            self._history.compact()
        except ApphubError as exc:
            logger.warning("history: git gc --auto at start: %s", exc)
        while not self._stop.is_set():
            if (self._history.wait_for_work(POLL_S) and not self._stop.wait(COALESCE_S)) or not self._stop.is_set():
                self._record()

    def _record(self) -> None:
        try:
            self._history.record()
        except ApphubError as exc:
            if not self._failing:  # once per failure, not every second
                logger.error("history: versions wait to be committed: %s", exc)
            self._failing = True
            return
        except Exception:
            logger.exception("history: recording failed unexpectedly")
            return
        if self._failing:
            logger.info("history: recording works again")
        self._failing = False
