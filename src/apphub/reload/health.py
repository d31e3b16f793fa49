"""The health gate: after a reload, wait until every probe of the service passes, or give up.

A probe's reason is kept whole (it can quote a response body or a command's output, which can
hold a secret); the sync engine masks secrets in the message and only then shortens it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Protocol

from pydantic import Field, model_validator

from apphub.errors import BackendUnavailable, HealthCheckFailed, Interrupted
from apphub.reload.base import Spec

PROBE_KINDS = ("http", "tcp", "container", "supervisor", "command")


class HealthSpec(Spec):
    """How to tell a service is healthy after a reload; every probe given must pass.

    `http`, `tcp`, `container`, `supervisor` and each word of `command` may hold ${section.key}
    references: the gate probes with the version being applied (a changed port included), and
    a rollback's gate with the previous one.
    """

    http: str | None = Field(default=None, description="URL answering 2xx")
    tcp: str | None = Field(default=None, pattern=r"^([^:\s]+|.*\$\{.*\}.*):(\d{1,5}|.*\$\{.*\}.*)$",
                            description="host:port accepting connections")
    container: str | None = Field(default=None, description="running, and healthy if it has a healthcheck")
    supervisor: str | None = Field(default=None, description="program RUNNING for its startsecs")
    command: list[str] | None = Field(default=None, min_length=1, description="exits 0")
    timeout: float = Field(default=30.0, gt=0, le=600)
    interval: float = Field(default=0.2, gt=0, le=60)

    @model_validator(mode="after")
    def _some_probe(self) -> HealthSpec:
        if not any((self.http, self.tcp, self.container, self.supervisor, self.command)):
            raise ValueError("give at least one probe: http, tcp, container, supervisor or command")
        return self


class Probe(Protocol):
    """One kind of health probe. `check` looks once: None when healthy, else why not (one line)."""

    def check(self, service: str, spec: HealthSpec) -> str | None: ...


class HealthChecker:
    """Runs the probes a HealthSpec names, by kind, until all pass within its timeout."""

    def __init__(self, probes: Mapping[str, Probe]) -> None:
        self._probes = probes

    def check_once(self, service: str, spec: HealthSpec, kind: str) -> str | None:
        """One look by one kind of probe: None when it passes, else why not."""
        probe = self._probes.get(kind)
        if probe is None:
            return f"no backend for the {kind} probe"
        return probe.check(service, spec)

    def wait_healthy(self, service: str, spec: HealthSpec, stop: threading.Event | None = None) -> float:
        """Seconds it took to become healthy; HealthCheckFailed with the last reasons if it did not."""
        started = time.monotonic()
        deadline = started + spec.timeout
        kinds = [kind for kind in PROBE_KINDS if getattr(spec, kind) is not None]
        while True:
            reasons = []
            for kind in kinds:
                probe = self._probes.get(kind)
                if probe is None:
                    raise HealthCheckFailed(f"service {service}: no backend for the {kind} probe")
                try:
                    reason = probe.check(service, spec)
                except BackendUnavailable as exc:
                    reason = str(exc)
                if reason is not None:
                    reasons.append(f"{kind}: {reason}")
            if not reasons:
                return time.monotonic() - started
            if stop is not None and stop.is_set():
                raise Interrupted(f"service {service}: apphub is stopping; its health gate was cut short")
            if time.monotonic() + spec.interval > deadline:
                raise HealthCheckFailed(
                    f"service {service} did not become healthy within {spec.timeout:g} s: " + "; ".join(reasons)
                )
            if stop is not None:
                stop.wait(spec.interval)
            else:
                time.sleep(spec.interval)

