"""`apphub keys create|list|revoke` and `apphub secrets rotate`, against a live server."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from apphub.paths import DataDir
from apphub.store.secrets import MASK
from tests.cli.conftest import RunApphub, changes_of
from tests.conftest import LiveServer

KEY_LINE = re.compile(r"^ahk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$")
TOKEN = re.compile(r"^(\w+) = (enc:v1:\S+)$", re.MULTILINE)


def secret_part(key: str) -> str:
    return key[len("ahk_") + 13 :]


def create_key(apphub: RunApphub, name: str, role: str) -> str:
    result = apphub("keys", "create", "--name", name, "--role", role)
    assert result.returncode == 0, result.stderr
    assert KEY_LINE.match(result.stdout), result.stdout
    assert result.stderr == ""
    return result.stdout.strip()


def test_create_prints_only_the_key_and_it_works_with_its_role(apphub: RunApphub, live_server: LiveServer,
                                                               data_dir: DataDir) -> None:
    key = create_key(apphub, "deployer", "write")
    with live_server.client(key) as client:
        assert client.get("/api/v1/settings").status_code == 200
        written = client.put("/api/v1/settings/gitea", json={"user_email": "deployer@example.com"})
        assert written.status_code == 200, written.text
        assert client.get("/api/v1/settings", params={"reveal": "true"}).status_code == 403
    [change] = changes_of(data_dir, "settings.update")
    assert (change["actor"], change["source"], change["new"]) == ("deployer", "api", "deployer@example.com")
    [created] = changes_of(data_dir, "apikey.create")
    assert (created["actor"], created["source"], created["key"], created["new"]) == ("cli", "cli", "deployer", "write")
    raw = data_dir.database.read_bytes()
    assert key.encode() not in raw
    assert secret_part(key).encode() not in raw


def test_a_read_key_cannot_write(apphub: RunApphub, live_server: LiveServer, data_dir: DataDir) -> None:
    key = create_key(apphub, "dashboard", "read")
    before = data_dir.config_ini.read_bytes()
    with live_server.client(key) as client:
        assert client.get("/api/v1/settings/gitea").status_code == 200
        refused = client.put("/api/v1/settings/gitea", json={"user_email": "x@example.com"})
    assert refused.status_code == 403
    assert data_dir.config_ini.read_bytes() == before


def test_an_admin_key_can_reveal(apphub: RunApphub, live_server: LiveServer) -> None:
    key = create_key(apphub, "root-ops", "admin")
    with live_server.client(key) as client:
        response = client.get("/api/v1/settings/gitea", params={"reveal": "true"})
    assert response.status_code == 200
    assert response.json()["settings"]["user_pwd"] != MASK


def test_list_shows_name_role_and_creation_never_a_key_or_hash(apphub: RunApphub) -> None:
    keys = {"alpha": create_key(apphub, "alpha", "read"), "beta": create_key(apphub, "beta", "admin")}
    listed = apphub("keys", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "CREATED", "SERVICE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == {"admin", "alpha", "beta"}
    assert rows["alpha"][0] == "read"
    assert rows["beta"][0] == "admin"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", rows["alpha"][1])

    as_json = apphub("keys", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    entries = json.loads(as_json.stdout)
    assert [entry["name"] for entry in entries] == ["admin", "alpha", "beta"]
    assert all(set(entry) == {"name", "role", "service", "created_at"} for entry in entries)

    for key in keys.values():
        for output in (listed.stdout, as_json.stdout):
            assert key not in output
            assert secret_part(key) not in output
            assert hashlib.sha256(key.encode()).hexdigest() not in output


def test_revoke_makes_the_key_fail_at_once(apphub: RunApphub, live_server: LiveServer, data_dir: DataDir) -> None:
    key = create_key(apphub, "temporary", "write")
    with live_server.client(key) as client:
        assert client.get("/api/v1/settings").status_code == 200
        result = apphub("keys", "revoke", "temporary")
        assert result.returncode == 0, result.stderr
        assert "temporary" in result.stdout
        # The same keep-alive connection, right after the revoke: no cache may keep the key alive.
        assert client.get("/api/v1/settings").status_code == 401
        assert client.put("/api/v1/settings/gitea", json={"user_email": "late@example.com"}).status_code == 401
    listed = apphub("keys", "list", "--json")
    assert "temporary" not in [entry["name"] for entry in json.loads(listed.stdout)]
    [revoked] = changes_of(data_dir, "apikey.revoke")
    assert (revoked["actor"], revoked["key"], revoked["change"]) == ("cli", "temporary", "delete")


def test_revoke_of_an_unknown_key_fails_naming_it(apphub: RunApphub) -> None:
    result = apphub("keys", "revoke", "ghost")
    assert result.returncode == 1
    assert "ghost" in result.stderr


def test_a_duplicate_name_is_refused_with_a_clear_message(apphub: RunApphub, live_server: LiveServer) -> None:
    first = create_key(apphub, "ops", "read")
    again = apphub("keys", "create", "--name", "ops", "--role", "admin")
    assert again.returncode != 0
    assert again.stdout == ""
    assert "ops" in again.stderr
    assert "already exists" in again.stderr, again.stderr
    with live_server.client(first) as client:
        assert client.get("/api/v1/settings").status_code == 200
        assert client.put("/api/v1/settings/gitea", json={"user_email": "a@example.com"}).status_code == 403


@pytest.mark.parametrize("name", ["cli", "api_key", "init"])
def test_a_reserved_name_is_refused(apphub: RunApphub, name: str) -> None:
    result = apphub("keys", "create", "--name", name, "--role", "read")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "reserved" in result.stderr
    assert name not in [entry["name"] for entry in json.loads(apphub("keys", "list", "--json").stdout)]


def test_a_malformed_name_is_refused(apphub: RunApphub) -> None:
    result = apphub("keys", "create", "--name", "has space", "--role", "read")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "'has space'" in result.stderr


def test_a_bad_role_is_a_usage_error(apphub: RunApphub) -> None:
    result = apphub("keys", "create", "--name", "x", "--role", "root")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "--role" in result.stderr
    assert "'root'" in result.stderr
    assert "read" in result.stderr


def test_secrets_rotate_reencrypts_with_a_new_key_and_keeps_the_values(
    apphub: RunApphub, live_server: LiveServer, data_dir: DataDir, admin_key: str
) -> None:
    before_text = data_dir.config_ini.read_text()
    before_tokens = dict(TOKEN.findall(before_text))
    before_values = json.loads(apphub("getconfig").stdout)
    legacy_key = before_values["api_key"]["key"]
    assert len(data_dir.secret_key.read_bytes().split()) == 1

    result = apphub("secrets", "rotate")

    assert result.returncode == 0, result.stderr
    assert "4 secret(s)" in result.stdout
    assert len(data_dir.secret_key.read_bytes().split()) == 2
    after_text = data_dir.config_ini.read_text()
    after_tokens = TOKEN.findall(after_text)
    assert len(after_tokens) == 4
    for key, token in after_tokens:
        assert token not in before_tokens.values(), key
    assert TOKEN.sub("TOKEN", after_text) == TOKEN.sub("TOKEN", before_text), "only the tokens change"
    assert json.loads(apphub("getconfig").stdout) == before_values
    rotated = changes_of(data_dir, "secrets.rotate")
    assert {(row["section"], row["key"]) for row in rotated} == {
        ("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("portainer", "user_pwd"), ("api_key", "key")}
    assert {(row["actor"], row["old"], row["new"]) for row in rotated} == {("cli", MASK, MASK)}

    # The server opened its key file before the rotation; it must read the new tokens all the same.
    with live_server.client(legacy_key) as client:
        assert client.get("/api/settings").status_code == 200
    with live_server.client(admin_key) as client:
        revealed = client.get("/api/v1/settings/gitea", params={"reveal": "true"})
    assert revealed.json()["settings"]["user_pwd"] == before_values["gitea"]["user_pwd"]
