"""The container backend against a real engine (Podman's Docker-compatible socket).

Restart, signal and exec as the sync engine issues them, the `container` health probe behind the
health gate, and what a user sees when the engine is down, missing or hung.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphub.errors import BackendUnavailable, HealthCheckFailed, ReloadError
from apphub.reload.base import Reloaders
from apphub.reload.docker import ContainerEngine, ContainerProbe, container_strategies
from apphub.reload.health import HealthChecker
from apphub.sync.manifest import (
    Action,
    ContainerExecAction,
    ContainerRestartAction,
    ContainerSignalAction,
    HealthSpec,
)
from tests.containers.conftest import EXIT_ON_TERM, Containers, PodmanService, answers, wait_for

# PID 1 waits in a loop of short sleeps: a trap runs between two of them.
IDLE = "while true; do sleep 0.1; done"


def started_at(containers: Containers, name: str) -> str:
    return str(containers.attrs(name)["State"]["StartedAt"])


def gate(engine: ContainerEngine, container: str, timeout: float = 3.0) -> float:
    checker = HealthChecker({"container": ContainerProbe(engine)})
    return checker.wait_healthy("web", HealthSpec(container=container, timeout=timeout, interval=0.1))


# -- restart ---------------------------------------------------------------------------------------

def test_restart_returns_when_the_container_runs_again(engine: ContainerEngine, containers: Containers) -> None:
    name, url = containers.run_httpd()
    before = started_at(containers, name)
    reloaders = Reloaders(container_strategies(engine))

    began = time.monotonic()
    reloaders.run("web", ContainerRestartAction(strategy="container-restart", container=name, grace=5, timeout=30))
    took = time.monotonic() - began

    assert engine.status(name) == ("running", None)
    assert started_at(containers, name) != before
    assert took < 5, f"a restart of a container that stops on SIGTERM took {took:.2f} s"
    wait_for(lambda: answers(url), f"httpd in {name} answering again after the restart")
    assert gate(engine, name) < 1


def test_restart_kills_a_container_that_ignores_sigterm_after_the_grace(
    engine: ContainerEngine, containers: Containers,
) -> None:
    name = containers.run(IDLE)  # no TERM trap: PID 1 ignores SIGTERM
    before = started_at(containers, name)

    began = time.monotonic()
    engine.restart(name, grace=1, timeout=10)
    took = time.monotonic() - began

    assert 1 <= took < 5, took
    assert engine.status(name)[0] == "running"
    assert started_at(containers, name) != before


def test_restart_of_a_stopped_container_starts_it(engine: ContainerEngine, containers: Containers) -> None:
    name, url = containers.run_httpd()
    containers.stop(name)
    assert engine.status(name)[0] == "exited"
    assert not answers(url)

    engine.restart(name, grace=5, timeout=30)

    assert engine.status(name)[0] == "running"
    wait_for(lambda: answers(url), f"httpd in {name} answering after the restart")


def test_a_container_that_exits_after_restart_fails_the_health_gate(
    engine: ContainerEngine, containers: Containers,
) -> None:
    # The first start leaves a marker in the container's own filesystem; the second start finds it
    # and exits 1, as a service does when it rejects its new configuration.
    name = containers.run(
        f"{EXIT_ON_TERM}; if [ -e /tmp/started ]; then echo 'bad config: port' >&2; exit 1; fi;"
        f" echo > /tmp/started; {IDLE}"
    )
    assert gate(engine, name) < 1

    engine.restart(name, grace=5, timeout=30)  # it did start again: the restart itself succeeded

    wait_for(lambda: engine.status(name)[0] != "running", f"{name} to exit after its restart")
    reason = ContainerProbe(engine).check("web", HealthSpec(container=name))
    assert reason is not None
    assert "exit code 1" in reason
    assert "exited" in reason or "stopped" in reason  # Podman says "stopped" for a moment first
    with pytest.raises(HealthCheckFailed, match=r"service web did not become healthy.*exit code 1"):
        gate(engine, name, timeout=0.5)


# -- signal ----------------------------------------------------------------------------------------

def test_signal_reaches_pid_1(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; trap 'echo hup >> /tmp/x' HUP; trap 'echo usr1 >> /tmp/x' USR1; {IDLE}")
    before = started_at(containers, name)

    engine.signal(name, "HUP")
    wait_for(lambda: "hup" in containers.output(name, "cat", "/tmp/x"), "PID 1 to trap HUP")
    Reloaders(container_strategies(engine)).run(
        "web", ContainerSignalAction(strategy="container-signal", container=name, signal="SIGUSR1"),
    )
    wait_for(lambda: "usr1" in containers.output(name, "cat", "/tmp/x"), "PID 1 to trap USR1")

    assert containers.output(name, "cat", "/tmp/x").split() == ["hup", "usr1"]
    assert started_at(containers, name) == before  # a signal is not a restart


def test_signal_to_a_stopped_container_is_a_reload_error(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")
    containers.stop(name)
    action = ContainerSignalAction(strategy="container-signal", container=name)

    with pytest.raises(ReloadError, match=rf"^service web: container-signal: container {name} is not running"):
        Reloaders(container_strategies(engine)).run("web", action)


def test_a_signal_the_engine_does_not_know_is_a_reload_error(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")

    with pytest.raises(ReloadError, match="BOGUS"):
        engine.signal(name, "BOGUS")
    assert engine.status(name)[0] == "running"


# -- exec ------------------------------------------------------------------------------------------

def test_exec_runs_the_command_in_the_container(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")
    action = ContainerExecAction(strategy="container-exec", container=name,
                                 command=["sh", "-c", "echo reloaded > /tmp/done"], timeout=10)

    Reloaders(container_strategies(engine)).run("web", action)

    assert containers.output(name, "cat", "/tmp/done") == "reloaded\n"


def test_exec_failure_quotes_the_exit_code_and_the_end_of_the_output(
    engine: ContainerEngine, containers: Containers,
) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")
    script = ("i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo noise $i; done;"
              " echo 'nginx: [emerg] unknown directive' >&2; exit 3")
    action = ContainerExecAction(strategy="container-exec", container=name, command=["sh", "-c", script])

    with pytest.raises(ReloadError) as raised:
        Reloaders(container_strategies(engine)).run("web", action)

    message = str(raised.value)
    shown = shlex.join(["sh", "-c", script])
    assert message.startswith(f"service web: container-exec: `{shown}` in container {name} exited with code 3")
    assert message.endswith("nginx: [emerg] unknown directive")
    assert "noise 50" in message
    assert "noise 40\n" not in message  # only the tail is quoted


def test_exec_of_a_missing_program_is_a_reload_error(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")

    with pytest.raises(ReloadError, match=r"`nginx -s reload` in container .* exited with code 127: .*not found"):
        engine.exec(name, ["nginx", "-s", "reload"], timeout=10)


def test_exec_that_outlives_its_timeout_fails_the_reload(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")

    began = time.monotonic()
    with pytest.raises(ReloadError, match=r"`sleep 30` in container .* did not finish within 1 s"):
        engine.exec(name, ["sleep", "30"], timeout=1)
    assert time.monotonic() - began < 5


def test_exec_in_a_stopped_container_is_a_reload_error(engine: ContainerEngine, containers: Containers) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")
    containers.stop(name)

    with pytest.raises(ReloadError, match=rf"in container {name}: the engine answered \d+: .*running"):
        engine.exec(name, ["true"], timeout=10)


# -- the container probe ---------------------------------------------------------------------------

def test_probe_of_a_container_without_healthcheck_follows_its_state(
    engine: ContainerEngine, containers: Containers,
) -> None:
    name = containers.run(f"trap 'exit 7' TERM; {IDLE}")
    probe = ContainerProbe(engine)
    assert engine.status(name) == ("running", None)  # Podman reports Health {"Status": ""}: no healthcheck
    assert probe.check("web", HealthSpec(container=name)) is None

    containers.stop(name)

    assert probe.check("web", HealthSpec(container=name)) == f"container {name} is exited (exit code 7)"


def test_probe_waits_for_a_healthcheck_that_never_runs_and_passes_once_it_has(
    engine: ContainerEngine, containers: Containers,
) -> None:
    healthcheck = {"test": ["CMD-SHELL", "echo all good"], "interval": 1_000_000_000, "retries": 1}
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}", healthcheck=healthcheck)
    probe = ContainerProbe(engine)
    spec = HealthSpec(container=name)

    # No systemd here, so Podman's healthcheck timer never fires: the health stays "starting".
    # Sleeping is the point: longer than the 1 s interval, and still nothing has run.
    time.sleep(1.5)
    assert engine.status(name) == ("running", "starting")
    reason = probe.check("web", spec)
    assert reason is not None
    assert "health starting: no healthcheck has run since it started" in reason
    assert f"podman healthcheck run {name}" in reason

    ran = containers.podman("healthcheck", "run", name)
    assert ran.returncode == 0, ran.stderr
    assert engine.status(name) == ("running", "healthy")
    assert probe.check("web", spec) is None

    # A restart starts the health over; the successful run from before does not count.
    engine.restart(name, grace=5, timeout=30)
    assert engine.status(name) == ("running", "starting")
    reason = probe.check("web", spec)
    assert reason is not None
    assert "no healthcheck has run since it started" in reason


def test_probe_of_an_unhealthy_container_quotes_the_last_check(
    engine: ContainerEngine, containers: Containers,
) -> None:
    healthcheck = {"test": ["CMD-SHELL", "echo 'GET /health: 503' >&2; exit 1"], "interval": 1_000_000_000,
                   "retries": 1}
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}", healthcheck=healthcheck)

    assert containers.podman("healthcheck", "run", name).returncode == 1

    reason = ContainerProbe(engine).check("web", HealthSpec(container=name))
    assert reason == (f"container {name} is running, health unhealthy (failing streak 1);"
                      " last check: exit code 1: GET /health: 503")


# -- what the user sees when something is missing --------------------------------------------------

def test_an_unknown_container_is_a_reload_error(engine: ContainerEngine, podman_service: PodmanService) -> None:
    missing = "apphub-test-no-such-container"
    reloaders = Reloaders(container_strategies(engine))
    actions: list[Action] = [
        ContainerRestartAction(strategy="container-restart", container=missing),
        ContainerSignalAction(strategy="container-signal", container=missing),
        ContainerExecAction(strategy="container-exec", container=missing, command=["true"]),
    ]
    for action in actions:
        with pytest.raises(ReloadError, match=rf"^service web: {action.strategy}: container {missing} does not exist$"):
            reloaders.run("web", action)
    with pytest.raises(ReloadError, match=f"container {missing} does not exist"):
        engine.status(missing)
    assert ContainerProbe(engine).check("web", HealthSpec(container=missing)) == \
        f"container {missing} does not exist"


@pytest.fixture
def own_service(podman_environment: dict[str, str], tmp_path: Path) -> Iterator[PodmanService]:
    """A second Podman service that a test may stop and start again."""
    service = PodmanService(tmp_path / "podman.sock", podman_environment, tmp_path / "service.log")
    try:
        yield service
    finally:
        service.stop()


def test_engine_down_is_backend_unavailable_and_recovers_when_it_is_back(
    own_service: PodmanService, containers: Containers,
) -> None:
    name = containers.run(f"{EXIT_ON_TERM}; {IDLE}")
    own_service.start()
    engine = ContainerEngine(own_service.url, timeout=10)
    assert engine.status(name)[0] == "running"
    assert engine.is_podman

    own_service.stop()
    action = ContainerRestartAction(strategy="container-restart", container=name)
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match=rf"container engine at {own_service.url} cannot be reached"):
        Reloaders(container_strategies(engine)).run("web", action)
    assert time.monotonic() - began < 5
    # The health gate reports it as a reason instead of crashing.
    with pytest.raises(HealthCheckFailed, match="cannot be reached"):
        gate(engine, name, timeout=0.3)

    own_service.start()
    engine.restart(name, grace=5, timeout=30)
    assert engine.status(name)[0] == "running"


def test_a_socket_path_that_does_not_exist_is_backend_unavailable(tmp_path: Path) -> None:
    engine = ContainerEngine(f"unix://{tmp_path}/nothing.sock", timeout=10)

    began = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        engine.signal("web", "HUP")
    assert time.monotonic() - began < 5
    assert str(raised.value) == (f"the container engine at unix://{tmp_path}/nothing.sock cannot be reached:"
                                 " FileNotFoundError: No such file or directory")


def test_an_engine_that_accepts_but_never_answers_times_out(tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(8)  # connections wait in the backlog, never accepted, never answered
        engine = ContainerEngine(f"unix://{path}", timeout=1)

        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match=rf"container engine at unix://{path} did not answer within 1 s"):
            engine.restart("web", grace=10, timeout=30)
        assert time.monotonic() - began < 5

