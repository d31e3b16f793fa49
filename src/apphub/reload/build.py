"""Building the reload strategies and health probes from system.ini [sync]: the one place that
knows every backend, so that the engine only sees `Backends`."""

from __future__ import annotations

from typing import Protocol

from apphub.reload.base import Backends, Reloaders
from apphub.reload.docker import ContainerEngine, ContainerProbe, container_strategies
from apphub.reload.health import HealthChecker
from apphub.reload.httphook import http_strategies
from apphub.reload.probes import CommandProbe, HttpProbe, TcpProbe
from apphub.reload.process import process_strategies
from apphub.reload.recreate import Recreator, recreate_strategies
from apphub.reload.supervisor import SupervisorClient, SupervisorProbe, supervisor_strategies
from apphub.reload.supervisor_env import supervisor_env_strategies


class Connections(Protocol):
    """Where the backends are (the sync engine's settings from system.ini [sync] have these)."""

    @property
    def supervisor_url(self) -> str: ...

    @property
    def docker_url(self) -> str: ...


def build_backends(settings: Connections) -> Backends:
    """Connections are made lazily: a backend no service uses is never contacted."""
    supervisor = SupervisorClient(settings.supervisor_url)
    containers = ContainerEngine(settings.docker_url)
    reloaders = Reloaders({
        **process_strategies(),
        **http_strategies(),
        **supervisor_strategies(supervisor),
        **supervisor_env_strategies(supervisor),
        **container_strategies(containers),
        **recreate_strategies(containers),
    })
    health = HealthChecker({
        "http": HttpProbe(),
        "tcp": TcpProbe(),
        "command": CommandProbe(),
        "supervisor": SupervisorProbe(supervisor),
        "container": ContainerProbe(containers),
    })
    # what a killed apphub left of a recreate, put right at the next start (reload/recreate.py)
    return Backends(reloaders, health, containers.environment, Recreator(containers).recover)
