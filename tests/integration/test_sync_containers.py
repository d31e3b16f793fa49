"""The sync engine against a real Docker-compatible engine: Podman's API socket and busybox
containers (tests/containers/conftest.py), end to end through the API.

Each service is a container on the host network whose settings are an env file in a
bind-mounted folder (`/conf/app.env`): apphub replaces the file atomically in the folder, and the
container sees the new file. The services: one reloaded by a container restart, one by a signal
(its shell traps HUP and re-reads the file), one by a command run inside it; a container that
exits on its new settings (gate fails, previous file back, restarted on it); and the engine's
socket down at the time of a change (clear error, nothing lost, applied once it is back).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from apphub.paths import DataDir
from apphub.sync.render import envfile
from tests.conftest import free_port, serving
from tests.containers.conftest import (
    EXIT_ON_TERM,
    Containers,
    PodmanService,
    containers,
    podman_environment,
    podman_service,
    test_image,
)
from tests.integration.conftest import eventually
from tests.integration.test_sync_supervisor import make_data, outcomes, services_status

__all__ = ["containers", "podman_environment", "podman_service", "test_image"]  # fixtures, used by name

SCHEMA = """\
    config:
      sections:
        box:
          keys:
            message: {type: string, default: first message, apply: reload}
            mode: {type: enum, choices: [normal, crash], default: normal, apply: restart}
    """

# The service: reads /conf/app.env at start (MODE=crash: says why and exits 3, as a service does
# on a setting it refuses), serves MESSAGE with busybox httpd, re-reads the file on SIGHUP.
SERVICE = f"""{EXIT_ON_TERM}
. /conf/app.env
if [ "$MODE" = crash ]; then echo "app.env: MODE=crash, refusing to start" >&2; exit 3; fi
mkdir -p /www
echo "$MESSAGE" > /www/index.html
trap '. /conf/app.env; echo "$MESSAGE" > /www/index.html' HUP
httpd -f -p 127.0.0.1:$PORT -h /www &
while :; do sleep 1 & wait $!; done
"""
# What `nginx -s reload` is to nginx: a command run inside the container that makes it re-read.
REREAD = ["sh", "-c", '. /conf/app.env && echo "$MESSAGE" > /www/index.html']


@dataclass
class Box:
    """One service: its folder (bind-mounted at /conf), its container and its page."""

    name: str
    folder: Path
    container: str
    port: int

    @property
    def env_file(self) -> Path:
        return self.folder / "app.env"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/index.html"

    def page(self) -> str:
        return httpx.get(self.url, timeout=2.0).text.strip()


def start_box(containers: Containers, root: Path, name: str) -> Box:
    folder = root / name
    folder.mkdir(parents=True)
    # What apphub renders for the defaults, so that the first sync finds nothing to do.
    (folder / "app.env").write_text(envfile.replace([("MESSAGE", "first message"), ("MODE", "normal")]))
    port = free_port()
    container = containers.run(SERVICE, environment={"PORT": str(port)},
                               volumes={str(folder): {"bind": "/conf", "mode": "ro"}})
    box = Box(name, folder, container, port)
    eventually(lambda: box.page() == "first message", f"{container} serving its page", 15)
    return box


def service_yaml(box: Box, reload: str, health_timeout: float = 10) -> str:
    return f"""\
      {box.name}:
        files:
          - path: {box.env_file}
            map: {{MESSAGE: "${{box.message}}", MODE: "${{box.mode}}"}}
        reload: {reload}
        health: {{container: {box.container}, http: "{box.url}", timeout: {health_timeout}}}
