"""The port-conflict rule on the real host: sockets this test binds, a Podman container that
publishes a port, a supervisord program; the data folder's own services.yaml says whose they are.

Every port is one `free_port()` just gave; other tests run beside these, so a whole-file check is
only ever asserted on the keys a test set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import psutil
import pytest

from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.errors import FieldError
from apphub.paths import DataDir
from apphub.reload.docker import ContainerEngine
from apphub.rules.base import CONFIG, SYSTEM, Candidate, KeyRef
from apphub.rules.holders import HostPorts, PortScan
from apphub.rules.owners import SyncConnections
from apphub.rules.ports import PortRule, port_rule
from tests.conftest import free_port
from tests.containers.conftest import EXIT_ON_TERM, PodmanService, podman_environment, podman_service, test_image
from tests.reload.conftest import Supervisord, scripts, server_program, start_supervisord

__all__ = ["podman_environment", "podman_service", "scripts", "start_supervisord", "test_image"]  # fixtures

ACTOR = Actor("port-test", "test")
SCHEMA = """\
config:
  sections:
    web:
      keys:
        port: {type: port}
        title: {type: string}
    api:
      keys:
        port: {type: port}
    inner:
      keys:
        port: {type: port, host_port: false}
    loose:
      keys:
        port: {type: port}
system:
  sections:
    panel:
      keys:
        port: {type: port}
"""
# web: a process with a pidfile; api: a container; `extra` adds services of a test's own.
MANIFEST = """\
services:
  web:
    files:
      - {{path: "{root}/web.json", map: {{port: "${{web.port}}", title: "${{web.title}}"}}}}
    reload: {{strategy: signal, pidfile: "{root}/web.pid"}}
  api:
    files:
      - {{path: "{root}/api.json", map: {{port: "${{api.port}}"}}}}
    reload: {{strategy: container-restart, container: "{container}"}}
{extra}"""


@dataclass
class Folder:
    """A data folder whose services.yaml names `web` (a pidfile), `api` (a container) and what a
    test adds; the keys start on free ports."""

    core: Core
    root: Path

    def manifest(self, container: str = "apphub-test-api", extra: str = "") -> None:
        text = MANIFEST.format(root=self.root, container=container, extra=extra)
        (self.core.data.root / "services.yaml").write_text(text, encoding="utf-8")

    def set(self, section: str, **values: object) -> None:
        """Write `values` into config.ini (what the services have now)."""
        self.core.config.update({section: dict(values)}, ACTOR)

    def sync(self, **values: object) -> None:
        self.core.system.update({"sync": dict(values)}, ACTOR)

    def write(self, section: str, **values: object) -> Candidate:
        """What the rules judge for a write of `values` into config.ini's `section`."""
        return self.write_all({section: values})

    def write_all(self, changes: dict[str, dict[str, object]]) -> Candidate:
        proposed = self.core.config.preview(changes)
        return Candidate({CONFIG: proposed, SYSTEM: self.core.system.snapshot()},
                         {KeyRef(CONFIG, section, key) for section, values in changes.items() for key in values})

    def whole(self) -> Candidate:
        return Candidate({CONFIG: self.core.config.snapshot(), SYSTEM: self.core.system.snapshot()})

    def rule(self) -> PortRule:
        return port_rule(self.core.data.root, self.core.system.last_good, self.core.config.last_good)

    def program_service(self, program: str, reads: str) -> str:
        """A service of services.yaml: supervisord's `program`, reading [`reads`] port."""
        return (f"  {program}:\n"
                f"    files:\n"
                f"      - {{path: \"{self.root}/{program}.json\", map: {{port: \"${{{reads}.port}}\"}}}}\n"
                f"    reload: {{strategy: supervisor-restart, program: {program}}}\n")

    def port(self, section: str) -> int:
        return int(self.core.config.snapshot().document.get(section, "port") or 0)

    def pidfile(self, pid: int) -> None:
        (self.root / "web.pid").write_text(f"{pid}\n")


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Folder]:
    data = DataDir(tmp_path / "data")
    initialise(data)
    (data.schema_dir / "50-ports.yaml").write_text(SCHEMA, encoding="utf-8")
    root = tmp_path / "srv"
    root.mkdir()
    core = Core(data)
    # Judged here on its own: the folder's own rule book (which may hold this rule) would refuse
    # the conflicting versions these tests write.
    core.config.rules = core.system.rules = None
    made = Folder(core, root)
    made.sync(roots=[str(root)], docker_url="", supervisor_url="")
    made.set("web", port=free_port(), title="web")
    made.set("api", port=free_port())
    made.set("loose", port=free_port())
    made.set("inner", port=free_port())
    made.manifest()
    try:
        yield made
    finally:
        core.close()


