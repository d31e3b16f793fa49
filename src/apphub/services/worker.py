"""The thread that initialises the products when apphub starts, then keeps testing every service.

Serving never waits for it. A product whose run failed is run again, later each time (the check
interval, doubled per run in a row that failed, at most 4 minutes: within Portainer's 5-minute
window for its first admin), and at once when its connection test finds it reachable again. A
product whose run was done but whose credentials stop working (config.ini changed) is run again
too. One that needs a person (`manual`) waits for `POST /api/v1/init`: repeating cannot help it.
"""

from __future__ import annotations

import logging
import threading
import time

from apphub.errors import ApphubError
from apphub.services.base import Check
from apphub.services.board import ENGINES, ServiceBoard
from apphub.services.manager import ServiceManager

logger = logging.getLogger("apphub.services")
MAX_RETRY_WAIT_S = 240.0


class ServicesWorker:
    def __init__(self, manager: ServiceManager, board: ServiceBoard) -> None:
        self.manager = manager
        self.board = board
        self._thread = threading.Thread(target=self._loop, name="apphub-services", daemon=True)
        self._wake = threading.Event()
        self._retry_at: dict[str, float] = {}
        self._checks: dict[str, Check] = {}
        self._came_up: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.manager.stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """Test everything now (after POST /api/v1/init, say)."""
        self._wake.set()

    def _loop(self) -> None:
        trigger = "start"
        while not self.manager.stop.is_set():
            try:
                self._round(trigger)
            except ApphubError as exc:  # settings that do not read: said once a round, never fatal
                logger.error("services: %s", exc)
            except Exception:  # the thread must outlive any one product's bug
                logger.exception("services: a round of initialisation and checks failed")
            trigger = "retry"
            try:
                interval = self.manager.settings().check_interval_s
            except ApphubError:
                interval = 30.0
            self._wake.wait(interval)
            self._wake.clear()

    def _round(self, trigger: str) -> None:
        due = self._due(trigger)
        if due:
            for run in self.manager.initialise(due, trigger=trigger).values():
                level = logging.INFO if run.state == "done" else logging.WARNING
                logger.log(level, "services: %s initialisation %s (%s)", run.service, run.state,
                           "; ".join(f"{step.name}: {step.state}" for step in run.steps))
                if run.state == "failed":
                    wait = min(self.manager.settings().check_interval_s * 2 ** (run.attempt - 1), MAX_RETRY_WAIT_S)
                    self._retry_at[run.service] = time.monotonic() + wait
        enabled = list(self.manager.settings().enabled)
        checks = {check.name: check for check in self.board.check_all([*enabled, *ENGINES])}
        self._came_up = {name for name, check in checks.items()
                         if check.health != "down" and name in self._checks and self._checks[name].health == "down"}
        self._checks = checks

    def _due(self, trigger: str) -> list[str]:
        enabled = self.manager.settings().enabled
        if trigger == "start":
            return list(enabled)
        runs = self.manager.status.load()
        now = time.monotonic()
        due = []
        for name in enabled:
            run, check = runs.get(name), self._checks.get(name)
            if run is None:
                due.append(name)
            elif run.state == "failed" and (now >= self._retry_at.get(name, 0) or name in self._came_up):
                due.append(name)  # its time came, or it answers again
            elif run.state == "done" and check is not None and check.authenticated is False \
                    and now >= self._retry_at.get(name, 0):
                self._retry_at[name] = now + MAX_RETRY_WAIT_S  # once per wait, if it keeps refusing
                due.append(name)  # its credentials changed since
        return due
