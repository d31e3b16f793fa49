"""`/api/v1/services` and `/api/v1/init` over real HTTP, with the server's own services thread.

The server initialises the enabled products at start without making anyone wait; the routes
then report each service's health, each step of each run, and hand a service's container its
files and environment only to that service's key (or an admin).
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator

import httpx
import pytest

from apphub.core import Core
from apphub.paths import DataDir
from apphub.services.manager import INIT_ACTOR
from tests.conftest import LiveServer, serving
from tests.services.conftest import Stage
from tests.services.test_initialisers import no_secret_in

MANIFEST = """\
services:
  app:
    files:
      - path: {root}/app/app.json
        container_path: /etc/app/app.json
        map:
          gitea.password: "${{gitea.user_pwd}}"
          gitea.user: "${{gitea.user_name}}"
    env:
      GITEA_USER: "${{gitea.user_name}}"
    fetch: true
    depends_on: [gitea, dep]
  dep:
    health: {{tcp: "127.0.0.1:{port}"}}
  gitea:
    description: the product of the same name (its connection test is its health)
"""


@pytest.fixture
def served(stage: Stage, data_dir: DataDir) -> Iterator[LiveServer]:
    # The server runs Gitea's CLI through the real engine, which has no Gitea container here: the admin
    # exists already, as it would once `gitea admin user create` ran (tests of that step: test_initialisers).
    stage.gitea.add_admin("websoft9", stage.secret("gitea", "user_pwd"), "admin@mydomain.com")
    with serving(data_dir) as server:
        yield server


@pytest.fixture
def admin_api(served: LiveServer, admin_key: str) -> Iterator[httpx.Client]:
    with served.client(admin_key) as client:
        yield client


def wait_for_init(client: httpx.Client, within: float = 30.0) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + within
    while True:
        runs = {run["service"]: run for run in client.get("/api/v1/init/status").json()["services"]}
        if len(runs) == 4 and all(run["state"] not in ("pending", "running") for run in runs.values()):
            return runs
        assert time.monotonic() < deadline, runs
        time.sleep(0.05)


def test_serve_initialises_the_enabled_products_at_start(stage: Stage, admin_api: httpx.Client) -> None:
    runs = wait_for_init(admin_api)

    assert {name: run["state"] for name, run in runs.items()} == dict.fromkeys(runs, "done")
    assert all(run["trigger"] == "start" for run in runs.values())
    gitea = runs["gitea"]["steps"]
    assert [step["name"] for step in gitea] == ["reach", "admin", "token", "repository", "webhook"]  # type: ignore[index]
    services = {entry["name"]: entry for entry in admin_api.get("/api/v1/services", params={"refresh": "true"})
                .json()["services"]}
    for product in ("nginx_proxy_manager", "gitea", "portainer", "cockpit"):
        assert services[product]["health"] == "healthy", services[product]
        assert services[product]["checked_at"]
    assert services["gitea"]["version"] == "1.26.3"
    assert services["docker"]["kind"] == services["supervisord"]["kind"] == "engine"
    no_secret_in(stage, admin_api.get("/api/v1/init/status").text + admin_api.get("/api/v1/services").text)
    # The history is now pushed to the repository the initialiser made: git's smart HTTP, which Gitea
    # serves outside its API (the stand-in has no git; tests/history pushes to a real git server).
    assert [v for v in stage.violations() if ".git/info/refs" not in v] == []


def test_health_runs_the_check_now_and_reports_a_down_service_with_its_error(stage: Stage,
                                                                            admin_api: httpx.Client) -> None:
    wait_for_init(admin_api)
    stage.portainer.stop()

    response = admin_api.get("/api/v1/services/portainer/health")

    assert response.status_code == 200
    assert response.json()["health"] == "down"
    assert "portainer" in response.json()["reason"]
    assert admin_api.get("/api/v1/services/nosuch/health").status_code == 404


def test_post_init_reruns_one_product_and_needs_an_admin(stage: Stage, served: LiveServer,
                                                        admin_api: httpx.Client, core: Core) -> None:
    wait_for_init(admin_api)
    reader = core.keys.create("reader", "read")
    with served.client(reader) as client:
        assert client.post("/api/v1/init").status_code == 403
        assert client.get("/api/v1/init/status").status_code == 200

    response = admin_api.post("/api/v1/init", params={"service": "gitea"})

    assert response.status_code == 200, response.text
    [run] = response.json()["services"]
    assert run["service"] == "gitea"
    assert run["trigger"] == "api"
    assert run["changed"] is False
    assert admin_api.post("/api/v1/init", params={"service": "nosuch"}).status_code == 404


def test_a_service_key_fetches_its_own_config_and_nothing_else(stage: Stage, served: LiveServer,
                                                              admin_api: httpx.Client, core: Core,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("targets")
    core.system.update({"sync": {"roots": str(root)}}, INIT_ACTOR)
    (core.data.root / "services.yaml").write_text(MANIFEST.format(root=root, port=1))
    app_key = core.keys.create("app-config", "read", service="app")
    other_key = core.keys.create("dep-config", "read", service="dep")
    password = stage.secret("gitea", "user_pwd")

    with served.client(app_key) as client:
        bundle = client.get("/api/v1/services/app/config")
        tar = client.get("/api/v1/services/app/config", params={"format": "tar"})
        waiting = client.get("/api/v1/services/app/dependencies", params={"format": "text"})
        elsewhere = [client.get(path).status_code for path in
                     ("/api/v1/services/dep/config", "/api/v1/settings", "/api/v1/services", "/api/v1/init/status")]
    with served.client(other_key) as client:
        refused = client.get("/api/v1/services/app/config")
    with served.client(core.keys.create("reader", "read")) as client:
        plain_reader = client.get("/api/v1/services/app/config")

    assert bundle.status_code == 200, bundle.text
    body = bundle.json()
    [file] = body["files"]
    assert file["path"] == "/etc/app/app.json"
    assert file["mode"] == "0600"  # it holds a secret
    assert password in file["content"]
    assert body["env"] == {"GITEA_USER": "websoft9"}
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert set(members) == {"files/etc/app/app.json", "env"}
        assert members["files/etc/app/app.json"].mode == 0o600
        assert archive.extractfile("env").read() == b"export GITEA_USER='websoft9'\n"  # type: ignore[union-attr]
    lines = waiting.text.splitlines()
    assert lines[0] == "waiting"
    assert any(line.startswith("dep down") for line in lines)
    assert elsewhere == [403, 403, 403, 403]
    assert refused.status_code == 403
    assert "dep-config" in refused.json()["detail"]
    assert plain_reader.status_code == 403  # secrets in plaintext: not for any reader
    assert admin_api.get("/api/v1/services/app/config").status_code == 200
    # Each fetch is a reveal in the audit log: which secret keys, by which key, never the values.
    reveals = admin_api.get("/api/v1/audit", params={"action": "secrets.reveal", "actor": "app-config"}).json()
    assert reveals["entries"], reveals
    assert {(c["section"], c["key"]) for e in reveals["entries"] for c in e["changes"]} == {("gitea", "user_pwd")}
    assert password not in json.dumps(reveals)


def test_post_init_without_waiting_answers_202_and_the_status_follows(stage: Stage, admin_api: httpx.Client) -> None:
    wait_for_init(admin_api)

    response = admin_api.post("/api/v1/init", params={"service": "cockpit", "wait": "false"})

    assert response.status_code == 202
    assert response.json()["started"] == ["cockpit"]
    deadline = time.monotonic() + 10
    while admin_api.get("/api/v1/init/status").json()["services"][0]["trigger"] != "api":
        assert time.monotonic() < deadline
        time.sleep(0.05)
