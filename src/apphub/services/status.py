"""What the last initialisation of each product did, step by step, kept in SQLite.

So `GET /api/v1/init/status` and `apphub services` tell the same story after a restart, and a
run from the CLI shows in the server's status too. Each product's run is one row of JSON.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from apphub.audit.log import utc_now
from apphub.db import Database
from apphub.services.steps import StepResult

RunState = Literal["pending", "running", "done", "failed", "manual"]


@dataclass
class ProductRun:
    """One run of one product's initialiser."""

    service: str
    title: str
    trigger: str  # start | retry | api | cli
    steps: list[StepResult]
    state: RunState = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    attempt: int = 1  # runs in a row that did not end done (the retry backoff grows with it)

    @property
    def changed(self) -> bool:
        return any(step.state == "done" for step in self.steps)

    def settle(self) -> None:
        """The run's state from its steps': manual beats failed beats done."""
        states = {step.state for step in self.steps}
        self.state = "manual" if "manual" in states else "failed" if "failed" in states else "done"

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "title": self.title, "state": self.state, "trigger": self.trigger,
            "changed": self.changed, "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_ms": self.duration_ms, "attempt": self.attempt,
            "steps": [step.to_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, found: dict[str, Any]) -> ProductRun:
        known = set(StepResult.__dataclass_fields__)  # a row written by another version of apphub reads too
        steps = [StepResult(**{key: value for key, value in step.items() if key in known})
                 for step in found.get("steps", []) if isinstance(step, dict) and "name" in step]
        return cls(found["service"], found.get("title", found["service"]), found.get("trigger", "?"), steps,
                   found.get("state", "pending"), found.get("started_at"), found.get("finished_at"),
                   found.get("duration_ms"), found.get("attempt", 1))


@dataclass
class InitStatus:
    """The runs of every product, in memory and in the database."""

    database: Database
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def save(self, run: ProductRun) -> None:
        text = json.dumps(run.to_dict())
        with self._lock, self.database.transaction() as connection:
            connection.execute(
                "INSERT INTO service_init (service, run, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (service) DO UPDATE SET run = excluded.run, updated_at = excluded.updated_at",
                (run.service, text, utc_now()))

    def load(self) -> dict[str, ProductRun]:
        rows = self.database.query("SELECT run FROM service_init ORDER BY service")
        runs = (ProductRun.from_dict(json.loads(row["run"])) for row in rows)
        return {run.service: run for run in runs}
