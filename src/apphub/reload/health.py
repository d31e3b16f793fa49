"""The health gate: after a reload, wait until every probe of the service passes, or give up.

A probe's reason is kept whole (it can quote a response body or a command's output, which can
hold a secret); the sync engine masks secrets in the message and only then shortens it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from apphub.errors import BackendUnavailable, HealthCheckFailed, Interrupted
from apphub.reload.base import Probe
from apphub.sync.manifest import HealthSpec

PROBE_KINDS = ("http", "tcp", "container", "supervisor", "command")


class HealthChecker:
    """Runs the probes a HealthSpec names, by kind, until all pass within its timeout."""

    def __init__(self, probes: Mapping[str, Probe]) -> None:
        self._probes = probes

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