@pytest.fixture
def listening() -> Iterator[Callable[[], int]]:
    """Listen on a free loopback port in this process; the port."""
    opened: list[socket.socket] = []

    def listen() -> int:
        sock = socket.socket()
        opened.append(sock)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        return int(sock.getsockname()[1])

    yield listen
    for sock in opened:
        sock.close()


def at(findings: list[FieldError], section: str, file: str = CONFIG) -> list[FieldError]:
    return [finding for finding in findings if (finding.file, finding.section) == (file, section)]


THIS_PROCESS = f"{psutil.Process().name()} (pid {os.getpid()})"


# -- two keys on one port ---------------------------------------------------------------------------


def test_two_keys_on_one_port_fail_each_naming_the_other(folder: Folder) -> None:
    port = free_port()

    findings = folder.rule().check(folder.write_all({"web": {"port": port}, "api": {"port": port}}))

    assert sorted((f.section, f.severity, f.message) for f in findings) == [
        ("api", "error", f"port {port} is also [web] port of config.ini"),
        ("web", "error", f"port {port} is also [api] port of config.ini"),
    ]
    assert all(f.rule == "port_conflict" and f.key == "port" and f.line for f in findings)


def test_keys_on_different_ports_pass(folder: Folder) -> None:
    assert folder.rule().check(folder.write_all({"web": {"port": free_port()}, "api": {"port": free_port()}})) == []


def test_a_port_that_system_ini_names_fails_and_only_the_key_written_is_reported(folder: Folder) -> None:
    port = free_port()
    folder.core.system.update({"panel": {"port": port}}, ACTOR)

    [finding] = folder.rule().check(folder.write("web", port=port))

    assert (finding.file, finding.section, finding.severity) == (CONFIG, "web", "error")
    assert finding.message == f"port {port} is also [panel] port of system.ini"


def test_a_port_inside_a_containers_network_is_no_host_port(folder: Folder) -> None:
    port = free_port()
    folder.set("inner", port=port)

    assert folder.rule().check(folder.write("web", port=port)) == []
    assert folder.rule().check(folder.write("inner", port=folder.port("api"))) == []


# -- a process holds the port -----------------------------------------------------------------------


def test_a_port_this_process_listens_on_fails_naming_it(folder: Folder, listening: Callable[[], int]) -> None:
    port = listening()

    [finding] = folder.rule().check(folder.write("web", port=port))

    assert finding.severity == "error"
    assert finding.message == (f"port {port} is already listened on by {THIS_PROCESS} at 127.0.0.1:{port}, "
                               "which is not the service web, which reads this key")


def test_a_free_port_passes(folder: Folder) -> None:
    assert folder.rule().check(folder.write("web", port=free_port())) == []


def test_the_services_own_process_may_hold_its_port(folder: Folder, listening: Callable[[], int]) -> None:
    port = listening()
    folder.pidfile(os.getpid())  # web's pidfile names this process

    assert folder.rule().check(folder.write("web", port=port)) == []


def test_a_child_of_the_services_process_may_hold_its_port(folder: Folder) -> None:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.socket(); "
                              f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"up\n"
        folder.pidfile(os.getpid())  # the parent: the child is web's too
        assert folder.rule().check(folder.write("web", port=port)) == []

        folder.pidfile(child.pid + 100000)  # not a process of this host: the child is nobody's
        [finding] = folder.rule().check(folder.write("web", port=port))
        assert f"(pid {child.pid})" in finding.message
    finally:
        child.kill()
        child.communicate()


def test_a_held_port_of_a_key_no_service_reads_is_only_a_warning(folder: Folder,
                                                                   listening: Callable[[], int]) -> None:
    port = listening()

    [finding] = folder.rule().check(folder.write("loose", port=port))

    assert finding.severity == "warning"
    assert finding.message == (f"port {port} is listened on by {THIS_PROCESS} at 127.0.0.1:{port}; no service of "
                               "services.yaml reads this key, so apphub cannot tell whether that is its own")


