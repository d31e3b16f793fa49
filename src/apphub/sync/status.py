"""What the sync engine tells the API: per service where it stands, and Prometheus metrics."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from apphub.audit.log import utc_now
from apphub.sync.apply import ApplyReport

STAGES = ("detect", "validate", "render", "write", "reload", "healthy", "total")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class ServiceStatus:
    service: str
    state: str = "unknown"  # applying | applied | failed | interrupted | drifted | unknown
    wanted_version: str | None = None
    applied_version: str | None = None
    last_action: str | None = None
    last_error: str | None = None
    drift: list[str] = field(default_factory=list)
    pending: str | None = None  # a change that waits (its container does not exist yet), and why
    timings_ms: dict[str, float] = field(default_factory=dict)
    updated_at: str | None = None


@dataclass
class EngineStatus:
    running: bool = False
    config_version: str | None = None
    applied_version: str | None = None
    config_error: str | None = None
    manifest_error: str | None = None
    refused: list[str] = field(default_factory=list)
    last_sync_at: str | None = None
    syncs: int = 0


class SyncMetrics:
    """The engine's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram("apphub_sync_stage_seconds", "Time spent in each stage of a sync",
                                       ["stage"], buckets=_BUCKETS, registry=self.registry)
        self.reloads = Counter("apphub_sync_reloads", "Reload actions issued, by service, strategy and result",
                               ["service", "strategy", "result"], registry=self.registry)
        self.failures = Counter("apphub_sync_failures", "Syncs that did not apply, by reason", ["reason"],
                                registry=self.registry)
        self.drift = Counter("apphub_sync_drift", "Target files found edited behind apphub's back", ["service"],
                             registry=self.registry)


class StatusBoard:
    """The engine's status, updated by the sync thread and read by the API (under a lock).

    Whoever shows it live (the console's event stream) subscribes: it is called, in the sync
    thread, after each change, and must only hand the news on (never block)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.engine = EngineStatus()
        self.services: dict[str, ServiceStatus] = {}
        self.metrics = SyncMetrics()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every change; returns what unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def touch(self) -> None:
        """Tell the subscribers that something changed (the engine changed a service's status in place)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self.engine, name, value)
        self.touch()

    def applying(self, names: Iterable[str], version: str) -> None:
        """These services are being given `version` (their files swapped, reloaded, gated)."""
        with self._lock:
            for name in names:
                status = self.services.setdefault(name, ServiceStatus(name))
                status.state, status.wanted_version = "applying", version
        self.touch()

    def service(self, name: str) -> ServiceStatus:
        with self._lock:
            return self.services.setdefault(name, ServiceStatus(name))

    def keep_only(self, names: list[str]) -> None:
        with self._lock:
            self.services = {name: status for name, status in self.services.items() if name in names}
            for name in names:
                self.services.setdefault(name, ServiceStatus(name))
        self.touch()

    def abandon(self, why: str) -> None:
        """A round that failed unexpectedly: the services it was applying are not `applying` any more
        (the journal still says so: the next start, or the next change, reloads them)."""
        with self._lock:
            for status in self.services.values():
                if status.state == "applying":
                    status.state, status.last_error = "interrupted", why
            self.engine.refused = [why]
        self.touch()

    def record(self, report: ApplyReport, stage_times: dict[str, float]) -> None:
        now = utc_now()
        with self._lock:
            for name, outcome in report.outcomes.items():
                status = self.services.setdefault(name, ServiceStatus(name))
                status.wanted_version = report.version
                if outcome.result == "applied":
                    status.state, status.applied_version, status.last_error = "applied", report.version, None
                    status.drift = []
                elif outcome.result == "unchanged":
                    # its files are what this version renders: a drift or a failure undone by hand clears
                    status.state, status.applied_version, status.drift = "applied", report.version, []
                    status.last_error = None
                elif outcome.result == "refused":
                    # Nothing of the version reached it: it failed to apply it, and runs what it ran.
                    status.state, status.last_error = "failed", outcome.error
                else:
                    status.state, status.last_error = outcome.result, outcome.error
                if outcome.result != "unchanged":
                    status.last_action = outcome.action
                    status.timings_ms = {stage: round(seconds * 1000, 3)
                                         for stage, seconds in {**stage_times, **outcome.timings}.items()}
                    status.updated_at = now
                    if outcome.result != "refused":  # no reload was issued
                        self.metrics.reloads.labels(name, outcome.action, outcome.result).inc()
                    for stage, seconds in outcome.timings.items():
                        if stage in ("reload", "healthy"):
                            self.metrics.stage_seconds.labels(stage).observe(seconds)
            if not report.refused:
                for name, status in self.services.items():
                    # Not planned: nothing it reads changed, so it is at this version as it stands.
                    if name not in report.outcomes and status.state == "applied":
                        status.wanted_version = status.applied_version = report.version
            for stage, seconds in stage_times.items():
                self.metrics.stage_seconds.labels(stage).observe(seconds)
            if report.refused:
                self.metrics.failures.labels("refused").inc()
            elif not report.ok:
                self.metrics.failures.labels("failed").inc()
            self.engine.refused = list(report.refused)
            self.engine.last_sync_at = now
            self.engine.syncs += 1
        self.touch()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"engine": asdict(self.engine),
                    "services": [asdict(status) for status in self.services.values()]}
