"""The connection test of the container engine (`apphub services`' `docker` line) against real Podman."""

from __future__ import annotations

from pathlib import Path

from apphub.services.engines import check_engine
from tests.containers.conftest import PodmanService


def test_a_running_engine_is_healthy_with_its_name_and_versions(podman_service: PodmanService) -> None:
    check = check_engine(podman_service.url)

    assert check.health == "healthy", check.reason
    assert check.version is not None
    assert check.version.startswith("Podman ")
    assert "(API " in check.version


def test_an_engine_that_is_not_there_is_down_with_why(tmp_path: Path) -> None:
    check = check_engine(f"unix://{tmp_path / 'none.sock'}")

    assert check.health == "down"
    assert "cannot be reached" in (check.reason or "")
    assert str(tmp_path / "none.sock") in (check.reason or "")
