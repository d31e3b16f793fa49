"""init-config.sh for real: a busybox container (Podman, host network) whose entrypoint is the
script, against a real `apphub serve` with the services routes, its key made by the CLI.

The manifest: `app` takes two files (one holding `${gitea.user_pwd}`, a secret of config.ini, so
apphub gives it mode 0600) placed by `container_path:` inside the container, and two mapped
variables; it depends on `dep`, whose health is a `tcp:` probe of a loopback port that the test
opens and closes (nothing listening: `down`). The original entrypoint the script execs copies
what it sees (the files, their modes, the environment) to a mounted folder and exits.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tarfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir
from tests.conftest import free_port
from tests.containers.conftest import (
    BUSYBOX,
    Containers,
    containers,
    podman_environment,
    podman_service,
    test_image,
)
from tests.integration.conftest import APPHUB, ServeProcess, _wait_until_healthy, cli_environment, run_cli
from tests.sync.conftest import TEST_ACTOR

__all__ = ["containers", "podman_environment", "podman_service", "test_image"]  # fixtures, used by name

SCRIPT = Path(__file__).resolve().parents[2] / "src" / "apphub" / "services" / "init-config.sh"
# What init-config.sh and ENTRYPOINT run, as busybox links (docs/init-config.md lists the same).
INIT_CONFIG_APPLETS = ("wget", "tar", "mkdir", "cp", "mv", "rm", "sed", "grep", "cut", "tr", "cat", "date", "sleep",
                       "mktemp", "chmod", "stat", "chown", "printf", "ls")
# What the original entrypoint does: show what init-config.sh left it, then end.
ENTRYPOINT = ["sh", "-c", textwrap.dedent("""\
    stat -c '%a' /etc/app/app.ini > /out/app.ini.mode
    stat -c '%a' /srv/app/site.json > /out/site.json.mode
    cat /etc/app/app.ini > /out/app.ini
    cat /srv/app/site.json > /out/site.json
    printf '%s' "$APP_PASSWORD" > /out/env-seen
    printf '%s' "${APPHUB_KEY-unset}" > /out/key-seen
    for a in "$@"; do printf '[%s]' "$a"; done > /out/args
    ls /tmp > /out/tmp-left
    """), "entrypoint", "two words", "it's"]


class Listener:
    """A TCP port that accepts (and closes) connections: `dep` is healthy while it is open."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._socket: socket.socket | None = None

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._socket = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = server.accept()
                connection.close()

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
            self._socket = None


@dataclass
class Hub:
    """apphub's data folder (not served until `serve()`), its port, `dep`'s listener, the keys."""

    data: DataDir
    port: int
    dep: Listener
    tmp: Path
    servers: list[ServeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def password(self) -> str:
        core = Core(self.data)
        try:
            return core.config.snapshot().section_plaintext_value("gitea", "user_pwd")
        finally:
            core.close()

    def serve(self) -> ServeProcess:
        """`apphub serve` on the port chosen beforehand (the container knows it before apphub is up)."""
        number = len(self.servers)
        stdout, stderr = self.tmp / f"serve-{number}.stdout", self.tmp / f"serve-{number}.stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([str(APPHUB), "--data-dir", str(self.data.root), "serve", "--port",
                                        str(self.port), "--log-level", "info"],
                                       stdout=out, stderr=err, env=cli_environment(self.tmp / "xdg"))
        server = ServeProcess(self.url, self.data, process, stdout, stderr)
        self.servers.append(server)
        _wait_until_healthy(server)
        return server

    def key(self, *args: str) -> str:
        made = run_cli(self.data, *args)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        for server in self.servers:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    root = tmp_path / "srv"
    (root / "app").mkdir(parents=True)
    dep = Listener(free_port())
    data = DataDir(tmp_path / "data")
    initialise(data)
    core = Core(data)
    try:
        core.system.update({"sync": {"roots": [str(root)], "drift_interval_s": 0}}, TEST_ACTOR)
    finally:
        core.close()
    (data.root / "services.yaml").write_text(textwrap.dedent(f"""\
        services:
          app:
            fetch: true
            files:
              - path: {root}/app/app.ini
                container_path: /etc/app/app.ini
                format: ini
                map:
                  database.user: "${{gitea.user_name}}"
                  database.password: "${{gitea.user_pwd}}"
              - path: {root}/app/site.json
                container_path: /srv/app/site.json
                format: json
                map:
                  site.owner: "${{gitea.user_name}}"
            env:
              APP_PASSWORD: "${{gitea.user_pwd}}"
              APP_USER: "${{gitea.user_name}}"
            depends_on: [dep]
          dep:
            health: {{tcp: "127.0.0.1:{dep.port}", timeout: 2}}
        """), encoding="utf-8")
    made = Hub(data, free_port(), dep, tmp_path)
    try:
        yield made
    finally:
        made.stop()
        dep.close()


