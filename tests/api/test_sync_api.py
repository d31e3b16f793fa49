"""The sync engine over HTTP, on a live server whose lifespan runs the real engine:
`?wait=true` on writes, `POST /api/v1/settings/plan`, `POST /api/v1/settings/reload`,
`GET /api/v1/sync/status`, `GET /metrics`, and the roles each needs.

The data folder is prepared (schema, [sync] roots, services.yaml) before the server starts, as
an operator would do it; services reload with the `exec` strategy (a script that logs each
reload) and report health on a real loopback HTTP server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from apphub.api.app import create_app
from apphub.core import Core
from tests.api.conftest import assert_problem
from tests.conftest import LiveServer, free_port, serving
from tests.sync.conftest import ADMIN_PASSWORD, HttpService, SyncWorld, http_services, make_world, wait_until

MASK = "********"
STAGES = ("detect", "validate", "render", "write", "reload", "healthy")


@dataclass
class Setup:
    world: SyncWorld
    server: LiveServer
    health: HttpService
    admin: httpx.Client
    reader: httpx.Client
    writer: httpx.Client


@pytest.fixture
def setup(core: Core, tmp_path: Path) -> Iterator[Setup]:
    """web (JSON, health on a loopback HTTP server) and db, served with the engine running."""
    world = make_world(core, tmp_path)
    with http_services() as make:
        health = make()
        world.standard(web={"health": {"http": f"{health.url}/health", "timeout": 0.5, "interval": 0.05}})
        keys = {"read": core.keys.create("sync-reader", "read"), "write": core.keys.create("sync-writer", "write")}
        admin_key = world.data.admin_key.read_text().strip()
        with serving(world.data) as server, server.client(admin_key) as admin, \
                server.client(keys["read"]) as reader, server.client(keys["write"]) as writer:
            wait_until(lambda: admin.get("/api/v1/sync/status").json()["engine"]["syncs"] >= 1, 10, "the first sync")
            yield Setup(world, server, health, admin, reader, writer)


def _services(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {service["service"]: service for service in body["services"]}


def _file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


# -- ?wait=true -----------------------------------------------------------------------------------


def test_a_write_with_wait_says_what_happened_to_each_service(setup: Setup) -> None:
    response = setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 9001})
    assert response.status_code == 200, response.text
    sync = response.json()["sync"]
    assert sync["done"] is True
    assert sync["ok"] is True
    assert sync["version"] == response.json()["version"]
    web = _services(sync)["web"]
    assert (web["result"], web["action"], web["error"]) == ("applied", "exec", None)
    assert {"reload", "healthy", "write"} <= set(web["timings_ms"])
    assert web["timings_ms"]["reload"] > 0
    # by the time the response arrives the file is written and the service reloaded
    assert '"port": 9001' in setup.world.path("web/app.json").read_text()
    assert len(setup.world.reloads("web")) == 2
    assert _services(sync).get("db", {"result": "unchanged"})["result"] == "unchanged"


def test_a_write_that_changes_nothing_says_so(setup: Setup) -> None:
    response = setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 8081})
    assert response.status_code == 200, response.text
    assert response.json()["sync"] == {"done": True, "detail": "nothing changed"}
    assert len(setup.world.reloads()) == 2


def test_a_write_without_wait_has_no_sync_part(setup: Setup) -> None:
    response = setup.writer.put("/api/v1/settings/web", json={"port": 9002})
    assert response.status_code == 200, response.text
    assert "sync" not in response.json()
    wait_until(lambda: '"port": 9002' in setup.world.path("web/app.json").read_text(), 2, "the change")


def test_a_delete_with_wait_and_a_batch_with_wait(setup: Setup) -> None:
    response = setup.writer.put("/api/v1/settings?wait=true",
                                json={"web": {"motd": "maintenance"}, "db": {"port": 6000}})
    assert response.status_code == 200, response.text
    services = _services(response.json()["sync"])
    assert services["web"]["result"] == "applied"
    assert services["web"]["action"] == "none", "motd is hot: the file changes, no reload"
    assert services["db"]["result"] == "applied"
    assert services["db"]["action"] == "exec"
    assert len(setup.world.reloads("web")) == 1
    assert len(setup.world.reloads("db")) == 2

    response = setup.writer.delete("/api/v1/settings/web/motd?wait=true")
    assert response.status_code == 200, response.text
    assert _services(response.json()["sync"])["web"]["result"] == "applied"
    assert '"motd": "hello"' in setup.world.path("web/app.json").read_text(), "back to the schema default"


def test_a_write_whose_service_fails_its_gate_is_reported_failed(setup: Setup) -> None:
    app = setup.world.path("web/app.json")
    good = app.read_bytes()
    setup.health.health_status = 503
    response = setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 9003})
    assert response.status_code == 200, response.text  # config.ini took the change
    sync = response.json()["sync"]
    assert sync["ok"] is False
    web = _services(sync)["web"]
    assert web["result"] == "failed"
    assert web["error"].startswith("failed to apply version")
    assert "HTTP 503" in web["error"]
    assert app.read_bytes() == good


# -- plan -----------------------------------------------------------------------------------------


def test_plan_shows_the_diff_and_action_and_writes_nothing(setup: Setup) -> None:
    world = setup.world
    paths = [world.path("web/app.json"), world.path("db/db.ini"), world.data.config_ini]
    before = {path: _file_state(path) for path in paths}
    response = setup.reader.post("/api/v1/settings/plan", json={"web": {"port": 9001}})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["refused"] is False
    web = _services(plan)["web"]
    assert web["changed"] is True
    assert web["action"] == "exec"
    assert web["level"] == "restart"
    assert web["because"] == ["web.port"]
    assert '-    "port": 8081,' in web["files"][0]["diff"]
    assert '+    "port": 9001,' in web["files"][0]["diff"]
    assert plan["version"] != setup.admin.get("/api/v1/settings").json()["version"], "the proposed version"
    assert {path: _file_state(path) for path in paths} == before, "a plan writes nothing"
    assert len(world.reloads()) == 2, "and reloads nothing"


def test_plan_without_a_body_is_what_a_full_sync_would_do(setup: Setup) -> None:
    response = setup.reader.post("/api/v1/settings/plan")
    assert response.status_code == 200, response.text
    services = _services(response.json())
    assert set(services) == {"web", "db"}
    assert not any(service["changed"] for service in services.values()), "everything is in sync"

    db = setup.world.path("db/db.ini")
    db.write_text(db.read_text().replace("port = 5433", "port = 1"))  # drift (policy: report)
    services = _services(setup.reader.post("/api/v1/settings/plan").json())
    assert services["db"]["changed"] is True
    assert "+port = 5433" in services["db"]["files"][0]["diff"]


def test_plan_masks_secrets(setup: Setup, tmp_path: Path) -> None:
    env = setup.world.path("web/secret.env")
    setup.world.standard(web={"health": {"http": f"{setup.health.url}/health", "timeout": 0.5}},
                         secrets={"files": [{"path": str(env), "map": {"PASSWORD": "${web.admin_password}"}}]})
    wait_until(env.exists, 3, "the new service's file")
    new_password = "Plan-ne3w-Secret"
    # for a key that may not read the secrets, the plan would tell whether a guess equals the stored one
    assert_problem(setup.reader.post("/api/v1/settings/plan", json={"web": {"admin_password": new_password}}),
                   403, "[web] admin_password")
    response = setup.admin.post("/api/v1/settings/plan", json={"web": {"admin_password": new_password}})
    assert response.status_code == 200, response.text
    assert new_password not in response.text
    assert ADMIN_PASSWORD not in response.text
    assert f"+PASSWORD={MASK}" in _services(response.json())["secrets"]["files"][0]["diff"]


def test_plan_of_an_invalid_change_is_refused_like_the_write(setup: Setup) -> None:
    response = setup.reader.post("/api/v1/settings/plan", json={"web": {"port": 99999}})
    assert_problem(response, 422, "[web] port")


# -- reload, status, metrics ----------------------------------------------------------------------


def test_reload_runs_a_full_sync_and_retries_a_failed_service(setup: Setup) -> None:
    app = setup.world.path("web/app.json")
    setup.health.health_status = 503
    response = setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 9004})
    assert _services(response.json()["sync"])["web"]["result"] == "failed"
    setup.health.health_status = 200  # the operator fixed what made it unhealthy

    response = setup.writer.post("/api/v1/settings/reload")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["done"] is True
    assert report["ok"] is True
    services = _services(report)
    assert set(services) == {"web", "db"}, "a full sync looks at every service"
    assert services["web"]["result"] == "applied"
    assert services["db"]["result"] == "unchanged"
    assert '"port": 9004' in app.read_text()
    status = _services(setup.reader.get("/api/v1/sync/status").json())
    assert status["web"]["state"] == "applied"


def test_status_shows_versions_states_actions_and_stage_timings(setup: Setup) -> None:
    response = setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 9005})
    version = response.json()["version"]
    status = setup.reader.get("/api/v1/sync/status")
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["engine"]["running"] is True
    assert body["engine"]["config_version"] == version
    assert body["engine"]["applied_version"] == version
    web = _services(body)["web"]
    assert web["state"] == "applied"
    assert web["wanted_version"] == version
    assert web["applied_version"] == version
    assert web["last_action"] == "exec"
    assert web["last_error"] is None
    for stage in STAGES:
        assert stage in web["timings_ms"], f"no {stage} timing in {web['timings_ms']}"
        assert web["timings_ms"][stage] >= 0
    db = _services(body)["db"]
    assert db["state"] == "applied"
    assert db["applied_version"] == version, "db is at this version too (nothing in it changed)"


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_are_prometheus_text_and_move_after_a_change(setup: Setup) -> None:
    before = setup.reader.get("/metrics")
    assert before.status_code == 200, before.text
    assert before.headers["content-type"].startswith("text/plain")
    assert "# TYPE apphub_sync_stage_seconds histogram" in before.text
    reloads = _metric(before.text, "apphub_sync_reloads_total", service="web", result="applied")
    renders = _metric(before.text, "apphub_sync_stage_seconds_count", stage="render")
    healthy = _metric(before.text, "apphub_sync_stage_seconds_count", stage="healthy")
    assert reloads == 1, "the first sync reloaded web once"

    setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 9006})
    after = setup.reader.get("/metrics").text
    assert _metric(after, "apphub_sync_reloads_total", service="web", result="applied", strategy="exec") == reloads + 1
    assert _metric(after, "apphub_sync_stage_seconds_count", stage="render") > renders
    assert _metric(after, "apphub_sync_stage_seconds_count", stage="healthy") == healthy + 1

    setup.health.health_status = 503
    setup.writer.put("/api/v1/settings/web?wait=true", json={"port": 9007})
    failed = setup.reader.get("/metrics").text
    assert _metric(failed, "apphub_sync_reloads_total", service="web", result="failed") == 1
    assert _metric(failed, "apphub_sync_failures_total", reason="failed") == 1


# -- roles ----------------------------------------------------------------------------------------


def test_roles(setup: Setup) -> None:
    reader, writer = setup.reader, setup.writer
    assert reader.post("/api/v1/settings/plan", json={"web": {"port": 9001}}).status_code == 200
    assert reader.get("/api/v1/sync/status").status_code == 200
    assert reader.get("/metrics").status_code == 200
    assert_problem(reader.post("/api/v1/settings/reload"), 403, "write")
    assert_problem(reader.put("/api/v1/settings/web?wait=true", json={"port": 9001}), 403)
    assert writer.post("/api/v1/settings/reload").status_code == 200
    with setup.server.client() as anonymous:
        for method, url in (("POST", "/api/v1/settings/plan"), ("POST", "/api/v1/settings/reload"),
                            ("GET", "/api/v1/sync/status"), ("GET", "/metrics")):
            assert anonymous.request(method, url).status_code == 401, (method, url)
    assert len(setup.world.reloads()) == 2, "only the writer's full sync ran, and it had nothing to do"


def test_a_server_without_the_engine_says_so(core: Core, tmp_path: Path) -> None:
    admin_key = core.data.admin_key.read_text().strip()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(core.data, sync=False), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10, "the server")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": admin_key}) as client:
            response = client.get("/api/v1/sync/status")
            assert response.status_code >= 400
            assert "not running" in response.text
            put = client.put("/api/v1/settings/gitea?wait=true", json={"user_email": "ops@example.com"})
            assert put.status_code == 200, put.text
            assert "sync" not in put.json()
    finally:
        server.should_exit = True
        thread.join(10)
