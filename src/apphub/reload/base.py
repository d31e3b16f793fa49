"""The contract between the sync engine and the ways services reload and report health.

The engine never opens a socket or a process itself: it is given a `Reloaders` (one callable per
strategy) and a `HealthChecker`, built from system.ini's [sync] connection settings by
`apphub.reload.build`. Each backend module implements its strategies and probes; a test can hand
the engine its own callables for the corner cases the real backends cannot produce on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from apphub.sync.manifest import Action, HealthSpec

# Carries out one action for one service, within action.timeout; raises ReloadError (or
# BackendUnavailable) naming the service, the strategy and the cause. Returns once the action
# is done (a restart has restarted); whether the service is healthy is the health gate's job.
ReloadFn = Callable[[str, Action], None]


class Probe(Protocol):
    """One kind of health probe. `check` looks once: None when healthy, else why not (one line)."""

    def check(self, service: str, spec: HealthSpec) -> str | None: ...


@dataclass
class Reloaders:
    """The reload callables by strategy name (`none` is built in)."""

    by_strategy: Mapping[str, ReloadFn] = field(default_factory=dict)

    def run(self, service: str, action: Action) -> None:
        if action.strategy == "none":
            return
        run = self.by_strategy.get(action.strategy)
        if run is None:
            from apphub.errors import ReloadError

            raise ReloadError(f"service {service}: no backend for the strategy {action.strategy!r}")
        run(service, action)
