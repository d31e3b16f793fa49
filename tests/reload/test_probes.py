"""The http, tcp and command health probes against real servers and processes, alone and through
the health gate."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from apphub.errors import HealthCheckFailed
from apphub.reload.health import HealthChecker
from apphub.reload.probes import CommandProbe, HttpProbe, TcpProbe
from apphub.sync.manifest import HealthSpec
from tests.conftest import free_port

PYTHON = sys.executable


# -- http -----------------------------------------------------------------------------------------


def test_http_probe_is_healthy_on_2xx(loopback):
    assert HttpProbe().check("web", HealthSpec(http=f"{loopback.url}/health")) is None
    assert loopback.requests == [("GET", "/health")]


def test_http_probe_reports_a_non_2xx_answer_with_its_body(loopback):
    loopback.respond = lambda m, path: (503, '{"status": "database unreachable"}')

    reason = HttpProbe().check("web", HealthSpec(http=f"{loopback.url}/health"))

    assert reason == (f"GET {loopback.url}/health answered HTTP 503 Service Unavailable: "
                      '{"status": "database unreachable"}')


def test_http_probe_reports_connection_refused():
    url = f"http://127.0.0.1:{free_port()}/health"

    reason = HttpProbe().check("web", HealthSpec(http=url))

    assert reason == f"GET {url}: connection refused (is the service listening?)"


def test_http_probe_gives_up_on_one_try_after_its_per_try_timeout(loopback):
    loopback.delay = 3.0
    started = time.monotonic()

    reason = HttpProbe(try_timeout=0.3).check("web", HealthSpec(http=f"{loopback.url}/health", timeout=30))

    assert reason is not None
    assert "no answer within 0.3 s" in reason
    assert time.monotonic() - started < 2


def test_http_probe_try_never_outlasts_the_whole_health_timeout(loopback):
    loopback.delay = 3.0
    started = time.monotonic()

    reason = HttpProbe(try_timeout=10).check("web", HealthSpec(http=f"{loopback.url}/health", timeout=0.4))

    assert reason is not None
    assert "no answer within 0.4 s" in reason
    assert time.monotonic() - started < 2


def test_the_health_gate_waits_for_a_service_coming_back(loopback):
    # Three answers of "still starting", then healthy.
    loopback.respond = lambda m, path: (503, "starting") if len(loopback.requests) <= 3 else (200, "ok")

    took = HealthChecker({"http": HttpProbe()}).wait_healthy(
        "web", HealthSpec(http=f"{loopback.url}/health", timeout=10, interval=0.05))

    assert len(loopback.requests) == 4
    assert took < 5


def test_the_health_gate_fails_with_the_last_reason(loopback):
    loopback.respond = lambda m, path: (500, "boom")

    with pytest.raises(HealthCheckFailed) as raised:  # 2 s: a loaded machine's loopback may take over 0.5 s
        HealthChecker({"http": HttpProbe()}).wait_healthy(
            "web", HealthSpec(http=f"{loopback.url}/health", timeout=2.0, interval=0.1))

    assert "service web did not become healthy within 2 s" in str(raised.value)
    assert "http: GET" in str(raised.value)
    assert "HTTP 500 Internal Server Error: boom" in str(raised.value)


# -- tcp ------------------------------------------------------------------------------------------


def test_tcp_probe_is_healthy_when_the_port_accepts():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert TcpProbe().check("db", HealthSpec(tcp=f"127.0.0.1:{port}")) is None


def test_tcp_probe_reports_a_closed_port():
    port = free_port()

    reason = TcpProbe().check("db", HealthSpec(tcp=f"127.0.0.1:{port}"))

    assert reason == f"tcp 127.0.0.1:{port}: connection refused (is the service listening?)"


def test_tcp_probe_reports_a_host_that_does_not_resolve():
    reason = TcpProbe(try_timeout=1).check("db", HealthSpec(tcp="no-such-host.invalid:5432"))

    assert reason is not None
    assert reason.startswith("tcp no-such-host.invalid:5432: cannot connect")


# -- command --------------------------------------------------------------------------------------


def test_command_probe_is_healthy_on_exit_0():
    assert CommandProbe().check("web", HealthSpec(command=[PYTHON, "-c", "pass"])) is None


def test_command_probe_reports_the_exit_status_and_stderr():
    spec = HealthSpec(command=[PYTHON, "-c", "import sys; sys.exit('database is read-only')"])

    reason = CommandProbe().check("web", spec)

    assert reason is not None
    assert reason.endswith("failed with exit status 1: database is read-only")


def test_command_probe_kills_a_command_that_hangs():
    spec = HealthSpec(command=[PYTHON, "-c", "import time; time.sleep(60)"], timeout=30)
    started = time.monotonic()

    reason = CommandProbe(try_timeout=0.5).check("web", spec)

    assert reason is not None
    assert "did not finish within 0.5 s and was killed" in reason
    assert time.monotonic() - started < 3


def test_command_probe_reports_a_missing_command():
    reason = CommandProbe().check("web", HealthSpec(command=["/nonexistent/healthcheck"]))

    assert reason == "command `/nonexistent/healthcheck`: '/nonexistent/healthcheck' does not exist " \
                     "(no such file or not on PATH)"


def test_every_probe_given_must_pass(loopback):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        # Never accepted: each probe round's connection waits in the backlog, so leave room for
        # all of them (with a backlog of 1 the third connect times out, and the probe fails).
        server.listen(64)
        # 2 s, not less: each http try may take that long, and on a loaded machine (tests run in
        # parallel) the loopback server took over 0.3 s to answer, which made http fail too.
        spec = HealthSpec(http=f"{loopback.url}/health", tcp=f"127.0.0.1:{server.getsockname()[1]}",
                          command=[PYTHON, "-c", "raise SystemExit(5)"], timeout=2.0, interval=0.1)
        checker = HealthChecker({"http": HttpProbe(), "tcp": TcpProbe(), "command": CommandProbe()})

        with pytest.raises(HealthCheckFailed) as raised:
            checker.wait_healthy("web", spec)

    message = str(raised.value)
    assert "command: command `" in message
    assert "exit status 5" in message
    assert "http:" not in message
    assert "tcp:" not in message
