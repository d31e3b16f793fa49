"""pytest fixtures: one fresh stand-in per test, stopped after it.

Use them from a conftest (`from tests.standins.fixtures import npm_standin, ...`) or a test module. A test of
an initialiser should end with `assert standin.violations == []`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.standins.cockpit import CockpitStandIn
from tests.standins.gitea import GiteaStandIn
from tests.standins.npm import NpmStandIn
from tests.standins.portainer import PortainerStandIn

__all__ = ["cockpit_standin", "gitea_standin", "npm_standin", "portainer_standin"]


@pytest.fixture
def npm_standin() -> Iterator[NpmStandIn]:
    """Nginx Proxy Manager 2.15.1 with no user yet (setup mode)."""
    with NpmStandIn() as standin:
        yield standin


@pytest.fixture
def gitea_standin() -> Iterator[GiteaStandIn]:
    """Gitea 1.26.3, installed (INSTALL_LOCK) but with no user yet."""
    with GiteaStandIn() as standin:
        yield standin


@pytest.fixture
def portainer_standin() -> Iterator[PortainerStandIn]:
    """Portainer 2.23 with no admin yet, inside its init window, without a setup token."""
    with PortainerStandIn() as standin:
        yield standin


@pytest.fixture
def cockpit_standin() -> Iterator[CockpitStandIn]:
    with CockpitStandIn() as standin:
        yield standin