@dataclass
class Started:
    name: str
    out: Path
    started: float


def start(containers: Containers, hub: Hub, tmp_path: Path, key: str, *, image: str | None = None,
          entrypoint: tuple[str, ...] = ("/apphub/init-config.sh",), volumes: dict[str, Any] | None = None,
          command: list[str] = ENTRYPOINT, **variables: str) -> Started:
    """A container whose entrypoint is init-config.sh then ENTRYPOINT; the key as a mounted secret."""
    out = tmp_path / f"out-{len(containers.names)}"
    out.mkdir()
    key_file = tmp_path / f"key-{len(containers.names)}"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    name = f"{containers.prefix}-{len(containers.names) + 1}"
    containers.names.append(name)
    started = time.monotonic()
    containers.client.containers.run(
        image or containers.image, command, entrypoint=list(entrypoint), name=name, detach=True,
        network_mode="host",
        environment={"APPHUB_URL": hub.url, "APPHUB_SERVICE": "app", "APPHUB_KEY_FILE": "/run/secrets/apphub_key",
                     **variables},
        volumes={str(SCRIPT): {"bind": "/apphub/init-config.sh", "mode": "ro"},
                 str(key_file): {"bind": "/run/secrets/apphub_key", "mode": "ro"},
                 str(out): {"bind": "/out", "mode": "rw"}, **(volumes or {})})
    return Started(name, out, started)


def finish(containers: Containers, started: Started, *secrets: str, timeout: float = 60) -> tuple[int, str, float]:
    """Wait for the container to end: (exit status, its log, seconds from the start call to the end)."""
    container = containers.client.containers.get(started.name)
    status: dict[str, Any] = container.wait(timeout=timeout)
    seconds = time.monotonic() - started.started
    log = bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
    for secret in secrets:
        assert secret not in log, f"a secret reached the container's log:\n{log}"
    return int(status["StatusCode"]), log, seconds


def logs(containers: Containers, name: str) -> str:
    with contextlib.suppress(docker.errors.APIError):
        return bytes(containers.client.containers.get(name).logs()).decode(errors="replace")
    return ""


