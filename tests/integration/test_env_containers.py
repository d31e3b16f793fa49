"""Environment variables reach a container the only way they can: a recreate, end to end through
the API, the sync engine and Podman's API socket (tests/containers/conftest.py).

The service `app` is a busybox container on the host network that serves `$MESSAGE` from its
environment and refuses to start when `$MODE` is `crash`. Its manifest maps MESSAGE from
config.ini and takes independent variables from env.ini; its `.env` file (a compose project's)
gets the same environment.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.paths import DataDir
from apphub.sync.render.dotenv_reader import read
from tests.conftest import free_port
from tests.containers.conftest import (
    EXIT_ON_TERM,
    Containers,
    PodmanService,
    containers,
    podman_environment,
    podman_service,
    test_image,
)
from tests.integration.conftest import admin_api, eventually
from tests.integration.test_sync_supervisor import make_data, outcomes, services_status

__all__ = ["containers", "podman_environment", "podman_service", "test_image"]  # fixtures, used by name

SCHEMA = """\
    config:
      sections:
        box:
          keys:
            message: {type: string, default: first message, apply: hot}
            password: {type: string, secret: true, default: "", apply: restart}
    """
SERVICE = f"""{EXIT_ON_TERM}
if [ "$MODE" = crash ]; then echo "MODE=crash: refusing to start" >&2; exit 3; fi
mkdir -p /www
echo "$MESSAGE" > /www/index.html
httpd -f -p 127.0.0.1:$PORT -h /www &
wait
"""
SECRET = "s3cr3t-VALUE with $dollar"


@dataclass
class App:
    container: str
    port: int
    root: Path
    data: DataDir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/index.html"

    def page(self) -> str:
        try:
            return httpx.get(self.url, timeout=2.0).text.strip()
        except httpx.HTTPError as exc:
            return f"({exc})"

    def api(self) -> contextlib.AbstractContextManager[httpx.Client]:
        return admin_api(self.data)


def environment(containers: Containers, name: str) -> dict[str, str]:
    lines = containers.output(name, "env").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture
def app(tmp_path: Path, containers: Containers, podman_service: PodmanService) -> App:
    root = tmp_path / "srv"
    (root / "app").mkdir(parents=True)
    port = free_port()
    name = containers.run(SERVICE, environment={"PORT": str(port), "MESSAGE": "first message"},
                          labels={"com.docker.compose.project": "demo", "com.docker.compose.service": "app"})
    manifest = f"""\
        services:
          app:
            env_file: {root}/app/.env
            env:
              MESSAGE: "${{box.message}}"
              PORT: "{port}"
            inject: {{container: {name}, grace: 5, timeout: 30}}
            health: {{container: {name}, http: "http://127.0.0.1:{port}/index.html", timeout: 10}}
        """
    data = make_data(tmp_path / "data", SCHEMA, manifest, roots=[root], docker_url=podman_service.url)
    made = App(name, port, root, data)
    eventually(lambda: made.page() == "first message", f"{name} serving its page", 15)
    return made


def recreated(containers: Containers, app: App, before: str) -> bool:
    with contextlib.suppress(Exception):
        return str(containers.attrs(app.container)["Id"]) != before
    return False


def test_an_env_change_recreates_the_container_with_everything_else_kept(app: App, containers: Containers) -> None:
    before = containers.attrs(app.container)
    with app.api() as api:
        eventually(lambda: services_status(api).get("app", {}).get("state") == "applied", "the first sync", 30)
        # the first sync found the environment as apphub has it: nothing was recreated
        assert containers.attrs(app.container)["Id"] == before["Id"]
        plan = api.post("/api/v1/settings/plan", json={"box": {"message": "second message"}})
        assert plan.status_code == 200, plan.text
        planned = {service["service"]: service for service in plan.json()["services"]}["app"]
        assert planned["action"] == "container-recreate"
        assert planned["env"]["changes"] == [{"name": "MESSAGE", "change": "changed", "before": "first message",
                                              "after": "second message", "secret": False}]

        answer = api.put("/api/v1/settings/box?wait=true", json={"message": "second message"})
        outcome = outcomes(answer)["app"]
        assert (outcome["result"], outcome["action"]) == ("applied", "container-recreate"), outcome
        assert app.page() == "second message"
        after = containers.attrs(app.container)
        assert after["Id"] != before["Id"]
        assert environment(containers, app.container)["MESSAGE"] == "second message"
        labels = after["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == "demo"  # `docker compose ps` still lists it
        assert labels["io.apphub.env"] == "MESSAGE,PORT"
        assert read((app.root / "app" / ".env").read_text())["MESSAGE"] == "second message"
        aside = [c for c in containers.client.containers.list(all=True) if c.name.startswith(app.container + "-")]
        assert aside == []  # the old one is gone once the new one is healthy


def test_an_independent_variable_and_a_secret(app: App, containers: Containers,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with app.api() as api:
        eventually(lambda: services_status(api).get("app", {}).get("state") == "applied", "the first sync", 30)
        answer = api.put("/api/v1/env/app?wait=true", json={"GREETING": "hello",
                                                             "TOKEN": {"value": SECRET, "secret": True}})
        outcome = outcomes(answer)["app"]
        assert outcome["result"] == "applied", outcome
        inside = environment(containers, app.container)
        assert (inside["GREETING"], inside["TOKEN"]) == ("hello", SECRET)
        for path in ("/api/v1/env", "/api/v1/env/app", "/api/v1/audit", "/api/v1/sync/status",
                     "/api/v1/settings/history?file=env.ini"):
            assert SECRET not in api.get(path).text, path
        plan = api.post("/api/v1/settings/plan", json={})
        assert SECRET not in plan.text

        gone = api.delete("/api/v1/env/app/GREETING?wait=true")
        assert outcomes(gone)["app"]["result"] == "applied"
        assert "GREETING" not in environment(containers, app.container)  # apphub set it, apphub removed it
        assert environment(containers, app.container)["TOKEN"] == SECRET
        # a version whose container fails: the error quotes the engine, never the secret
        failed = api.put("/api/v1/env/app/MODE?wait=true", json={"value": "crash"})
        assert outcomes(failed)["app"]["result"] == "failed"
        assert SECRET not in failed.text
    assert caplog.records, "the server logged nothing at all: the check below would prove nothing"
    assert SECRET not in caplog.text


def test_a_container_that_fails_on_its_new_env_is_put_back(app: App, containers: Containers) -> None:
    with app.api() as api:
        eventually(lambda: services_status(api).get("app", {}).get("state") == "applied", "the first sync", 30)
        before = containers.attrs(app.container)
        answer = api.put("/api/v1/env/app/MODE?wait=true", json={"value": "crash"})
        outcome = outcomes(answer)["app"]
        assert (outcome["result"], outcome["action"]) == ("failed", "container-recreate"), outcome
        assert "did not become healthy" in outcome["error"] or "exit" in outcome["error"], outcome["error"]
        after = containers.attrs(app.container)
        assert after["Id"] == before["Id"]  # the very same container, back under its name
        assert after["State"]["Running"]
        assert "MODE" not in environment(containers, app.container)
        assert app.page() == "first message"
        status = services_status(api)["app"]
        assert status["state"] == "failed"
        names = [c.name for c in containers.client.containers.list(all=True)]
        assert [n for n in names if n.startswith(app.container)] == [app.container]


def test_a_restart_of_apphub_recreates_nothing(app: App, containers: Containers) -> None:
    with app.api() as api:
        eventually(lambda: services_status(api).get("app", {}).get("state") == "applied", "the first sync", 30)
        answer = api.put("/api/v1/env/app/GREETING?wait=true", json={"value": "hello"})
        assert outcomes(answer)["app"]["result"] == "applied", answer.text
    recreated_id = containers.attrs(app.container)["Id"]
    with app.api() as api:
        eventually(lambda: services_status(api).get("app", {}).get("state") == "applied", "the sync at start", 30)
    assert containers.attrs(app.container)["Id"] == recreated_id


def test_a_missing_container_is_pending_with_why(app: App, containers: Containers) -> None:
    containers.client.api.remove_container(app.container, force=True)
    with app.api() as api:
        status: dict[str, Any] = eventually(lambda: services_status(api).get("app", {}).get("pending"),
                                            "the pending change", 30)
        assert f"container {app.container} does not exist" in str(status)
        env_file = app.root / "app" / ".env"  # the status says pending when planned; the file comes with the apply
        eventually(lambda: env_file.exists() and read(env_file.read_text()).get("MESSAGE") == "first message",
                   "the .env file written", 30)