"""


def started_at(containers: Containers, box: Box) -> str:
    return str(containers.attrs(box.container)["State"]["StartedAt"])


def running(containers: Containers, box: Box) -> bool:
    state: dict[str, Any] = containers.attrs(box.container)["State"]
    return bool(state["Running"])


def data_for(tmp_path: Path, boxes: list[tuple[Box, str]], docker_url: str, health_timeout: float = 10) -> DataDir:
    manifest = "services:\n" + "".join(service_yaml(box, reload, health_timeout) for box, reload in boxes)
    return make_data(tmp_path / "data", SCHEMA, manifest, roots=[tmp_path / "srv"], docker_url=docker_url)


@contextlib.contextmanager
def api_of(data: DataDir, names: tuple[str, ...]) -> Iterator[httpx.Client]:
    """apphub serving `data`, once its first sync found every service applied."""
    key = data.admin_key.read_text().strip()
    with serving(data) as server, httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as api:
        def settled() -> bool:
            status = services_status(api)
            return all(status.get(name, {}).get("state") == "applied" for name in names)

        eventually(settled, f"{', '.join(names)} applied after the first sync", 30)
        yield api


def test_restart_signal_and_exec(tmp_path: Path, containers: Containers, podman_service: PodmanService) -> None:
    restarted = start_box(containers, tmp_path / "srv", "restarted")
    signalled = start_box(containers, tmp_path / "srv", "signalled")
    execed = start_box(containers, tmp_path / "srv", "execed")
    data = data_for(tmp_path, [
        (restarted, f"{{strategy: container-restart, container: {restarted.container}, grace: 2}}"),
        (signalled, f"{{reload: {{strategy: container-signal, container: {signalled.container}, signal: HUP}},"
                    f" restart: {{strategy: container-restart, container: {signalled.container}, grace: 2}}}}"),
        (execed, f"{{strategy: container-exec, container: {execed.container}, command: {json.dumps(REREAD)}}}"),
    ], podman_service.url)
    before = {box.name: started_at(containers, box) for box in (restarted, signalled, execed)}

    with api_of(data, ("restarted", "signalled", "execed")) as api:
        # Nothing differed at the first sync: nothing was touched.
        assert {box.name: started_at(containers, box) for box in (restarted, signalled, execed)} == before

        answer = api.put("/api/v1/settings/box?wait=true", json={"message": "second message"})
        done = outcomes(answer)
        assert answer.json()["sync"]["ok"] is True, answer.text
        assert {name: (o["result"], o["action"]) for name, o in done.items()} == {
            "restarted": ("applied", "container-restart"),
            "signalled": ("applied", "container-signal"),
            "execed": ("applied", "container-exec"),
        }
        for box in (restarted, signalled, execed):
            assert "MESSAGE='second message'" in box.env_file.read_text()
            assert box.page() == "second message", box.name
        assert started_at(containers, restarted) != before["restarted"]
        assert started_at(containers, signalled) == before["signalled"]  # same process, re-read on HUP
        assert started_at(containers, execed) == before["execed"]
        status = services_status(api)
        assert {name: s["state"] for name, s in status.items()} == dict.fromkeys(done, "applied")
        assert status["restarted"]["applied_version"] == answer.json()["version"]


def test_container_that_exits_on_its_new_settings_is_rolled_back(
        tmp_path: Path, containers: Containers, podman_service: PodmanService) -> None:
    box = start_box(containers, tmp_path / "srv", "app")
    data = data_for(tmp_path, [(box, f"{{strategy: container-restart, container: {box.container}, grace: 2}}")],
                    podman_service.url, health_timeout=4)
    with api_of(data, ("app",)) as api:
        before = box.env_file.read_bytes()
        first_start = started_at(containers, box)

        answer = api.put("/api/v1/settings/box?wait=true", json={"mode": "crash"})
        failed = outcomes(answer)["app"]
        version = answer.json()["version"]
        assert (failed["result"], failed["action"]) == ("failed", "container-restart")
        assert failed["error"].startswith(f"failed to apply version {version[:12]}, running the previous one")
        assert f"container {box.container} is exited" in failed["error"]  # the container probe's reason

        assert box.env_file.read_bytes() == before  # the previous file is back
        assert running(containers, box)  # restarted on it
        assert started_at(containers, box) != first_start
        assert box.page() == "first message"
        assert "refusing to start" in containers.podman("logs", box.container).stderr
        status = services_status(api)["app"]
        assert (status["state"], status["wanted_version"], status["last_error"]) == ("failed", version, failed["error"])
        assert api.get("/api/v1/settings/box").json()["settings"]["mode"] == "crash"  # what was asked is kept


def test_engine_down_then_back(tmp_path: Path, containers: Containers, podman_environment: dict[str, str]) -> None:
    # An API socket of this test's own, to stop and start: the containers run on without it.
    own = PodmanService(tmp_path / "podman.sock", podman_environment, tmp_path / "podman-service.log")
    own.start()
    try:
        box = start_box(containers, tmp_path / "srv", "app")
        data = data_for(tmp_path, [(box, f"{{reload: {{strategy: container-signal, container: {box.container}}},"
                                         f" restart: {{strategy: container-restart, container: {box.container}}}}}")],
                        own.url)
        with api_of(data, ("app",)) as api:
            before = box.env_file.read_bytes()
            own.stop()

            answer = api.put("/api/v1/settings/box?wait=true", json={"message": "sent while the engine was down"})
            failed = outcomes(answer)["app"]
            version = answer.json()["version"]
            assert (failed["result"], failed["action"]) == ("failed", "container-signal")
            assert f"the container engine at {own.url} cannot be reached" in failed["error"]
            assert services_status(api)["app"]["last_error"] == failed["error"]
            # nothing lost: config.ini holds the accepted version, the service its previous file
            assert api.get("/api/v1/settings/box").json()["settings"]["message"] == "sent while the engine was down"
            assert box.env_file.read_bytes() == before
            assert box.page() == "first message"

            own.start()  # the engine is back: the retry (1, 2, 4, ... s after the failure) applies it
            eventually(lambda: services_status(api)["app"]["state"] == "applied", "the retry applied app", 35)
            assert services_status(api)["app"]["applied_version"] == version
            assert box.page() == "sent while the engine was down"
    finally:
        own.stop()