def wait_for_log(containers: Containers, name: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while text not in (found := logs(containers, name)):
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not log {text!r} within {timeout:g} s:\n{found}")
        time.sleep(0.1)
    return found


def test_files_and_environment_reach_the_original_entrypoint(containers: Containers, hub: Hub,
                                                             tmp_path: Path) -> None:
    hub.dep.open()
    hub.serve()
    key = hub.key("services", "key", "app")
    password = hub.password()
    started = start(containers, hub, tmp_path, key)
    status, log, _ = finish(containers, started, key, password)

    assert status == 0, log
    out = started.out
    assert f"password = {password}" in (out / "app.ini").read_text()
    assert (out / "app.ini.mode").read_text().strip() == "600"
    assert '"owner": "websoft9"' in (out / "site.json").read_text()
    assert (out / "site.json.mode").read_text().strip() == "644"
    assert (out / "env-seen").read_text() == password
    assert (out / "key-seen").read_text() == "unset"
    assert (out / "args").read_text() == "[two words][it's]"
    assert (out / "tmp-left").read_text() == ""  # the private folder is gone before the exec
    assert "init-config: service app: 2 file(s) and" in log
    assert "starting sh" in log


def test_apphub_up_after_the_container_is_waited_for(containers: Containers, hub: Hub, tmp_path: Path) -> None:
    hub.dep.open()
    key = hub.key("services", "key", "app")
    started = start(containers, hub, tmp_path, key, APPHUB_WAIT="60")
    wait_for_log(containers, started.name, f"init-config: waiting for apphub at {hub.url} (attempt 1)")
    time.sleep(2)
    hub.serve()
    status, log, _ = finish(containers, started, key, hub.password())

    assert status == 0, log
    assert (started.out / "env-seen").read_text() == hub.password()


def test_apphub_never_up_is_exit_69(containers: Containers, hub: Hub, tmp_path: Path) -> None:
    started = start(containers, hub, tmp_path, "ahk_000000000000_never-used", APPHUB_WAIT="3")
    status, log, seconds = finish(containers, started)

    assert status == 69, log
    assert f"init-config: apphub did not come up at {hub.url} within 3 s" in log
    assert "can't connect to remote host" in log  # busybox wget's reason, kept
    assert seconds < 3 + 4  # the wait, a second of `date`'s rounding, and the container's start and stop
    assert not (started.out / "args").exists()


def test_a_dependency_down_then_up_is_waited_for(containers: Containers, hub: Hub, tmp_path: Path) -> None:
    hub.serve()
    key = hub.key("services", "key", "app")
    started = start(containers, hub, tmp_path, key)
    log = wait_for_log(containers, started.name,
                       "init-config: waiting for the dependencies of service app (attempt 1):")
    assert "dep down" in log
    time.sleep(1)
    hub.dep.open()
    status, log, _ = finish(containers, started, key, hub.password())

    assert status == 0, log
    assert (started.out / "env-seen").read_text() == hub.password()


def test_a_dependency_never_healthy_is_exit_75_naming_it(containers: Containers, hub: Hub, tmp_path: Path) -> None:
    hub.serve()
    key = hub.key("services", "key", "app")
    started = start(containers, hub, tmp_path, key, APPHUB_DEPS_WAIT="3")
    status, log, _ = finish(containers, started, key)

    assert status == 75, log
    assert "init-config: the dependencies of service app did not become healthy within 3 s" in log
    assert ": dep down" in log
    assert not (started.out / "args").exists()


def test_a_key_of_another_service_is_refused_with_77(containers: Containers, hub: Hub, tmp_path: Path) -> None:
    hub.dep.open()
    server = hub.serve()
    other = hub.key("keys", "create", "--name", "dep-config", "--role", "read", "--service", "dep")
    started = start(containers, hub, tmp_path, other)
    status, log, _ = finish(containers, started, other, hub.password())

    assert status == 77, log
    assert "init-config: apphub refused the key for service app (HTTP 403" in log
    assert not (started.out / "args").exists()
    requests = server.logs().decode(errors="replace")
    assert requests.count("/api/v1/services/app/") == 1, requests  # refused once, not retried


def test_no_zombie_is_left_to_a_service_that_does_not_reap(containers: Containers, hub: Hub,
                                                          tmp_path: Path) -> None:
    """The script is PID 1 until it execs; what it started must be gone (or reaped) by then, since
    a service as PID 1 may never reap a child it did not start (busybox `sleep` here; Portainer's Go
    entrypoint waits for its own child only)."""
    hub.dep.open()
    hub.serve()
    key = hub.key("services", "key", "app")
    started = start(containers, hub, tmp_path, key, command=["sleep", "30"])
    try:
        wait_for_log(containers, started.name, "starting sleep")
        time.sleep(1)  # anything left running has ended by now: a zombie, if nobody reaped it
        table = containers.output(started.name, "sh", "-c", "cat /proc/[0-9]*/stat")
    finally:
        containers.client.api.kill(started.name)  # sleep as PID 1 ignores SIGTERM

    zombies = [line for line in table.splitlines() if ") Z " in line]
    assert zombies == [], table


@pytest.fixture
def shell_less_image(containers: Containers, tmp_path: Path) -> str:
    """An image without a shell or any tool, as Portainer's (FROM scratch, one static binary): only /tmp."""
    image = "localhost/apphub-test-no-shell:1"
    if containers.podman("image", "exists", image).returncode != 0:
        archive = tmp_path / "no-shell.tar"
        with tarfile.open(archive, "w") as tar:
            entry = tarfile.TarInfo("tmp")
            entry.type, entry.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(entry)
        made = containers.podman("import", str(archive), image)
        assert made.returncode == 0, made.stderr
    return image


def test_an_image_without_a_shell_runs_it_with_a_mounted_busybox(containers: Containers, hub: Hub, tmp_path: Path,
                                                                 shell_less_image: str) -> None:
    """docs/init-config.md's way for Portainer: a folder holding busybox and its links, mounted, on PATH."""
    tools = tmp_path / "apphub-bin"
    tools.mkdir()
    shutil.copy(BUSYBOX, tools / "busybox")
    for applet in ("sh", *INIT_CONFIG_APPLETS):
        (tools / applet).symlink_to("busybox")
    hub.dep.open()
    hub.serve()
    key = hub.key("services", "key", "app")
    started = start(containers, hub, tmp_path, key, image=shell_less_image,
                    entrypoint=("/apphub/bin/sh", "/apphub/init-config.sh"),
                    volumes={str(tools): {"bind": "/apphub/bin", "mode": "ro"}},
                    PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/apphub/bin")
    status, log, _ = finish(containers, started, key, hub.password())

    assert status == 0, log
    assert (started.out / "app.ini.mode").read_text().strip() == "600"
    assert (started.out / "env-seen").read_text() == hub.password()
