"""A real Docker-compatible engine for the container tests: Podman's API socket, started here.

Self-sufficient, because CI starts from nothing but the Debian packages podman, runc and
busybox-static. Once per session: a containers.conf of our own (runc, since crun refuses this
kind of machine's cgroups; ulimits lowered, since Podman's defaults ask for more than the sandbox
allows), `podman system service --time=0` on a socket in a temporary folder, and a two-megabyte
image `localhost/apphub-test-busybox:1` imported from a rootfs holding only /bin/busybox (no
registry is reachable). Per test: containers with `--network host`, uniquely named, removed at
the end whatever happened.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from apphub.reload.docker import ContainerEngine
from tests.conftest import free_port

IMAGE = "localhost/apphub-test-busybox:1"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "httpd", "env", "cat", "echo", "kill", "mkdir", "date", "tar",
           # and what init-config.sh needs besides (tests/containers/test_init_config.py); an image
           # imported before these were added still runs it: Debian's busybox sh finds its applets
           # without links (FEATURE_SH_STANDALONE)
           "wget", "cp", "mv", "rm", "sed", "grep", "cut", "tr", "chmod", "chown", "stat", "mktemp", "printf",
           "ls", "id")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
# A shell as PID 1 ignores SIGTERM unless it traps it (the kernel drops unhandled signals to
# PID 1), and then every stop would wait out the whole grace period.
EXIT_ON_TERM = "trap 'exit 0' TERM"


@dataclass
class PodmanService:
    """`podman system service` on a unix socket of ours; `url` is what ContainerEngine takes."""

    socket: Path
    environment: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, wait: float = 20.0) -> None:
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                env=self.environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + wait
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"podman system service exited with {self.process.returncode}: {self.log_tail()}")
            if self.answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"podman system service did not answer GET /_ping within {wait:g} s: {self.log_tail()}")
            time.sleep(0.05)

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        api = docker.APIClient(base_url=self.url, version="1.40", timeout=2)
        try:
            return bool(api.ping())
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            api.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return "(no log)"


def podman(environment: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The podman CLI with our containers.conf; never raises on its exit code."""
    return subprocess.run(["podman", *args], env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def podman_environment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for every podman process we start: CONTAINERS_CONF points at our config."""
    if os.geteuid() != 0:
        pytest.skip("the container tests run rootful Podman (host network, /var/lib/containers): run them as root")
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if not BUSYBOX.is_file():
        missing.append(f"{BUSYBOX} (busybox-static)")
    if missing:
        pytest.fail(f"the container tests need {', '.join(missing)}: apt-get install -y podman runc busybox-static"
                    " (scripts/setup.sh --test does)")
    folder = tmp_path_factory.mktemp("podman")
    conf = folder / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@pytest.fixture(scope="session")
def podman_service(podman_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[PodmanService]:
    folder = tmp_path_factory.mktemp("podman-service")
    service = PodmanService(folder / "podman.sock", podman_environment, folder / "service.log")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def test_image(podman_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """localhost/apphub-test-busybox:1: /bin/busybox and its applet links, nothing else.

    Imported once for the machine: pytest-xdist workers (and a second run beside this one) share
    Podman's image store, so the check and the import are made under a lock file they all take.
    """
    with (Path(tempfile.gettempdir()) / "apphub-test-image.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        return _import_test_image(podman_environment, tmp_path_factory)


def _import_test_image(podman_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    if podman(podman_environment, "image", "exists", IMAGE).returncode == 0:
        return IMAGE
    folder = tmp_path_factory.mktemp("image")
    archive = folder / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("www", 0o755)):
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    result = podman(podman_environment, "import", str(archive), IMAGE)
    if result.returncode != 0:
        pytest.fail(f"podman import {IMAGE} failed ({result.returncode}): {result.stderr.strip()}")
    return IMAGE


@pytest.fixture
def engine(podman_service: PodmanService) -> ContainerEngine:
    """The code under test, on the session's Podman socket."""
    return ContainerEngine(podman_service.url, timeout=10.0)


@dataclass
class Containers:
    """Runs test containers (host network, unique names) and removes every one of them at the end."""

    client: docker.DockerClient
    image: str
    prefix: str
    environment: dict[str, str]
    names: list[str] = field(default_factory=list)

    def run(self, script: str, *, healthcheck: dict[str, Any] | None = None, **options: Any) -> str:
        """Start `sh -c SCRIPT`; the name it got."""
        name = f"{self.prefix}-{len(self.names) + 1}-{uuid.uuid4().hex[:6]}"
        self.names.append(name)
        self.client.containers.run(self.image, ["sh", "-c", script], name=name, detach=True,
                                   network_mode="host", healthcheck=healthcheck, **options)
        return name

    def run_httpd(self) -> tuple[str, str]:
        """A container whose busybox httpd answers on a free loopback port; (name, url), once it answers."""
        port = free_port()
        name = self.run(f"{EXIT_ON_TERM}; mkdir -p /www; echo ok > /www/index.html;"
                        f" httpd -f -p 127.0.0.1:{port} -h /www & wait")
        url = f"http://127.0.0.1:{port}/index.html"
        wait_for(lambda: answers(url), f"httpd in {name} answering {url}")
        return name, url

    def output(self, name: str, *command: str) -> str:
        """What `command` prints in the container (a test's own look inside, not the code under test)."""
        result = self.client.containers.get(name).exec_run(list(command))
        return bytes(result.output).decode(errors="replace")

    def attrs(self, name: str) -> dict[str, Any]:
        return dict(self.client.api.inspect_container(name))

    def stop(self, name: str) -> None:
        self.client.api.stop(name, timeout=5)

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        return podman(self.environment, *args)

    def remove_all(self) -> None:
        for name in self.names:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(name, force=True)


@pytest.fixture
def containers(podman_service: PodmanService, test_image: str, podman_environment: dict[str, str],
               request: pytest.FixtureRequest) -> Iterator[Containers]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    client = docker.DockerClient(base_url=podman_service.url, version="1.40", timeout=30)
    made = Containers(client, test_image, f"apphub-test-{slug}", podman_environment)
    try:
        yield made
    finally:
        made.remove_all()
        client.close()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """Poll `condition` until true; the seconds it took. Fails the test with `what` on timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started
