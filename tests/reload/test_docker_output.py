"""What the container backend quotes of a container's output, against a real engine (Podman):
whole lines only, so that the sync engine can mask a secret in them before it shortens the text
(issue 8). A line someone else cut (the engine's cut of a healthcheck's output, the 64 KiB of an
exec's output kept) is left out, since part of a secret would be no secret's spelling."""

from __future__ import annotations

import pytest

from apphub.errors import ReloadError
from apphub.reload.docker import ContainerEngine, ContainerProbe
from apphub.sync.manifest import HealthSpec
from apphub.sync.redact import redact
from apphub.sync.values import secret_spellings
from tests.containers.conftest import (
    EXIT_ON_TERM,
    Containers,
    containers,
    engine,
    podman_environment,
    podman_service,
    test_image,
)
from tests.sync.conftest import fragments, make_secret

__all__ = ["containers", "engine", "podman_environment", "podman_service", "test_image"]  # fixtures, used by name

IDLE = f"{EXIT_ON_TERM}; while true; do sleep 0.1; done"


def repeat(char: str, count: int) -> str:
    """A busybox shell expression printing `char` `count` times, no newline."""
    return f"i=0; while [ $i -lt {count} ]; do printf {char}; i=$((i+1)); done"


@pytest.mark.parametrize("kept", [1, 4, 12, 23])
def test_an_exec_failure_quotes_its_last_line_whole(engine: ContainerEngine, containers: Containers,
                                                    kept: int) -> None:
    secret = make_secret(24)
    name = containers.run(IDLE)
    # The secret across the 600th character from the end of the output: where the quote was cut.
    script = f"{repeat('a', 50)}; printf {secret}; {repeat('b', 600 - kept)}; echo; exit 3"

    with pytest.raises(ReloadError) as raised:
        engine.exec(name, ["sh", "-c", script], timeout=20)

    message = str(raised.value)
    assert "exited with code 3" in message
    assert secret in message, "the line is quoted whole"
    assert fragments(secret, redact(message, secret_spellings([secret]))) == []


def test_an_exec_output_over_64_kib_leaves_out_the_line_the_kept_part_begins_in(
        engine: ContainerEngine, containers: Containers) -> None:
    secret = make_secret(24)
    name = containers.run(IDLE)
    # 70,000 characters, the secret across the 65,536th from the end; then one more line.
    script = (f"{repeat('a', 70000 - 65536 - 10)}; printf {secret}; {repeat('b', 65536 - 14 - 11)}; echo;"
              " echo the last line; exit 3")

    with pytest.raises(ReloadError) as raised:
        engine.exec(name, ["sh", "-c", script], timeout=60)

    quoted = str(raised.value).split("exited with code 3: ", 1)[1]  # the command holds the secret itself
    assert quoted == "the last line"
    assert fragments(secret, quoted) == []


def test_a_healthcheck_output_the_engine_cut_is_not_quoted_in_part(engine: ContainerEngine,
                                                                    containers: Containers) -> None:
    secret = make_secret(40)
    # Podman keeps the first 500 characters of a check's output: the secret is cut at its 20th.
    script = f"echo first line; {repeat('a', 500 - 11 - 20)}; echo {secret}; exit 1"
    healthcheck = {"test": ["CMD-SHELL", script], "interval": 1_000_000_000, "retries": 1}
    name = containers.run(IDLE, healthcheck=healthcheck)
    assert containers.podman("healthcheck", "run", name).returncode == 1

    reason = ContainerProbe(engine).check("web", HealthSpec(container=name))

    assert reason is not None
    assert reason.endswith("last check: exit code 1: first line | (the rest, cut by the engine, is not shown)")
    assert fragments(secret, reason) == []
