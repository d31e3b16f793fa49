"""Regressions: request bodies and routes the API must refuse cleanly, without echoing secrets.

- A lone surrogate in a JSON string passed validation and failed in encryption or encoding: 500
  with a traceback. It is now a 422 naming the key.
- An unknown key's value was echoed in the 422; the key may be a mistyped secret (`user_password`).
- A write key could replace `[api_key] key`, which is itself an admin credential.
- A chunked body over 1 MiB on Websoft9's PUT (a route that never reads its body) got through.
- Writes below /api/v1/system where no GET route exists answered 404 instead of 405.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from apphub.core import Core
from tests.conftest import LiveServer
from tests.regressions.conftest import PROBLEM_JSON, Cli

JSON = {"content-type": "application/json"}
MIB = 1024 * 1024


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record the server logs, uvicorn's own included (its loggers do not propagate)."""
    caplog.set_level(logging.DEBUG)
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn.removeHandler(caplog.handler)


def problem_keys(response: httpx.Response) -> list[str | None]:
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    return [error["key"] for error in response.json()["errors"]]


# -- lone surrogates --------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "body"), [
    ("nginx_proxy_manager", b'{"nike_name": "a\\ud800b"}'),
    ("gitea", b'{"user_pwd": "long-enough-\\udfff-password"}'),  # a secret: refused before encryption
], ids=["plain", "secret"])
def test_a_lone_surrogate_is_a_422_naming_the_key(live_server: LiveServer, admin: httpx.Client,
                                                  server_log: pytest.LogCaptureFixture, section: str,
                                                  body: bytes) -> None:
    before = live_server.data.config_ini.read_bytes()
    key = body.split(b'"')[1].decode()

    response = admin.put(f"/api/v1/settings/{section}", content=body, headers=JSON)

    assert response.status_code == 422, response.text
    assert problem_keys(response) == [key]
    assert live_server.data.config_ini.read_bytes() == before
    assert [r for r in server_log.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert "Traceback" not in server_log.text


# -- a mistyped secret key's value is never echoed --------------------------------------------------


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/settings/gitea", {"user_password": "TopSecret-Value-123"}),
    ("/api/v1/settings", {"gitea": {"user_password": "TopSecret-Value-123"}}),
], ids=["section", "batch"])
def test_a_mistyped_secret_key_is_refused_without_its_value(live_server: LiveServer, admin: httpx.Client,
                                                            path: str, body: dict[str, object]) -> None:
    before = live_server.data.config_ini.read_bytes()

    response = admin.put(path, json=body)

    assert response.status_code == 422, response.text
    assert problem_keys(response) == ["user_password"]
    assert "TopSecret-Value-123" not in response.text
    assert live_server.data.config_ini.read_bytes() == before


def test_config_set_of_a_mistyped_secret_key_does_not_print_its_value(cli: Cli, core: Core) -> None:
    before = core.data.config_ini.read_bytes()

    result = cli("config", "set", "gitea", "user_password", "Hunter2-Secret!")

    assert result.returncode == 1
    assert "user_password" in result.stderr
    assert "Hunter2-Secret!" not in result.stderr + result.stdout
    assert core.data.config_ini.read_bytes() == before


# -- [api_key] key is an admin credential -------------------------------------------------------------

NEW_KEY = "f" * 64


def change_websoft9_key(client: httpx.Client, how: str) -> httpx.Response:
    if how == "section":
        return client.put("/api/v1/settings/api_key", json={"key": NEW_KEY})
    if how == "batch":
        return client.put("/api/v1/settings", json={"api_key": {"key": NEW_KEY}})
    return client.put("/api/settings/api_key", params={"key": "key", "value": NEW_KEY})


@pytest.mark.parametrize("how", ["section", "batch", "legacy"])
def test_a_write_key_cannot_change_the_websoft9_key(live_server: LiveServer, core: Core, how: str) -> None:
    before = live_server.data.config_ini.read_bytes()
    with live_server.client(core.keys.create("deployer", "write")) as writer:
        response = change_websoft9_key(writer, how)

    assert response.status_code == 403, response.text
    assert live_server.data.config_ini.read_bytes() == before


@pytest.mark.parametrize("how", ["section", "batch", "legacy"])
def test_an_admin_key_can_change_the_websoft9_key(live_server: LiveServer, admin: httpx.Client, cli: Cli,
                                                  how: str) -> None:
    response = change_websoft9_key(admin, how)

    assert response.status_code == 200, response.text
    assert cli("getkey").stdout.strip() == NEW_KEY


# -- body limit on Websoft9's PUT ---------------------------------------------------------------------


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


def test_a_chunked_body_over_one_mib_on_websoft9s_put_is_413_in_its_shape(live_server: LiveServer,
                                                                           admin: httpx.Client) -> None:
    before = live_server.data.config_ini.read_bytes()

    response = admin.put("/api/settings/gitea", params={"key": "user_name", "value": "ops"},
                         content=chunks(2 * MIB), headers=JSON)

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert set(response.json()) == {"message", "details"}
    assert live_server.data.config_ini.read_bytes() == before


# -- system.ini is read-only at every depth -------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/api/v1/system/docker_library/path"),
    ("PUT", "/api/v1/system/a/b/c"),
])
def test_writes_anywhere_under_system_are_405_allowing_get(live_server: LiveServer, admin: httpx.Client,
                                                           method: str, path: str) -> None:
    before = live_server.data.system_ini.read_bytes()

    response = admin.request(method, path, json={"path": "/elsewhere"})

    assert response.status_code == 405, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["status"] == 405
    assert response.headers["allow"] == "GET"
    assert live_server.data.system_ini.read_bytes() == before
