"""What the console reads beyond the settings: the status stream, the schema, and the diff of two
versions in each service's files, over HTTP against a live server running the sync engine.

Services reload with the `exec` strategy and report health on a real loopback HTTP server
(tests/sync/conftest.py), so a failed health gate is real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.core import Core
from apphub.web.sessions import CSRF_HEADER
from tests.conftest import LiveServer, serving
from tests.sync.conftest import HttpService, SyncWorld, http_services, make_world, wait_until

MASK = "********"


@dataclass
class Setup:
    world: SyncWorld
    server: LiveServer
    health: HttpService
    admin: httpx.Client


@pytest.fixture
def setup(core: Core, tmp_path: Path) -> Iterator[Setup]:
    world = make_world(core, tmp_path)
    with http_services() as make:
        health = make()
        world.standard(web={"health": {"http": f"{health.url}/health", "timeout": 0.5, "interval": 0.05}})
        admin_key = world.data.admin_key.read_text().strip()
        with serving(world.data) as server, server.client(admin_key) as admin:
            wait_until(lambda: admin.get("/api/v1/sync/status").json()["engine"]["syncs"] >= 1, 10, "the first sync")
            yield Setup(world, server, health, admin)


class StatusStream:
    """GET /api/v1/sync/events, read as the test asks: each `status` event's body in turn."""

    def __init__(self, client: httpx.Client) -> None:
        # a read that waits longer than this for a line fails the test (the stream pings every 15 s)
        self._context = client.stream("GET", "/api/v1/sync/events", timeout=httpx.Timeout(5, read=15))
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()

    def next(self) -> dict[str, Any]:
        kind = None
        for line in self._lines:
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "status":
                found: dict[str, Any] = json.loads(line.split(":", 1)[1])
                return found
        raise AssertionError("the status stream ended")

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> list[dict[str, Any]]:
        """Every event up to the first that `predicate` holds for (AssertionError if none in time)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen.append(self.next())
            if predicate(seen[-1]):
                return seen
        raise AssertionError(f"no such status event in {timeout} s; saw {[_states(e) for e in seen]}")

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def _states(event: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {s["service"]: (s["state"], (s["applied_version"] or "")[:8]) for s in event["services"]}


def _service(event: dict[str, Any], name: str) -> dict[str, Any]:
    return next(service for service in event["services"] if service["service"] == name)


@pytest.fixture
def stream(setup: Setup) -> Iterator[StatusStream]:
    events = StatusStream(setup.admin)
    try:
        yield events
    finally:
        events.close()


def test_the_stream_sends_the_status_at_once_then_applying_then_applied(setup: Setup, stream: StatusStream) -> None:
    first = stream.next()
    assert {"engine", "services"} <= set(first)
    assert _service(first, "web")["state"] == "applied"

    version = setup.admin.put("/api/v1/settings/web", json={"port": 9101}).json()["version"]

    seen = stream.until(lambda e: _service(e, "web")["applied_version"] == version)
    states = [(_service(e, "web")["state"], _service(e, "web")["wanted_version"]) for e in seen]
    assert ("applying", version) in states, states  # shown while it is reloaded and gated
    assert states[-1] == ("applied", version)


def test_a_failed_health_gate_streams_failed_with_why(setup: Setup, stream: StatusStream) -> None:
    stream.next()
    setup.health.health_status = 503

    version = setup.admin.put("/api/v1/settings/web", json={"port": 9102}).json()["version"]

    seen = stream.until(lambda e: _service(e, "web")["state"] == "failed")
    web = _service(seen[-1], "web")
    assert web["wanted_version"] == version
    assert web["applied_version"] != version
    assert "health" in (web["last_error"] or "")


def test_a_read_key_may_follow_the_stream_and_no_key_may_not(setup: Setup, core: Core) -> None:
    reader = core.keys.create("stream-reader", "read")
    with setup.server.client(reader) as client, client.stream("GET", "/api/v1/sync/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
    with setup.server.client() as client:
        assert client.get("/api/v1/sync/events").status_code == 401


def test_the_schema_describes_every_key_and_masks_a_secret_default(setup: Setup) -> None:
    answer = setup.admin.get("/api/v1/schema")

    assert answer.status_code == 200, answer.text
    files = answer.json()["files"]
    gitea = files["config.ini"]["sections"]["gitea"]["keys"]
    assert gitea["user_pwd"]["secret"] is True
    assert gitea["user_pwd"]["default"] in (None, MASK)
    assert gitea["base_url"]["type"] == "url"
    assert {"type", "description", "default", "choices", "apply", "min", "max"} <= set(gitea["base_url"])
    assert "sections" in files["system.ini"]


def test_the_diff_of_two_versions_renders_both_for_each_service(setup: Setup) -> None:
    old = setup.admin.put("/api/v1/settings/web?wait=true", json={"port": 9103}).json()["version"]
    new = setup.admin.put("/api/v1/settings/web?wait=true", json={"port": 9104}).json()["version"]
    setup.admin.put("/api/v1/settings/web?wait=true", json={"port": 9105}).raise_for_status()  # the disk moves on

    answer = setup.admin.get("/api/v1/settings/diff", params={"from": old, "to": new, "services": "true"})

    assert answer.status_code == 200, answer.text
    services = {service["service"]: service for service in answer.json()["services"]["services"]}
    web = services["web"]
    assert web["changed"] is True
    assert web["because"] == ["web.port"]
    [diff] = [file["diff"] for file in web["files"] if file["changed"]]
    assert '-    "port": 9103' in diff  # the two versions' renders, not the disk (which holds 9105)
    assert '+    "port": 9104' in diff
    assert "9105" not in diff
    assert services["db"]["changed"] is False


def test_the_diff_of_services_masks_a_changed_secret(setup: Setup) -> None:
    setup.world.manifest({"web": {"files": [{"path": str(setup.world.path("web/secret.ini")), "format": "ini",
                                             "map": {"auth.password": "${gitea.user_pwd}"}}]}})
    setup.admin.post("/api/v1/settings/reload").raise_for_status()
    old = setup.admin.get("/api/v1/settings").json()["version"]
    new = setup.admin.put("/api/v1/settings/gitea?wait=true", json={"user_pwd": "Another-Secret-Value-42"}).json()
    secrets = [setup.world.core.config.snapshot().plaintext("gitea", "user_pwd").reveal()]  # type: ignore[union-attr]

    answer = setup.admin.get("/api/v1/settings/diff", params={"from": old, "to": new["version"], "services": "true"})

    assert answer.status_code == 200, answer.text
    assert "Another-Secret-Value-42" not in answer.text
    assert all(secret not in answer.text for secret in secrets)
    [web] = [s for s in answer.json()["services"]["services"] if s["service"] == "web"]
    assert web["changed"] is True
    assert MASK in web["files"][0]["diff"]


def test_the_stream_ends_when_its_session_ends(setup: Setup, core: Core) -> None:
    key = core.keys.create("console-user", "read")
    with setup.server.client() as client:
        csrf = client.post("/api/v1/session", json={"key": key}).json()["csrf_token"]
        bare = client.get("/api/v1/sync/events")  # the cookie alone: another app on this host has it too
        stream = client.stream("GET", "/api/v1/sync/events", params={"csrf_token": csrf},
                               timeout=httpx.Timeout(5, read=15))
        with stream as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            client.delete("/api/v1/session", headers={CSRF_HEADER: csrf}).raise_for_status()
            began = time.monotonic()
            rest = list(lines)  # the server ends the stream: this returns

    assert bare.status_code == 403
    assert time.monotonic() - began < 5  # it asks again every 2 s
    assert not [line for line in rest if line.startswith("data:")], rest
