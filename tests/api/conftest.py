"""Fixtures and checks shared by the HTTP API tests: keys of every role, the Websoft9 key, problem checks.

Keys are created on the live server's own data folder through `core.keys` (a second connection to
the same SQLite file), the way `apphub keys create` does it while the server runs.

`module_server` is a second live server, started the same way as `live_server` but once per test
module: the matrices of requests that must change nothing (refusals, reads) share it, which keeps
the suite fast; every test that writes uses its own `live_server`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import Secret
from tests.conftest import LiveServer, serving

PROBLEM_JSON = "application/problem+json"
MASK = "********"


@dataclass(frozen=True)
class Keys:
    """One key per role on the live server's data folder, plus Websoft9's `[api_key] key`."""

    read: str
    write: str
    admin: str
    websoft9: str

    def of(self, role: str) -> str:
        key: str = getattr(self, role)
        return key


def websoft9_key_of(core: Core) -> str:
    """The plaintext of `[api_key] key` in config.ini now (what `apphub getkey` prints)."""
    value = core.config.snapshot().plaintext("api_key", "key")
    assert isinstance(value, Secret)
    return value.reveal()


@pytest.fixture
def keys(live_server: LiveServer, core: Core, admin_key: str) -> Keys:
    return Keys(
        read=core.keys.create("reader", "read"),
        write=core.keys.create("deployer", "write"),
        admin=admin_key,
        websoft9=websoft9_key_of(core),
    )


@pytest.fixture
def reader(live_server: LiveServer, keys: Keys) -> Iterator[httpx.Client]:
    with live_server.client(keys.read) as client:
        yield client


@pytest.fixture
def writer(live_server: LiveServer, keys: Keys) -> Iterator[httpx.Client]:
    with live_server.client(keys.write) as client:
        yield client


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server for a module of tests that must not change anything (a matrix of refusals).

    Each test still compares the file before and after its own request, so a test that does
    write by mistake fails itself, not its neighbours.
    """
    data = DataDir(tmp_path_factory.mktemp("api") / "data")
    initialise(data)
    with serving(data) as server:
        yield server


@pytest.fixture(scope="module")
def module_keys(module_server: LiveServer) -> Keys:
    core = Core(module_server.data)
    try:
        return Keys(
            read=core.keys.create("reader", "read"),
            write=core.keys.create("deployer", "write"),
            admin=module_server.data.admin_key.read_text().strip(),
            websoft9=websoft9_key_of(core),
        )
    finally:
        core.close()


@pytest.fixture(scope="module")
def module_admin(module_server: LiveServer, module_keys: Keys) -> Iterator[httpx.Client]:
    with module_server.client(module_keys.admin) as client:
        yield client


@pytest.fixture(scope="module")
def module_reader(module_server: LiveServer, module_keys: Keys) -> Iterator[httpx.Client]:
    with module_server.client(module_keys.read) as client:
        yield client


def config_bytes(server: LiveServer) -> bytes:
    return server.data.config_ini.read_bytes()


def version_of_file(path: Path) -> str:
    """The version the API must report for a file: the first 32 hex digits of its SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def assert_problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, object]:
    """An RFC 9457 problem with `status` whose detail (or field errors) names every one of `mentions`."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["type"], str)
    assert body["type"]
    detail = body["detail"]
    assert isinstance(detail, str)
    assert detail
    for mention in mentions:
        assert mention in detail, f"{mention!r} is not named in the detail {detail!r}"
    return body


def assert_legacy_error(response: httpx.Response, status: int, message: str, details: str | None = None) -> str:
    """Websoft9's ErrorResponse: exactly {"message", "details"}."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"message", "details"}, body
    assert body["message"] == message, body
    if details is not None:
        assert body["details"] == details, body
    found: str = body["details"]
    return found
