"""Authentication and roles on every route: the OpenAPI document lists them, each key kind is tried on each.

Expected: /healthz is open; no key or an unknown or malformed key is 401 (Websoft9's routes: 400
with its body); a key whose role is too weak is 403; every other combination gets through.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.core import Core
from tests.api.conftest import Keys, assert_legacy_error, assert_problem, websoft9_key_of
from tests.conftest import LiveServer

APPHUB = Path(sys.executable).with_name("apphub")
# An `ahk_` key of the right shape that no data folder has issued.
UNKNOWN_KEY = "ahk_0123456789ab_" + "A" * 43
MALFORMED_KEYS: list[str | None] = ["not-a-key", "ahk_zz", "ahk_" + "0" * 12 + "_short", "ahk_", "x" * 5000,
                                    "clé-é\xff"]
CREDENTIALS = ["none", "unknown", "malformed", "read", "write", "admin", "websoft9"]
RANK = {"read": 0, "write": 1, "admin": 2, "websoft9": 2}
EXPECTED_OPERATIONS = {
    ("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("GET", "/api/v1/settings"), ("PUT", "/api/v1/settings"),
    ("GET", "/api/v1/settings/{section}"), ("PUT", "/api/v1/settings/{section}"),
    ("DELETE", "/api/v1/settings/{section}/{key}"),
    ("GET", "/api/v1/system"), ("GET", "/api/v1/system/{section}"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/settings"), ("GET", "/api/settings/{section}"), ("PUT", "/api/settings/{section}"),
    ("GET", "/api/v1/env"), ("GET", "/api/v1/env/{scope}"), ("PUT", "/api/v1/env/{scope}"),
    ("PUT", "/api/v1/env/{scope}/{name}"), ("DELETE", "/api/v1/env/{scope}/{name}"),
    ("POST", "/api/v1/env/{scope}/plan"),
    ("GET", "/api/v1/services"), ("GET", "/api/v1/services/{name}/health"),
    ("GET", "/api/v1/services/{name}/dependencies"), ("GET", "/api/v1/services/{name}/config"),
    ("GET", "/api/v1/init/status"), ("POST", "/api/v1/init"),
    ("GET", "/api/v1/schema"), ("GET", "/api/v1/sync/events"),
    ("GET", "/api/v1/session"), ("DELETE", "/api/v1/session"),
}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str

    @property
    def legacy(self) -> bool:
        return self.template == "/api/settings" or self.template.startswith("/api/settings/")

    @property
    def needs(self) -> str | None:
        if self.template == "/healthz":
            return None
        if self.template in ADMIN_ONLY:
            return "admin"
        # A plan changes nothing: a read key may ask what a change would do.
        return "read" if self.method == "GET" or self.template in READ_POSTS else "write"


READ_POSTS = {"/api/v1/settings/plan", "/api/v1/settings/rollback/plan", "/api/v1/env/{scope}/plan",
              "/api/v1/templates/{name}/preview", "/api/v1/session"}  # signing out of the console: any key
# The console's sign-in takes a key in its body, not a header: tests/web/test_sessions.py tries it.
SIGN_IN = ("POST", "/api/v1/session")
# A service's bundle holds its secrets in plaintext (an admin or that service's own key); the
# initialisers create accounts.
ADMIN_ONLY = {"/api/v1/services/{name}/config", "/api/v1/init", *(
    f"/api/v1/notifications/{path}" for path in (
        "destinations", "destinations/{name}", "destinations/{name}/enable", "destinations/{name}/disable",
        "destinations/{name}/test",
        "deliveries", "deliveries/{delivery}", "deliveries/{delivery}/replay"))}
# What an allowed request answers where it is not 200.
STATUS = {("POST", "/api/v1/notifications/destinations"): 201,
          ("DELETE", "/api/v1/notifications/destinations/{name}"): 204,
          ("POST", "/api/v1/notifications/destinations/{name}/test"): 202,
          ("DELETE", "/api/v1/session"): 204}


def client_with(server: LiveServer, headers: dict[str, str] | dict[bytes, bytes]) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=headers, timeout=10.0)


def operations(admin: httpx.Client) -> list[Operation]:
    """Every operation of the OpenAPI document (fetched with the admin key), plus /docs and /openapi.json."""
    document = admin.get("/openapi.json")
    assert document.status_code == 200, document.text
    found = [Operation(method.upper(), path) for path, item in document.json()["paths"].items() for method in item
             if method in ("get", "put", "post", "patch", "delete")]
    found += [Operation("GET", "/openapi.json"), Operation("GET", "/docs")]
    return found


# Values a request needs to get past validation on each route, so that only auth decides the outcome.
PATH_VALUES = {
    "/api/v1/settings/{section}": {"section": "gitea"},
    "/api/v1/settings/{section}/{key}": {"section": "nginx_proxy_manager", "key": "nike_name"},
    "/api/v1/settings/{section}/{key}/explain": {"section": "gitea", "key": "user_email"},
    "/api/v1/system/{section}": {"section": "volume_backup"},
    "/api/settings/{section}": {"section": "gitea"},
    "/api/v1/env/{scope}": {"scope": "global"},
    "/api/v1/env/{scope}/{name}": {"scope": "global", "name": "TZ"},
    "/api/v1/env/{scope}/plan": {"scope": "global"},
    "/api/v1/services/{name}/health": {"name": "docker"},
    "/api/v1/services/{name}/dependencies": {"name": "app"},
    "/api/v1/services/{name}/config": {"name": "app"},
    "/api/v1/environments/{name}": {"name": "staging"},
    "/api/v1/environments/{name}/{section}": {"name": "staging", "section": "gitea"},
    "/api/v1/environments/{name}/{section}/{key}": {"name": "staging", "section": "gitea", "key": "user_email"},
    "/api/v1/templates/{name}": {"name": "minimal"},
    "/api/v1/templates/{name}/preview": {"name": "minimal"},
    "/api/v1/templates/{name}/apply": {"name": "minimal"},
}
# A manifest service for the services routes: no files, no reload, so the sync leaves it alone.
MANIFEST = "services:\n  app:\n    description: the services routes' test service\n"
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/settings"): {"gitea": {"user_email": "batch@example.com"}},
    ("PUT", "/api/v1/settings/{section}"): {"user_email": "section@example.com"},
    ("PUT", "/api/v1/env/{scope}"): {"TZ": "UTC"},
    ("PUT", "/api/v1/env/{scope}/{name}"): {"value": "Europe/Berlin"},
    ("POST", "/api/v1/env/{scope}/plan"): {"TZ": "Asia/Tokyo"},
    ("PUT", "/api/v1/environments/{name}/{section}"): {"user_email": "staging@example.com"},
    ("POST", "/api/v1/environments/promote"): {"from": "staging", "to": "base", "keys": ["gitea.user_email"]},
    ("POST", "/api/v1/templates/{name}/preview"): {"variables": {"admin_email": "template@example.com"}},
    ("POST", "/api/v1/templates/{name}/apply"): {"variables": {"admin_email": "template@example.com"}},
}
PARAMS: dict[tuple[str, str], dict[str, str]] = {
    ("PUT", "/api/settings/{section}"): {"key": "user_email", "value": "legacy@example.com"},
    ("GET", "/api/v1/environments/diff"): {"a": "base", "b": "staging"},
}


def send(client: httpx.Client, operation: Operation, admin: httpx.Client) -> httpx.Response:
    if operation.template.startswith("/api/v1/notifications/"):
        return send_notifications(client, operation, admin)
    values = PATH_VALUES.get(operation.template, {})
    # the history's routes take a version: the current one (a rollback to it changes nothing)
    version = admin.get("/api/v1/settings").json()["version"]
    if "{version}" in operation.template:
        values = {"version": version}
    path = operation.template.format(**values)
    assert "{" not in path, f"no test values for the path parameters of {operation.template}; add them to PATH_VALUES"
    if operation.template.startswith("/api/v1/environments/"):
        # the environment `staging` and the key its routes name: there for each request
        admin.put("/api/v1/environments/staging/gitea", json={"user_email": "staging@example.com"}).raise_for_status()
    if operation.method == "DELETE" and "name" in values and "section" in values:
        pass  # the overlay's key was put back above
    elif operation.method == "DELETE" and "scope" in values:
        admin.put(f"/api/v1/env/{values['scope']}/{values['name']}", json={"value": "restored"}).raise_for_status()
    elif operation.method == "DELETE" and operation.template.startswith("/api/v1/settings/"):
        # The key must exist for the delete to succeed; put it back with the admin key first.
        admin.put(f"/api/v1/settings/{values['section']}", json={values["key"]: "restored"}).raise_for_status()
    key = (operation.method, operation.template)
    body = {"version": version} if operation.template.startswith("/api/v1/settings/rollback") else BODIES.get(key)
    params = {"from": version} if operation.template == "/api/v1/settings/diff" else PARAMS.get(key)
    if operation.template == "/api/v1/sync/events":  # a stream that does not end: its answer's head is enough
        response = client.send(client.build_request("GET", path), stream=True)
        if response.status_code != 200:
            response.read()
        response.close()
        return response
    return client.request(operation.method, path, json=body, params=params)


def send_notifications(client: httpx.Client, operation: Operation, admin: httpx.Client) -> httpx.Response:
    """The notification routes, each on a destination (and a delivery) made for it with the admin key."""
    admin.post("/api/v1/notifications/destinations",
               json={"name": "matrix", "kind": "webhook", "url": "http://127.0.0.1:9/matrix"})  # 422 once there
    if operation.template == "/api/v1/notifications/destinations" and operation.method == "POST":
        body = {"name": f"matrix-{secrets.token_hex(4)}", "kind": "slack", "url": "http://127.0.0.1:9/matrix"}
        return client.post(operation.template, json=body)
    delivery = admin.post("/api/v1/notifications/destinations/matrix/test").json()["deliveries"][0]
    path = operation.template.format(name="matrix", delivery=delivery)
    return client.request(operation.method, path)


def check(operation: Operation, credential: str, response: httpx.Response) -> None:
    needs = operation.needs
    if needs is None:
        assert response.status_code == 200
        return
    if credential in ("none", "unknown", "malformed"):
        details = "No API Key provided" if credential == "none" else "Invalid API Key"
        if operation.legacy:
            assert_legacy_error(response, 400, "Invalid Request", details)
        else:
            assert_problem(response, 401, details)
            assert response.headers["www-authenticate"].startswith("APIKey")
        return
    if RANK[credential] < RANK[needs]:
        if operation.legacy:
            assert_legacy_error(response, 403, "Forbidden")
        else:
            assert_problem(response, 403, credential, needs)
        return
    assert response.status_code == STATUS.get((operation.method, operation.template), 200), response.text[:500]


def run_matrix(live_server: LiveServer, admin: httpx.Client, key_for: Callable[[], list[str | None]],
               credential: str) -> None:
    (live_server.data.root / "services.yaml").write_text(MANIFEST)
    found = operations(admin)
    assert {(o.method, o.template) for o in found} >= EXPECTED_OPERATIONS
    failures = []
    for presented in key_for():
        headers = {b"x-api-key": presented.encode("latin-1")} if presented is not None else {}
        with client_with(live_server, headers) as client:
            for operation in found:
                if (operation.method, operation.template) == SIGN_IN:
                    continue
                response = send(client, operation, admin)
                try:
                    check(operation, credential, response)
                except AssertionError as exc:
                    failures.append(f"{operation.method} {operation.template} with {credential} key "
                                    f"{(presented or '')[:24]!r}: {response.status_code} {response.text[:200]} ({exc})")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("credential", CREDENTIALS)
def test_every_route_with_every_kind_of_key(module_server: LiveServer, module_admin: httpx.Client,
                                            module_keys: Keys, credential: str) -> None:
    keys = module_keys

    def key_for() -> list[str | None]:
        if credential == "none":
            return [None, ""]
        if credential == "unknown":
            return [UNKNOWN_KEY, keys.admin[:-1] + ("B" if keys.admin[-1] != "B" else "C"), keys.websoft9 + "0"]
        if credential == "malformed":
            return list(MALFORMED_KEYS)
        return [keys.of(credential)]

    run_matrix(module_server, module_admin, key_for, credential)


def test_healthz_is_open_and_answers_the_same_with_any_key(module_server: LiveServer) -> None:
    for headers in ({}, {"x-api-key": "nonsense"}):
        with client_with(module_server, headers) as client:
            response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


def test_the_key_header_name_is_x_api_key_only(module_server: LiveServer, module_keys: Keys) -> None:
    keys = module_keys
    for headers in ({"Authorization": f"Bearer {keys.admin}"}, {"api_key": keys.admin}):
        with client_with(module_server, headers) as client:
            assert_problem(client.get("/api/v1/settings"), 401, "No API Key provided")
    with client_with(module_server, {"X-API-KEY": keys.read}) as client:
        assert client.get("/api/v1/settings").status_code == 200


def test_a_key_in_the_query_string_is_not_accepted(module_server: LiveServer, module_keys: Keys) -> None:
    with module_server.client() as client:
        assert_problem(client.get("/api/v1/settings", params={"x-api-key": module_keys.admin}), 401)


# -- keys created and revoked while the server runs ----------------------------------------------


def test_a_key_created_while_the_server_runs_works_at_once(live_server: LiveServer, core: Core) -> None:
    key = core.keys.create("late", "read")
    with live_server.client(key) as client:
        assert client.get("/api/v1/settings").status_code == 200


def test_a_revoked_key_stops_working_immediately(live_server: LiveServer, core: Core) -> None:
    key = core.keys.create("temporary", "write")
    with live_server.client(key) as client:
        assert client.put("/api/v1/settings/cockpit", json={"port": 9091}).status_code == 200

        core.keys.revoke("temporary")

        assert_problem(client.get("/api/v1/settings"), 401, "Invalid API Key")
        assert_problem(client.put("/api/v1/settings/cockpit", json={"port": 9092}), 401)
        assert_legacy_error(client.get("/api/settings"), 400, "Invalid Request", "Invalid API Key")
    assert b"port = 9091\n" in live_server.data.config_ini.read_bytes()


def test_a_key_revoked_with_the_cli_stops_working(live_server: LiveServer, core: Core) -> None:
    key = core.keys.create("ci-bot", "read")
    with live_server.client(key) as client:
        assert client.get("/api/v1/settings").status_code == 200
        result = subprocess.run([str(APPHUB), "--data-dir", str(live_server.data.root), "keys", "revoke", "ci-bot"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert_problem(client.get("/api/v1/settings"), 401, "Invalid API Key")


def test_a_new_key_with_a_revoked_name_is_a_different_key(live_server: LiveServer, core: Core) -> None:
    old = core.keys.create("rotating", "read")
    core.keys.revoke("rotating")
    new = core.keys.create("rotating", "read")
    with live_server.client(old) as client:
        assert client.get("/api/v1/settings").status_code == 401
    with live_server.client(new) as client:
        assert client.get("/api/v1/settings").status_code == 200


def test_replacing_the_websoft9_key_retires_the_old_one_at_once(live_server: LiveServer, admin: httpx.Client,
                                                                core: Core) -> None:
    old = websoft9_key_of(core)
    new = "f" * 64
    with live_server.client(old) as client:
        assert client.put("/api/v1/settings/api_key", json={"key": new}).status_code == 200
        assert_legacy_error(client.get("/api/settings"), 400, "Invalid Request", "Invalid API Key")
        assert_problem(client.get("/api/v1/settings"), 401)
    with live_server.client(new) as client:
        assert client.get("/api/settings").status_code == 200
    assert admin.get("/api/v1/audit").json()["entries"][0]["actor"] == "api_key"


@pytest.mark.parametrize("route", ["legacy", "v1-section", "v1-batch"])
def test_only_an_admin_may_change_the_websoft9_key(module_server: LiveServer, module_keys: Keys, route: str) -> None:
    before = module_server.data.config_ini.read_bytes()
    with module_server.client(module_keys.write) as writer:
        if route == "legacy":
            response = writer.put("/api/settings/api_key", params={"key": "key", "value": "a" * 64})
            assert_legacy_error(response, 403, "Forbidden")
        elif route == "v1-section":
            assert_problem(writer.put("/api/v1/settings/api_key", json={"key": "a" * 64}), 403, "admin")
        else:
            response = writer.put("/api/v1/settings", json={"cockpit": {"port": 9091}, "api_key": {"key": "a" * 64}})
            assert_problem(response, 403, "admin")
    assert module_server.data.config_ini.read_bytes() == before
    with module_server.client(module_keys.websoft9) as websoft9:
        assert websoft9.get("/api/settings").status_code == 200


def test_an_empty_websoft9_key_lets_no_one_in(live_server: LiveServer) -> None:
    path = live_server.data.config_ini
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index("[api_key]\n")
    lines[start + 1] = "key = \n"
    path.write_text("".join(lines), encoding="utf-8")

    for presented in ("", "enc:v1:", "None", "0"):
        with client_with(live_server, {"x-api-key": presented}) as client:
            assert client.get("/api/v1/settings").status_code == 401


# -- the Websoft9 key when config.ini is not in good shape ---------------------------------------


def test_a_config_ini_that_does_not_parse_is_not_shown_to_a_caller_without_a_valid_key(
        live_server: LiveServer) -> None:
    path = live_server.data.config_ini
    path.write_text(path.read_text(encoding="utf-8").replace("port = 9090\n", "port = 9090\nroot_password hunter2\n"),
                    encoding="utf-8")

    with client_with(live_server, {"x-api-key": "guessing"}) as client:
        new_route = client.get("/api/v1/settings")
        legacy_route = client.get("/api/settings")

    assert_problem(new_route, 401, "Invalid API Key")
    assert_legacy_error(legacy_route, 400, "Invalid Request", "Invalid API Key")
    for response in (new_route, legacy_route):
        assert "hunter2" not in response.text


def test_a_damaged_secret_in_another_section_does_not_lock_out_the_websoft9_key(live_server: LiveServer,
                                                                                 core: Core) -> None:
    websoft9 = websoft9_key_of(core)
    path = live_server.data.config_ini
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    gitea = lines.index("[gitea]\n")
    password = next(n for n in range(gitea, len(lines)) if lines[n].startswith("user_pwd = "))
    lines[password] = "user_pwd = enc:v1:damaged-by-a-hand-edit\n"
    path.write_text("".join(lines), encoding="utf-8")

    with live_server.client(websoft9) as client:
        response = client.get("/api/settings/cockpit")

    assert response.status_code == 200, response.text
    assert response.json() == {"port": "9090"}