def test_apphubs_own_process_may_hold_a_port_apphub_listens_on(folder: Folder,
                                                               listening: Callable[[], int]) -> None:
    port = listening()
    proposed = folder.core.system.preview({"panel": {"port": port}})
    write = Candidate({CONFIG: folder.core.config.snapshot(), SYSTEM: proposed}, {KeyRef(SYSTEM, "panel", "port")})
    own = port_rule(folder.core.data.root, folder.core.system.last_good, folder.core.config.last_good,
                    apphub_keys=[KeyRef(SYSTEM, "panel", "port")])

    assert own.check(write) == []  # this process stands for apphub here
    [finding] = folder.rule().check(write)
    assert (finding.file, finding.severity) == (SYSTEM, "warning")  # no service of services.yaml reads it


# -- what a write does not touch ------------------------------------------------------------------


def test_a_write_that_sets_no_port_key_asks_nothing(folder: Folder, listening: Callable[[], int]) -> None:
    folder.set("web", port=listening())  # held, and read by web: a whole-file check would say so
    scans: list[PortScan] = []
    real = HostPorts()

    def counting() -> PortScan:
        scans.append(real.scan())
        return scans[-1]

    rule = PortRule(counting, lambda ref: pytest.fail(f"owners of {ref} asked"))

    assert rule.check(folder.write("web", title="a new title")) == []
    assert scans == []
    assert rule.check(folder.write("api", port=free_port())) == []
    assert len(scans) == 1


def test_a_held_port_of_an_untouched_key_is_not_reported(folder: Folder, listening: Callable[[], int]) -> None:
    folder.set("api", port=listening())

    assert folder.rule().check(folder.write("web", port=free_port())) == []
    assert at(folder.rule().check(folder.write("api", port=listening())), "api") != []


def test_a_burst_of_writes_scans_the_host_once(listening: Callable[[], int]) -> None:
    now = [0.0]
    ports = HostPorts(clock=lambda: now[0])
    first = ports.scan()
    port = listening()

    assert ports.scan() is first  # within a second: the same scan, without the new socket
    assert first.holders(port) == ()
    now[0] += 1.0
    assert [str(holder) for holder in ports.scan().holders(port)] == \
        [f"listened on by {THIS_PROCESS} at 127.0.0.1:{port}"]


# -- a whole-file check ---------------------------------------------------------------------------


def test_a_whole_file_check_reports_held_ports_as_warnings(folder: Folder, listening: Callable[[], int]) -> None:
    port = listening()
    folder.set("web", port=port)
    folder.pidfile(os.getpid() + 100000)

    [finding] = at(folder.rule().check(folder.whole()), "web")

    assert finding.severity == "warning"
    assert f"port {port} is already listened on by {THIS_PROCESS}" in finding.message

    folder.pidfile(os.getpid())
    assert at(folder.rule().check(folder.whole()), "web") == []


# -- the engine or supervisord cannot be asked ---------------------------------------------------


def test_an_engine_that_cannot_be_reached_is_skipped(folder: Folder, listening: Callable[[], int],
                                                      tmp_path: Path) -> None:
    stale = tmp_path / "no-engine.sock"
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(stale))  # the socket file of an engine that stopped: connecting is refused
    folder.sync(docker_url=f"unix://{stale}")
    port = listening()

    [finding] = folder.rule().check(folder.write("web", port=port))  # the host's sockets are still asked
    assert finding.severity == "error"
    assert THIS_PROCESS in finding.message

    folder.set("web", port=free_port())
    [warning] = at(folder.rule().check(folder.whole()), "sync", SYSTEM)
    assert warning.severity == "warning"
    assert "container engine could not be asked" in warning.message
    assert "no-engine.sock" in warning.message


def test_no_engine_socket_means_no_engine_and_nothing_to_warn_of(folder: Folder, tmp_path: Path) -> None:
    folder.sync(docker_url=f"unix://{tmp_path}/docker.sock")  # Docker is not installed here
    assert at(folder.rule().check(folder.whole()), "sync", SYSTEM) == []


def test_a_hung_engine_costs_one_short_timeout(tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX) as hung:
        hung.bind(str(path))
        hung.listen()  # accepts into the backlog, never answers
        ports = HostPorts(ContainerEngine(f"unix://{path}", timeout=1.0), ttl=0)
        started = time.monotonic()
        first = ports.scan()
        asked = time.monotonic() - started
        again = ports.scan()
        retried = time.monotonic() - started - asked

    assert asked < 2.5
    assert retried < 0.5  # not asked again at once
    [why] = first.unreachable
    assert "did not answer" in why
    assert again.unreachable == first.unreachable


