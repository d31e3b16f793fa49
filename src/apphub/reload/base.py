"""The contract between the sync engine and the ways services reload and report health.

The engine never opens a socket or a process itself: it is given `Backends` (one callable per
strategy, a HealthChecker, and a look at a container's environment), built from system.ini's
[sync] connection settings by `apphub.reload.build`. Each backend module defines the action
specifications it carries out (the manifest builds them from services.yaml) and implements them;
`reload` imports nothing from `sync`. A test can hand the engine its own callables for the corner
cases the real backends cannot produce on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from apphub.reload.health import HealthChecker


class Spec(BaseModel):
    """A specification read from services.yaml: unknown fields refused, never changed once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionSpec(Spec):
    """One way of making a service take new configuration; each backend defines its own."""

    strategy: str
    timeout: float = Field(default=30.0, gt=0, le=600)
    # A failure leaves things as they were (a recreate puts the old container back itself), so a
    # rollback does not run the action again.
    undoes_itself: ClassVar[bool] = False


class NoAction(ActionSpec):
    strategy: Literal["none"]


NO_ACTION = NoAction(strategy="none")


class Undo(Protocol):
    """What an action that can be taken back returns (a recreate keeps the old container aside):
    `keep` once the service is healthy, `undo` when it is not."""

    def keep(self) -> None: ...

    def undo(self) -> None: ...


# Carries out one action for one service, within action.timeout; raises ReloadError (or
# BackendUnavailable) naming the service, the strategy and the cause. Returns once the action
# is done (a restart has restarted); whether the service is healthy is the health gate's job.
# An action that can be taken back as a whole returns its Undo; the others return None.
ReloadFn = Callable[[str, ActionSpec], "Undo | None"]


@dataclass(frozen=True)
class ContainerEnv:
    """The environment a container was created with, and which of its names apphub set (the
    label `io.apphub.env` of a container apphub recreated: what to remove when one is unset)."""

    env: dict[str, str]
    managed: frozenset[str] = frozenset()


# A container's environment now; None if there is no such container.
EnvReader = Callable[[str], "ContainerEnv | None"]


@dataclass
class Reloaders:
    """The reload callables by strategy name (`none` is built in)."""

    by_strategy: Mapping[str, ReloadFn] = field(default_factory=dict)

    def run(self, service: str, action: ActionSpec) -> Undo | None:
        if action.strategy == "none":
            return None
        run = self.by_strategy.get(action.strategy)
        if run is None:
            from apphub.errors import ReloadError

            raise ReloadError(f"service {service}: no backend for the strategy {action.strategy!r}")
        return run(service, action)


def _no_container(name: str) -> ContainerEnv | None:
    from apphub.errors import BackendUnavailable

    raise BackendUnavailable(f"container {name}: no container engine is configured")


@dataclass
class Backends:
    """How services are reloaded and probed, and where a container's current env is read."""

    reloaders: Reloaders
    health: HealthChecker
    container_env: EnvReader = _no_container
    # At start: finish or take back what a killed apphub left half done to these containers (one
    # line per thing done); only the manifest's own: the engine may run other apphubs' containers.
    recover: Callable[[Iterable[str]], list[str]] = lambda containers: []
