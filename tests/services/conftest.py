"""A data folder whose config.ini points at the stand-ins, and the ServiceManager over it.

Gitea's CLI runs "in its container" through `run_in_container`: here a real `sh` runs apphub's command
with tests/standins/gitea-cli.sh as `gitea`, which hands its argv to the stand-in, as it does in a
busybox container.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apphub.core import Core
from apphub.db import Database
from apphub.services.manager import INIT_ACTOR, ServiceManager
from apphub.services.status import InitStatus
from tests.standins.cockpit import CockpitStandIn
from tests.standins.fixtures import cockpit_standin, gitea_standin, npm_standin, portainer_standin
from tests.standins.gitea import GiteaStandIn
from tests.standins.npm import NpmStandIn
from tests.standins.portainer import PortainerStandIn

__all__ = ["cockpit_standin", "gitea_standin", "npm_standin", "portainer_standin"]

PRODUCTS = "nginx_proxy_manager,gitea,portainer,cockpit"
GITEA_CLI = Path(__file__).resolve().parent.parent / "standins" / "gitea-cli.sh"


@dataclass
class GiteaContainer:
    """Gitea's container, as far as apphub's exec sees it: the command runs in a real `sh` whose PATH has
    a `gitea` that is tests/standins/gitea-cli.sh (busybox wget to the stand-in's CLI route)."""

    standin: GiteaStandIn
    bin_dir: Path
    runs: list[tuple[str, list[str], str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        shims = {"gitea": f'exec /bin/busybox sh {GITEA_CLI} "$@"', "wget": 'exec /bin/busybox wget "$@"'}
        for name, line in shims.items():
            shim = self.bin_dir / name
            shim.write_text(f"#!/bin/sh\n{line}\n")
            shim.chmod(0o755)

    def __call__(self, container: str, command: list[str], *, user: str, shown: str,
                 environment: Mapping[str, str]) -> tuple[int | None, str]:
        self.runs.append((container, command, user, dict(environment)))
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, env={
            "PATH": f"{self.bin_dir}:/usr/bin:/bin", "GITEA_STANDIN_URL": self.standin.url, **environment})
        return done.returncode, done.stdout + done.stderr


@dataclass
class Stage:
    core: Core
    manager: ServiceManager
    npm: NpmStandIn
    gitea: GiteaStandIn
    portainer: PortainerStandIn
    cockpit: CockpitStandIn
    container: GiteaContainer

    def secret(self, section: str, key: str) -> str:
        found = self.core.config.snapshot().secret(section, key)
        return found.reveal() if found is not None else ""

    def violations(self) -> list[str]:
        return [*self.npm.violations, *self.gitea.violations, *self.portainer.violations, *self.cockpit.violations]


def point_at_standins(core: Core, npm: NpmStandIn, gitea: GiteaStandIn, portainer: PortainerStandIn,
                      cockpit: CockpitStandIn, enabled: str = PRODUCTS) -> None:
    port = cockpit.url.rsplit(":", 1)[1]
    core.config.update({
        "nginx_proxy_manager": {"base_url": f"{npm.url}/api"},
        "gitea": {"base_url": f"{gitea.url}/api/v1"},
        "portainer": {"base_url": f"{portainer.url}/api"},
        "cockpit": {"port": int(port)},
    }, INIT_ACTOR)
    core.system.update({"services": {"enabled": enabled, "step_timeout_s": 2, "step_attempts": 4,
                                     "cockpit_host": "127.0.0.1"}}, INIT_ACTOR)


@pytest.fixture
def stage(core: Core, npm_standin: NpmStandIn, gitea_standin: GiteaStandIn, portainer_standin: PortainerStandIn,
          cockpit_standin: CockpitStandIn) -> Iterator[Stage]:
    point_at_standins(core, npm_standin, gitea_standin, portainer_standin, cockpit_standin)
    database = Database(core.data.database)
    container = GiteaContainer(gitea_standin, core.data.root.parent / "gitea-bin")
    manager = ServiceManager(core, InitStatus(database), run_in_container=container)
    try:
        yield Stage(core, manager, npm_standin, gitea_standin, portainer_standin, cockpit_standin, container)
    finally:
        manager.stop.set()
        database.close()
