"""The history over HTTP: every write a commit, pages and filters, one version, diffs, rollback."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from apphub.paths import DataDir
from tests.conftest import LiveServer

JSON = {"content-type": "application/json"}
MASK = "********"


def put(admin: httpx.Client, section: str, body: dict[str, object], **params: str) -> httpx.Response:
    response = admin.put(f"/api/v1/settings/{section}", json=body, params=params)
    assert response.status_code == 200, response.text
    return response


def git_log(data: DataDir) -> list[str]:
    done = subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "log", "--format=%H %an %s"],
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_every_write_is_a_commit_with_its_author_and_message(admin: httpx.Client, live_server: LiveServer) -> None:
    version = put(admin, "gitea", {"user_email": "ops@example.com"}, message="new ops address").json()["version"]
    second = put(admin, "gitea", {"user_name": "ops"}).json()["version"]

    page = admin.get("/api/v1/settings/history").json()["entries"]

    assert [entry["version"] for entry in page[:2]] == [second, version]
    assert page[0]["message"] == "gitea.user_name changed"
    assert page[1]["message"] == "new ops address"
    assert page[0]["author"] == "admin"
    assert page[0]["source"] == "api"
    assert page[0]["changes"] == [{"file": "config.ini", "section": "gitea", "key": "user_name", "change": "changed"}]
    log = git_log(live_server.data)
    assert log[0] == f"{page[0]['commit']} admin gitea.user_name changed"
    assert log[1] == f"{page[1]['commit']} admin new ops address"


def test_the_audit_event_links_to_its_commit(admin: httpx.Client) -> None:
    put(admin, "gitea", {"user_email": "ops@example.com"})
    commit = admin.get("/api/v1/settings/history").json()["entries"][0]
    event = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"][0]

    assert commit["audit_event"] == event["id"]


def test_pages_follow_the_cursor_newest_first_without_gaps(admin: httpx.Client) -> None:
    versions = [put(admin, "gitea", {"user_email": f"u{n}@example.com"}).json()["version"] for n in range(7)]

    seen: list[str] = []
    link = "/api/v1/settings/history?limit=3&file=config.ini&source=api"
    while link:
        body = admin.get(link).json()
        seen += [entry["version"] for entry in body["entries"]]
        link = body["next"]

    assert seen == list(reversed(versions))


def test_filters_by_key_author_source_and_time(admin: httpx.Client) -> None:
    put(admin, "gitea", {"user_email": "a@example.com"})
    put(admin, "portainer", {"user_name": "boss"})
    history = "/api/v1/settings/history"

    by_key = admin.get(history, params={"section": "portainer", "key": "user_name"}).json()["entries"]
    # the key's change, and the first version, which added every key
    assert [entry["message"] for entry in by_key] == ["portainer.user_name changed", "created config.ini"]
    assert admin.get(history, params={"author": "nobody"}).json()["entries"] == []
    assert {entry["source"] for entry in admin.get(history, params={"source": "init"}).json()["entries"]} == {"init"}
    assert admin.get(history, params={"since": "2999-01-01T00:00:00Z"}).json()["entries"] == []
    assert admin.get(history, params={"since": "yesterday"}).status_code == 400


def test_one_version_shows_its_settings_masked(admin: httpx.Client) -> None:
    first = put(admin, "gitea", {"user_email": "old@example.com", "user_pwd": "Old-password-123"}).json()["version"]
    put(admin, "gitea", {"user_email": "new@example.com"})

    shown = admin.get(f"/api/v1/settings/history/{first[:8]}")

    assert shown.status_code == 200
    body = shown.json()
    assert body["version"] == first
    assert body["settings"]["gitea"]["user_email"] == "old@example.com"
    assert body["settings"]["gitea"]["user_pwd"] == MASK
    assert "Old-password-123" not in shown.text


def test_a_commit_id_and_prefixes_name_versions_and_bad_ones_are_refused(admin: httpx.Client) -> None:
    version = put(admin, "gitea", {"user_email": "x@example.com"}).json()["version"]
    commit = admin.get("/api/v1/settings/history").json()["entries"][0]["commit"]

    assert admin.get(f"/api/v1/settings/history/{commit}").json()["version"] == version
    assert admin.get(f"/api/v1/settings/history/{commit[:7]}").json()["commit"] == commit
    missing = admin.get("/api/v1/settings/history/00000000")
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:apphub:problem:version-not-found"
    assert admin.get("/api/v1/settings/history/not-hex").status_code == 404
    ambiguous = admin.get("/api/v1/settings/history/" + "0123"[:0] + "abc")  # too short to be a prefix
    assert ambiguous.status_code == 404


def test_diff_per_key_and_unified_with_secrets_masked(admin: httpx.Client) -> None:
    old = put(admin, "gitea", {"user_email": "a@example.com", "user_pwd": "First-password-1"}).json()["version"]
    new = put(admin, "gitea", {"user_email": "b@example.com", "user_pwd": "Second-password-2"}).json()["version"]

    found = admin.get("/api/v1/settings/diff", params={"from": old, "to": new})

    assert found.status_code == 200
    body = found.json()
    changes = {(c["section"], c["key"]): c for c in body["changes"]}
    assert changes[("gitea", "user_email")]["old"] == "a@example.com"
    assert changes[("gitea", "user_email")]["new"] == "b@example.com"
    assert changes[("gitea", "user_pwd")] == {"section": "gitea", "key": "user_pwd", "change": "changed",
                                             "old": MASK, "new": MASK, "secret": True}
    assert "-user_email = a@example.com" in body["unified"]
    assert "+user_pwd = ******** (changed)" in body["unified"]
    for secret in ("First-password-1", "Second-password-2", "enc:v1:"):
        assert secret not in found.text
    # `to` left out: the current version
    assert admin.get("/api/v1/settings/diff", params={"from": new}).json()["equal"] is True


def test_rollback_writes_the_old_version_as_a_new_one(admin: httpx.Client) -> None:
    first = put(admin, "gitea", {"user_email": "first@example.com", "user_pwd": "First-password-1"}).json()
    put(admin, "gitea", {"user_email": "second@example.com", "user_pwd": "Second-password-2"})
    before = len(admin.get("/api/v1/settings/history", params={"limit": 500}).json()["entries"])

    rolled = admin.post("/api/v1/settings/rollback", json={"version": first["version"][:10]})

    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == first["version"]  # byte for byte
    assert rolled.headers["ETag"] == f'"{first["version"]}"'
    assert admin.get("/api/v1/settings/gitea").json()["settings"]["user_email"] == "first@example.com"
    entries = admin.get("/api/v1/settings/history", params={"limit": 500}).json()["entries"]
    assert len(entries) == before + 1  # a new commit, nothing rewritten
    assert entries[0]["source"] == "rollback"
    assert entries[0]["version"] == first["version"]


def test_rollback_to_the_very_first_version_restores_it(admin: httpx.Client, live_server: LiveServer) -> None:
    entries = admin.get("/api/v1/settings/history", params={"limit": 500, "file": "config.ini"}).json()["entries"]
    first = entries[-1]
    original = live_server.data.config_ini.read_bytes()
    put(admin, "gitea", {"user_email": "changed@example.com"})
    put(admin, "nginx_proxy_manager", {"nike_name": "someone"})

    rolled = admin.post("/api/v1/settings/rollback", json={"version": first["commit"]})

    assert rolled.status_code == 200, rolled.text
    assert live_server.data.config_ini.read_bytes() == original


def test_a_rollback_plan_touches_nothing(admin: httpx.Client, live_server: LiveServer) -> None:
    first = put(admin, "gitea", {"user_email": "first@example.com"}).json()["version"]
    put(admin, "gitea", {"user_email": "second@example.com"})
    on_disk = live_server.data.config_ini.read_bytes()
    commits = len(admin.get("/api/v1/settings/history", params={"limit": 500}).json()["entries"])

    plan = admin.post("/api/v1/settings/rollback/plan", json={"version": first})

    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert body["valid"] is True
    assert body["changes"] == [{"section": "gitea", "key": "user_email", "change": "changed",
                                "old": "second@example.com", "new": "first@example.com", "secret": False}]
    assert "services" in body
    assert live_server.data.config_ini.read_bytes() == on_disk
    assert len(admin.get("/api/v1/settings/history", params={"limit": 500}).json()["entries"]) == commits


def test_a_version_that_no_longer_validates_is_refused_with_every_reason_unless_forced(
        admin: httpx.Client, live_server: LiveServer) -> None:
    first = put(admin, "gitea", {"user_email": "first@example.com"}).json()["version"]
    put(admin, "gitea", {"user_email": "second@example.com"})
    # today's schema asks more of gitea.user_email than that version has
    (live_server.data.schema_dir / "strict.yaml").write_text(
        "config:\n  sections:\n    gitea:\n      keys:\n        user_email: {type: email, pattern: '^second'}\n"
        "        user_name: {type: string, min_length: 50}\n")

    refused = admin.post("/api/v1/settings/rollback", json={"version": first})

    assert refused.status_code == 422, refused.text
    problems = {(error["section"], error["key"]) for error in refused.json()["errors"]}
    assert problems == {("gitea", "user_email"), ("gitea", "user_name")}
    assert admin.get("/api/v1/settings/gitea").json()["settings"]["user_email"] == "second@example.com"

    forced = admin.post("/api/v1/settings/rollback", json={"version": first, "force": True})
    assert forced.status_code == 200, forced.text
    assert forced.json()["version"] == first


def test_forcing_a_rollback_needs_an_admin_key(live_server: LiveServer, admin: httpx.Client) -> None:
    from apphub.core import Core

    core = Core(live_server.data)
    try:
        writer = core.keys.create("deployer", "write")
    finally:
        core.close()
    first = put(admin, "gitea", {"user_email": "first@example.com"}).json()["version"]
    put(admin, "gitea", {"user_email": "second@example.com"})
    with live_server.client(writer) as client:
        assert client.post("/api/v1/settings/rollback", json={"version": first, "force": True}).status_code == 403
        assert client.post("/api/v1/settings/rollback", json={"version": first}).status_code == 200


def test_rollback_honours_if_match(admin: httpx.Client) -> None:
    first = put(admin, "gitea", {"user_email": "first@example.com"}).json()["version"]
    put(admin, "gitea", {"user_email": "second@example.com"})

    stale = admin.post("/api/v1/settings/rollback", json={"version": first}, headers={"If-Match": f'"{first}"'})

    assert stale.status_code == 412


def test_history_routes_are_not_sections(admin: httpx.Client) -> None:
    for name in ("history", "diff", "rollback"):
        assert admin.put(f"/api/v1/settings/{name}", json={"a": "b"}).status_code in (404, 405), name


@pytest.mark.parametrize("path", ["/api/v1/history/status", "/api/v1/sync/status"])
def test_the_status_says_what_the_history_holds(admin: httpx.Client, path: str) -> None:
    version = put(admin, "gitea", {"user_email": "s@example.com"}).json()["version"]
    admin.get("/api/v1/settings/history")  # recorded by now

    status = admin.get(path).json()
    history = status if path.startswith("/api/v1/history") else status["history"]

    assert history["version"] == version
    assert history["waiting"] == 0
    assert history["problem"] is None
    assert history["push"] == {"configured": False, "state": "idle"}
