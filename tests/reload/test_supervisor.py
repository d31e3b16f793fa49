"""The supervisord backend against a real supervisord: restart, signal, the probe, and failures of
the program and of supervisord itself (down, hung, wrong credentials)."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apphub.errors import BackendUnavailable, HealthCheckFailed, ReloadError
from apphub.reload.health import HealthChecker
from apphub.reload.supervisor import SupervisorClient, SupervisorProbe, supervisor_strategies
from apphub.sync.manifest import HealthSpec, SupervisorRestartAction, SupervisorSignalAction
from tests.conftest import free_port
from tests.reload.conftest import PYTHON, RPC_PASSWORD, RPC_USER, server_program

# startsecs=3, not 1: supervisord reaps a child only once per turn of its 1 s poll loop, so a
# program that exits at once can be seen to outlive startsecs=1 (RUNNING, then EXITED).
BROKEN = f"""\
    command={PYTHON} {{fails}}
    autostart=false
    startsecs=3
    startretries=1
    autorestart=false
    """


def restart_action(program: str, timeout: float = 20) -> SupervisorRestartAction:
    return SupervisorRestartAction(strategy="supervisor-restart", program=program, timeout=timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still has a pid; it is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_restart_replaces_the_process_and_returns_once_running(start_supervisord, scripts, tmp_path):
    port = free_port()
    daemon = start_supervisord({"web": server_program(scripts, port, tmp_path / "hup")})
    before = int(daemon.wait_state("web", "RUNNING")["pid"])
    reload = supervisor_strategies(daemon.client())["supervisor-restart"]

    started = time.monotonic()
    reload("web", restart_action("web"))
    took = time.monotonic() - started

    info = daemon.client().state("web")
    assert info["statename"] == "RUNNING"  # at once: the restart returned after startsecs, not before
    assert took >= 0.9, f"returned after {took:.2f} s, before the program's startsecs=1 had passed"
    after = int(info["pid"])
    assert after != before
    assert not pid_alive(before)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == str(after)


def test_restart_starts_a_stopped_program(start_supervisord, scripts, tmp_path):
    port = free_port()
    daemon = start_supervisord({"web": server_program(scripts, port, tmp_path / "hup", autostart=False)})
    assert daemon.client().state("web")["statename"] == "STOPPED"

    daemon.client().restart("web", timeout=20)

    info = daemon.client().state("web")
    assert info["statename"] == "RUNNING"
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == str(info["pid"])


def test_a_program_that_dies_at_start_fails_the_restart_with_its_cause_and_the_probe_says_why(
        start_supervisord, scripts):
    daemon = start_supervisord({"api": BROKEN.format(fails=scripts["fails"])})
    reload = supervisor_strategies(daemon.client())["supervisor-restart"]

    with pytest.raises(ReloadError) as raised:
        reload("api-service", restart_action("api"))

    message = str(raised.value)
    assert "service api-service" in message
    assert "supervisor-restart" in message
    assert "'api'" in message
    # supervisord reports a program that exits within startsecs as SPAWN_ERROR "Exited too quickly".
    assert "SPAWN_ERROR" in message
    assert "Exited too quickly" in message
    assert "config error: listen port is missing" in message  # the program's own stderr

    probe = SupervisorProbe(daemon.client())
    reason = probe.check("api-service", HealthSpec(supervisor="api"))
    assert reason is not None
    assert "BACKOFF" in reason or "FATAL" in reason
    daemon.wait_state("api", "FATAL")
    reason = probe.check("api-service", HealthSpec(supervisor="api"))
    assert reason is not None
    assert "FATAL" in reason
    assert "Exited too quickly" in reason

    checker = HealthChecker({"supervisor": probe})
    with pytest.raises(HealthCheckFailed, match="FATAL"):
        checker.wait_healthy("api-service", HealthSpec(supervisor="api", timeout=0.5, interval=0.1))


def test_a_program_whose_command_is_missing_fails_the_restart(start_supervisord):
    daemon = start_supervisord({"ghost": "command=/nonexistent/bin/ghostd --serve\nautostart=false"})

    with pytest.raises(ReloadError) as raised:
        daemon.client().restart("ghost", timeout=10)

    assert "NO_FILE" in str(raised.value)
    assert "/nonexistent/bin/ghostd" in str(raised.value)
    assert "'ghost'" in str(raised.value)


def test_restart_that_outlasts_its_timeout_is_a_reload_error_not_an_unreachable_supervisord(
        start_supervisord, scripts, tmp_path):
    # supervisord holds startProcess(wait=True) open until startsecs have passed: 30 s here.
    daemon = start_supervisord({
        "slow": server_program(scripts, free_port(), tmp_path / "hup", autostart=False, startsecs=30),
    })

    started = time.monotonic()
    with pytest.raises(ReloadError) as raised:
        daemon.client().restart("slow", timeout=1.0)

    assert time.monotonic() - started < 5
    assert not isinstance(raised.value, BackendUnavailable)
    assert "did not finish within 1 s" in str(raised.value)
    assert "STARTING" in str(raised.value)


def test_signal_reaches_the_program(start_supervisord, scripts, tmp_path):
    marker = tmp_path / "hup"
    daemon = start_supervisord({"web": server_program(scripts, free_port(), marker)})
    pid = int(daemon.wait_state("web", "RUNNING")["pid"])
    reload = supervisor_strategies(daemon.client())["supervisor-signal"]

    reload("web", SupervisorSignalAction(strategy="supervisor-signal", program="web", signal="HUP"))

    deadline = time.monotonic() + 5
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the program never saw SIGHUP"
        time.sleep(0.02)
    assert marker.read_text() == f"HUP {pid}\n"
    assert daemon.client().state("web")["pid"] == pid  # signalled, not restarted


def test_signal_to_a_stopped_program_or_an_unknown_signal_fails(start_supervisord, scripts, tmp_path):
    daemon = start_supervisord({
        "idle": server_program(scripts, free_port(), tmp_path / "idle", autostart=False),
        "web": server_program(scripts, free_port(), tmp_path / "web"),
    })
    reload = supervisor_strategies(daemon.client())["supervisor-signal"]

    with pytest.raises(ReloadError, match=r"service idle-svc: supervisor-signal: .*'idle'.*NOT_RUNNING.*STOPPED"):
        reload("idle-svc", SupervisorSignalAction(strategy="supervisor-signal", program="idle", signal="HUP"))

    daemon.wait_state("web", "RUNNING")
    with pytest.raises(ReloadError, match="BAD_SIGNAL"):
        daemon.client().signal("web", "NOSUCHSIGNAL")
    assert daemon.client().state("web")["statename"] == "RUNNING"


def test_an_unknown_program_is_bad_name(start_supervisord, scripts, tmp_path):
    daemon = start_supervisord({"web": server_program(scripts, free_port(), tmp_path / "hup")})
    client = daemon.client()

    with pytest.raises(ReloadError, match=r"'nosuch'.*BAD_NAME.*not in supervisord's config"):
        client.restart("nosuch", timeout=10)
    with pytest.raises(ReloadError, match="BAD_NAME"):
        client.signal("nosuch", "HUP")
    reason = SupervisorProbe(client).check("svc", HealthSpec(supervisor="nosuch"))
    assert reason is not None
    assert "BAD_NAME" in reason


def test_the_probe_names_stopped_and_exited_states(start_supervisord, scripts, tmp_path):
    daemon = start_supervisord({
        "web": server_program(scripts, free_port(), tmp_path / "hup"),
        "idle": server_program(scripts, free_port(), tmp_path / "idle", autostart=False),
        "batch": f"command={PYTHON} {scripts['exits_later']} 1.3\nstartsecs=1\nautorestart=false",
    })
    probe = SupervisorProbe(daemon.client())

    assert probe.check("s", HealthSpec(supervisor="web")) == "program 'web' is STARTING (not yet up for its startsecs)"
    daemon.wait_state("web", "RUNNING")
    assert probe.check("s", HealthSpec(supervisor="web")) is None
    assert probe.check("s", HealthSpec(supervisor="idle")) == "program 'idle' is STOPPED"
    daemon.wait_state("batch", "EXITED")
    assert probe.check("s", HealthSpec(supervisor="batch")) == "program 'batch' is EXITED with status 4"


def test_supervisord_killed_is_backend_unavailable_quickly(start_supervisord, scripts, tmp_path):
    daemon = start_supervisord({"web": server_program(scripts, free_port(), tmp_path / "hup")})
    daemon.wait_state("web", "RUNNING")
    strategies = supervisor_strategies(daemon.client())
    daemon.kill_hard()  # the socket file stays behind, with no one listening

    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        strategies["supervisor-restart"]("web-svc", restart_action("web"))
    assert time.monotonic() - started < 5
    assert "service web-svc: supervisor-restart" in str(raised.value)
    assert f"supervisord at unix://{daemon.socket_path} cannot be reached" in str(raised.value)
    assert "refused" in str(raised.value)

    with pytest.raises(BackendUnavailable):
        strategies["supervisor-signal"](
            "web-svc", SupervisorSignalAction(strategy="supervisor-signal", program="web"))
    # The health gate sees it as a reason, not a crash.
    checker = HealthChecker({"supervisor": SupervisorProbe(daemon.client())})
    with pytest.raises(HealthCheckFailed, match="cannot be reached"):
        checker.wait_healthy("web-svc", HealthSpec(supervisor="web", timeout=0.3, interval=0.1))


def test_supervisord_stopped_leaves_no_socket_and_is_backend_unavailable(start_supervisord):
    daemon = start_supervisord({})
    daemon.stop()
    assert not daemon.socket_path.exists()

    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="the socket does not exist"):
        daemon.client().state("web")
    assert time.monotonic() - started < 5


@pytest.fixture
def hung_socket() -> Iterator[Path]:
    """A unix socket that accepts, reads the request and never answers (a supervisord stuck in a call)."""
    folder = Path(tempfile.mkdtemp(prefix="apphub-hung-"))
    path = folder / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(connection)
            connection.settimeout(0.1)
            with contextlib.suppress(OSError):  # read what the client sends, then say nothing
                connection.recv(65536)

    thread = threading.Thread(target=serve, name="hung-supervisord", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for connection in accepted:
            connection.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def test_a_supervisord_that_never_answers_times_out_as_backend_unavailable(hung_socket):
    client = SupervisorClient(f"unix://{hung_socket}", timeout=0.5)

    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="did not answer getProcessInfo within the timeout"):
        client.state("web")
    assert time.monotonic() - started < 2

    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="did not answer stopProcess"):
        supervisor_strategies(client)["supervisor-restart"]("web-svc", restart_action("web", timeout=1.0))
    assert time.monotonic() - started < 4


def test_the_tcp_interface_with_credentials(start_supervisord, scripts, tmp_path):
    daemon = start_supervisord({"web": server_program(scripts, free_port(), tmp_path / "hup")})
    daemon.wait_state("web", "RUNNING")

    client = SupervisorClient(daemon.http_url)
    assert client.state("web")["statename"] == "RUNNING"
    client.restart("web", timeout=20)
    assert client.state("web")["statename"] == "RUNNING"

    wrong = SupervisorClient(f"http://{RPC_USER}:not-the-password@127.0.0.1:{daemon.http_port}")
    with pytest.raises(BackendUnavailable) as raised:
        wrong.state("web")
    assert "HTTP 401" in str(raised.value)
    assert "not-the-password" not in str(raised.value)
    assert f"http://{RPC_USER}:***@127.0.0.1:{daemon.http_port}" in str(raised.value)
    assert RPC_PASSWORD not in repr(client.url)


def test_urls_that_name_no_supervisord_are_refused():
    with pytest.raises(ValueError, match=r"unix:// or http://"):
        SupervisorClient("https://127.0.0.1:9001")
    with pytest.raises(ValueError, match="names no socket"):
        SupervisorClient("unix://")