def test_a_supervisord_that_cannot_be_reached_refuses_nothing(folder: Folder, listening: Callable[[], int],
                                                               tmp_path: Path) -> None:
    folder.sync(supervisor_url=f"unix://{tmp_path}/no-supervisord.sock")
    folder.manifest(extra=folder.program_service("panel", reads="loose"))
    port = listening()

    # Its program's pid is not known: the listener may be it.
    assert folder.rule().check(folder.write("loose", port=port)) == []
    folder.set("loose", port=port)
    [warning] = at(folder.rule().check(folder.whole()), "sync", SYSTEM)
    assert warning.severity == "warning"
    assert "supervisord" in warning.message


# -- a supervisord program --------------------------------------------------------------------------


def test_a_supervisor_programs_own_port_passes_and_another_service_fails(
        folder: Folder, start_supervisord: Callable[[dict[str, str]], Supervisord], scripts: dict[str, Path],
        tmp_path: Path) -> None:
    port = free_port()
    daemon = start_supervisord({"server": server_program(scripts, port, tmp_path / "hup", startsecs=0)})
    info = daemon.wait_state("server", "RUNNING")
    _wait_listening(port)
    folder.sync(supervisor_url=daemon.url)
    folder.manifest(extra=folder.program_service("server", reads="loose"))

    assert folder.rule().check(folder.write("loose", port=port)) == []
    [finding] = folder.rule().check(folder.write("web", port=port))
    assert finding.severity == "error"
    assert f"listened on by {psutil.Process(int(str(info['pid']))).name()} (pid {info['pid']})" in finding.message


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while not any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                  for c in psutil.net_connections(kind="tcp")):
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on {port}")
        time.sleep(0.05)


# -- a container publishes the port ---------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    name: str
    port: int
    url: str


@pytest.fixture(scope="module")
def published(podman_service: PodmanService, test_image: str) -> Iterator[Published]:
    """One container on Podman's bridge network, publishing 127.0.0.1:PORT -> 80/tcp."""
    client = docker.DockerClient(base_url=podman_service.url, version="1.40", timeout=30)
    name = f"apphub-test-ports-{uuid.uuid4().hex[:6]}"
    port = free_port()
    try:
        client.containers.run(test_image, ["sh", "-c", f"{EXIT_ON_TERM}; sleep 600 & wait"], name=name,
                              detach=True, ports={"80/tcp": ("127.0.0.1", port)})
        yield Published(name, port, podman_service.url)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(name, force=True)
        client.close()


@pytest.fixture
def patient_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule's engine and supervisord given 10 s, not 1 s: on a loaded machine (another test's
    containers, tests run in parallel) Podman's first answer (its version, then the containers)
    took longer than 1 s, and an engine that does not answer in time is not asked (tested above)."""
    monkeypatch.setattr("apphub.rules.ports.SyncConnections", functools.partial(SyncConnections, timeout=10.0))


@pytest.mark.usefixtures("patient_engine")
def test_a_port_a_container_publishes_fails_naming_the_container(folder: Folder, published: Published) -> None:
    folder.sync(docker_url=published.url)
    folder.manifest(container=published.name)

    [finding] = folder.rule().check(folder.write("web", port=published.port))

    assert finding.severity == "error"
    assert finding.message == (f"port {published.port} is already published by container {published.name} "
                               f"(127.0.0.1:{published.port}->80/tcp), which is not the service web, which reads "
                               "this key")  # and not conmon, Podman's listener for it


@pytest.mark.usefixtures("patient_engine")
def test_the_services_own_container_may_publish_its_port(folder: Folder, published: Published) -> None:
    folder.sync(docker_url=published.url)
    folder.manifest(container=published.name)

    rule = folder.rule()  # one engine: its first call asks the API version (Podman: ~0.4 s)
    assert rule.check(folder.write("api", port=published.port)) == []

    folder.set("web", port=published.port)
    folder.set("api", port=free_port())
    [warning] = at(rule.check(folder.whole()), "web")
    assert warning.severity == "warning"
    assert f"published by container {published.name}" in warning.message
