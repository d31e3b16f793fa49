"""`/api/v1/audit`: every write through the API is there, with who, how, request id and old -> new."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir
from tests.api.conftest import MASK, Keys, assert_problem, serving
from tests.conftest import LiveServer

APPHUB = Path(sys.executable).with_name("apphub")


def audit(client: httpx.Client, after: int, **filters: str | int) -> list[dict[str, Any]]:
    """The entries newer than the id `after` that match `filters`, newest first."""
    response = client.get("/api/v1/audit", params={"limit": 500, **filters})
    assert response.status_code == 200, response.text
    assert response.json()["next"] is None
    return [entry for entry in response.json()["entries"] if entry["id"] > after]


def newest_id(client: httpx.Client) -> int:
    entries = client.get("/api/v1/audit", params={"limit": 1}).json()["entries"]
    return int(entries[0]["id"]) if entries else 0


@pytest.fixture
def start(admin: httpx.Client) -> int:
    """The newest audit entry before the test acts (a first start may record its own)."""
    return newest_id(admin)


def changes_of(entry: dict[str, Any]) -> list[tuple[str, str, str, str | None, str | None]]:
    return [(c["section"], c["key"], c["change"], c["old"], c["new"]) for c in entry["changes"]]


def cli(server: LiveServer, *args: str) -> None:
    result = subprocess.run([str(APPHUB), "--data-dir", str(server.data.root), *args], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


# -- what a write records -----------------------------------------------------------------------


def test_put_section_is_audited_with_actor_source_request_id_and_versions(writer: httpx.Client,
                                                                          admin: httpx.Client, start: int) -> None:
    response = writer.put("/api/v1/settings/gitea", json={"user_email": "ops@example.com"},
                          headers={"X-Request-ID": "change-4711"})

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "change-4711"
    [entry] = audit(admin, start)
    assert entry["actor"] == "deployer"
    assert entry["source"] == "api"
    assert entry["request_id"] == "change-4711"
    assert entry["action"] == "settings.update"
    assert entry["file"] == "config.ini"
    assert entry["version_before"] == response.json()["previous_version"]
    assert entry["version_after"] == response.json()["version"]
    assert changes_of(entry) == [("gitea", "user_email", "set", "admin@mydomain.com", "ops@example.com")]


def test_a_secret_change_is_audited_masked(admin: httpx.Client, start: int) -> None:
    admin.put("/api/v1/settings/portainer", json={"user_pwd": "Portainer-Secret-9"}).raise_for_status()

    [entry] = audit(admin, start)
    assert changes_of(entry) == [("portainer", "user_pwd", "set", MASK, MASK)]
    assert "Portainer-Secret-9" not in admin.get("/api/v1/audit").text


def test_every_write_route_is_audited(live_server: LiveServer, keys: Keys, admin: httpx.Client, start: int) -> None:
    with live_server.client(keys.write) as writer, live_server.client(keys.websoft9) as websoft9:
        writes = [
            writer.put("/api/v1/settings/gitea", json={"user_email": "a@example.com"},
                       headers={"X-Request-ID": "r-section"}),
            writer.put("/api/v1/settings", json={"cockpit": {"port": 9091}, "domain": {"wildcard_domain": "x.io"}},
                       headers={"X-Request-ID": "r-batch"}),
            writer.delete("/api/v1/settings/nginx_proxy_manager/nike_name", headers={"X-Request-ID": "r-delete"}),
            websoft9.put("/api/settings/gitea", params={"key": "user_name", "value": "ops"},
                         headers={"X-Request-ID": "r-legacy"}),
        ]
    for response in writes:
        assert response.status_code == 200, response.text

    entries = audit(admin, start)
    assert [(e["request_id"], e["actor"], e["source"], e["action"]) for e in entries] == [
        ("r-legacy", "api_key", "api", "settings.update"),
        ("r-delete", "deployer", "api", "settings.delete"),
        ("r-batch", "deployer", "api", "settings.update"),
        ("r-section", "deployer", "api", "settings.update"),
    ]
    assert changes_of(entries[0]) == [("gitea", "user_name", "set", "websoft9", "ops")]
    assert changes_of(entries[1]) == [("nginx_proxy_manager", "nike_name", "delete", "admin", None)]
    assert sorted(changes_of(entries[2])) == [("cockpit", "port", "set", "9090", "9091"),
                                              ("domain", "wildcard_domain", "set", "", "x.io")]
    assert changes_of(entries[3]) == [("gitea", "user_email", "set", "admin@mydomain.com", "a@example.com")]
    for response, entry in zip(reversed(writes), entries, strict=True):
        assert response.headers["x-request-id"] == entry["request_id"]


def test_refused_and_no_op_writes_leave_no_audit_entry(admin: httpx.Client, start: int) -> None:
    assert admin.put("/api/v1/settings/cockpit", json={"port": 99999}).status_code == 422
    assert admin.put("/api/v1/settings/cockpit", json={"port": 9090}).status_code == 200
    assert audit(admin, start) == []


@pytest.mark.parametrize("offered", ["has spaces", "x" * 65, "new\\nline", "ünï"])
def test_an_unusable_request_id_is_replaced_by_a_generated_one(admin: httpx.Client, offered: str, start: int) -> None:
    response = admin.put("/api/v1/settings/cockpit", json={"port": 9091}, headers=[(b"X-Request-ID", offered.encode())])

    assert response.status_code == 200, response.text
    generated = response.headers["x-request-id"]
    assert generated != offered
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert audit(admin, start)[0]["request_id"] == generated


def test_a_request_without_id_gets_one_echoed_and_stored(admin: httpx.Client, start: int) -> None:
    response = admin.put("/api/v1/settings/cockpit", json={"port": 9091})
    assert audit(admin, start)[0]["request_id"] == response.headers["x-request-id"]


# -- filters ------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """A server whose audit log holds writes by two keys and the CLI on different sections and keys."""

    server: LiveServer
    admin: httpx.Client
    start: int  # the newest entry before the writes
    history: list[dict[str, Any]]  # the writes' entries, newest first


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    # Read-only queries over one history, so one server serves the whole group of filter tests.
    data = DataDir(tmp_path_factory.mktemp("audit") / "data")
    initialise(data)
    core = Core(data)
    try:
        deployer = core.keys.create("deployer", "write")
    finally:
        core.close()
    with serving(data) as server, server.client(data.admin_key.read_text().strip()) as admin, \
            server.client(deployer) as writer:
        start = newest_id(admin)
        writer.put("/api/v1/settings/gitea", json={"user_email": "one@example.com"}).raise_for_status()
        writer.put("/api/v1/settings/cockpit", json={"port": 9091}).raise_for_status()
        admin.put("/api/v1/settings", json={"gitea": {"user_name": "ops"},
                                            "nginx_proxy_manager": {"listen_port": 9001}}).raise_for_status()
        cli(server, "config", "set", "cockpit", "port", "9092")
        admin.put("/api/v1/settings/domain", json={"wildcard_domain": "apps.example.com"}).raise_for_status()
        history = audit(admin, start)
        assert len(history) == 5
        yield Recorded(server, admin, start, history)


def test_filter_by_section(recorded: Recorded) -> None:
    start = recorded.start
    admin, history = recorded.admin, recorded.history
    found = audit(admin, start, section="gitea")
    assert [e["id"] for e in found] == [e["id"] for e in history
                                        if any(c["section"] == "gitea" for c in e["changes"])]
    assert len(found) == 2


def test_filter_by_key_and_section_and_key(recorded: Recorded) -> None:
    start = recorded.start
    admin = recorded.admin
    ports = audit(admin, start, key="port")
    assert [changes_of(e) for e in ports] == [[("cockpit", "port", "set", "9091", "9092")],
                                              [("cockpit", "port", "set", "9090", "9091")]]
    assert len(audit(admin, start, section="nginx_proxy_manager", key="listen_port")) == 1
    assert audit(admin, start, section="gitea", key="listen_port") == []


def test_filter_by_actor_and_source(recorded: Recorded) -> None:
    start = recorded.start
    admin = recorded.admin
    assert [e["actor"] for e in audit(admin, start, actor="deployer")] == ["deployer", "deployer"]
    [from_cli] = audit(admin, start, source="cli")
    assert (from_cli["actor"], from_cli["source"]) == ("cli", "cli")
    assert changes_of(from_cli) == [("cockpit", "port", "set", "9091", "9092")]
    assert len(audit(admin, start, source="api")) == 4
    assert audit(admin, start, actor="deployer", section="nginx_proxy_manager") == []
    assert audit(admin, start, actor="nobody") == []


def test_filter_by_time(recorded: Recorded) -> None:
    start = recorded.start
    admin, history = recorded.admin, recorded.history
    oldest_first = list(reversed(history))
    middle = oldest_first[2]["at"]

    since = audit(admin, start, since=middle)
    until = audit(admin, start, until=middle)

    assert [e["id"] for e in since] == [e["id"] for e in history if e["at"] >= middle]
    assert [e["id"] for e in until] == [e["id"] for e in history if e["at"] <= middle]
    assert len(since) == 3
    assert len(until) == 3
    assert [e["id"] for e in audit(admin, start, since=middle, until=middle)] == [oldest_first[2]["id"]]
    assert audit(admin, start, since="2999-01-01T00:00:00Z") == []
    assert len(audit(admin, start, until="2999-01-01T00:00:00+02:00")) == 5
    assert audit(admin, start, until="2000-01-01") == []
    assert all(e["at"] >= middle for e in audit(admin, 0, since=middle))
    assert all(e["at"] <= middle for e in audit(admin, 0, until=middle))


@pytest.mark.parametrize(("name", "value"), [
    ("since", "yesterday"), ("until", "2026-13-45"), ("since", ""),
    # ISO 8601 times that leave years 1-9999 once moved to UTC (the conversion overflowed: a 500)
    ("since", "0001-01-01T00:00:00+01:00"), ("until", "9999-12-31T23:30:00-01:00"),
])
def test_a_bad_time_is_a_request_that_cannot_be_read_400_naming_it(recorded: Recorded, name: str,
                                                                  value: str) -> None:
    response = recorded.admin.get("/api/v1/audit", params={name: value})

    # A query parameter is not a setting: no "problems in the proposed settings", no 422.
    body = assert_problem(response, 400, f"query.{name}", "ISO 8601")
    assert body["type"] == "urn:apphub:problem:invalid-request"
    assert body["errors"] == [{"field": f"query.{name}", "rule": "datetime_parsing",
                               "message": body["errors"][0]["message"]}]  # type: ignore[index]
    assert "settings" not in str(body["detail"])


@pytest.mark.parametrize(("name", "value"), [
    ("limit", "0"), ("limit", "501"), ("limit", "ten"), ("before", "0"),
    # past SQLite's INTEGER (2**63-1): binding it overflowed, a 500
    ("before", "99999999999999999999"), ("before", str(2**63)),
])
def test_a_bad_page_parameter_is_400(recorded: Recorded, name: str, value: str) -> None:
    body = assert_problem(recorded.admin.get("/api/v1/audit", params={name: value}), 400, name)
    assert [error["field"] for error in body["errors"]] == [f"query.{name}"]  # type: ignore[union-attr]


def test_the_largest_cursor_is_answered(recorded: Recorded) -> None:
    response = recorded.admin.get("/api/v1/audit", params={"before": 2**63 - 1, "limit": 500})

    assert response.status_code == 200, response.text
    assert len(response.json()["entries"]) >= 3


# -- pagination ---------------------------------------------------------------------------------


def follow(client: httpx.Client, first: str, params: dict[str, str | int]) -> list[list[dict[str, Any]]]:
    pages = []
    response = client.get(first, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["entries"])
        if body["next"] is None:
            return pages
        assert len(pages) < 50, "pagination does not end"
        response = client.get(body["next"])


@pytest.mark.parametrize("limit", [1, 2, 5, 6])
def test_pages_follow_next_until_exhausted(recorded: Recorded, limit: int) -> None:
    pages = follow(recorded.admin, "/api/v1/audit", {"limit": limit})

    sizes = [len(page) for page in pages]
    assert all(size == limit for size in sizes[:-1])
    assert sizes[-1] <= limit
    everything = [e["id"] for e in audit(recorded.admin, 0)]
    assert [e["id"] for page in pages for e in page] == everything
    assert len(pages) == len(everything) // limit + 1  # a full last page is followed by an empty one


def test_next_link_keeps_the_filters(recorded: Recorded) -> None:
    admin = recorded.admin
    pages = follow(admin, "/api/v1/audit", {"section": "cockpit", "limit": 1})

    ids = [e["id"] for page in pages for e in page]
    assert ids == [e["id"] for e in audit(admin, 0, section="cockpit")]
    assert len(ids) == 2
