"""`apphub config show|get|set` and `apphub init`, run as the real console script."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import MASK
from apphub.store.snapshot import version_of
from tests.cli.conftest import RunApphub, audit_rows, changes_of

SECRETS = [("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("portainer", "user_pwd"), ("api_key", "key")]


def plaintexts(data: DataDir) -> dict[tuple[str, str], str]:
    core = Core(data)
    try:
        snapshot = core.config.snapshot()
        return {(s, k): snapshot.section_plaintext(s)[k] for s, k in SECRETS}
    finally:
        core.close()


def event_count(data: DataDir) -> int:
    return int(audit_rows(data, "SELECT count(*) FROM audit_events")[0][0])


def folder_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- show ---------------------------------------------------------------------------------------


def test_show_prints_every_section_as_ini_with_secrets_masked(apphub: RunApphub, data_dir: DataDir) -> None:
    secrets = plaintexts(data_dir)
    result = apphub("config", "show")
    assert result.returncode == 0, result.stderr
    for section in ("nginx_proxy_manager", "gitea", "portainer", "api_key", "docker_mirror", "domain", "cockpit",
                    "initial_apps", "favorite_apps"):
        assert f"[{section}]" in result.stdout.splitlines()
    lines = result.stdout.splitlines()
    assert "user_pwd = ********" in lines
    assert "key = ********" in lines
    assert "port = 9090" in lines
    for value in secrets.values():
        assert value not in result.stdout
    assert "enc:v1:" not in result.stdout


def test_show_json_is_typed_and_masked(apphub: RunApphub, data_dir: DataDir) -> None:
    secrets = plaintexts(data_dir)
    result = apphub("config", "show", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert list(shown) == ["nginx_proxy_manager", "gitea", "portainer", "api_key", "docker_mirror", "domain",
                           "cockpit", "initial_apps", "favorite_apps"]
    assert shown["cockpit"]["port"] == 9090
    assert shown["nginx_proxy_manager"]["listen_port"] == 9000
    for section, key in SECRETS:
        assert shown[section][key] == MASK
    for value in secrets.values():
        assert value not in result.stdout


def test_show_one_section_as_json(apphub: RunApphub) -> None:
    result = apphub("config", "show", "gitea", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "base_url": "http://websoft9-git:3000/api/v1",
        "user_name": "websoft9",
        "user_email": "admin@mydomain.com",
        "user_pwd": MASK,
        "api_token": "",
        "history_repo": "apphub-config",
        "webhook_url": "",
        "webhook_secret": "",
    }


def test_show_of_an_unknown_section_fails_naming_it(apphub: RunApphub) -> None:
    result = apphub("config", "show", "nope")
    assert result.returncode == 1
    assert "nope" in result.stderr
    assert result.stdout == ""


def test_show_system_file(apphub: RunApphub) -> None:
    result = apphub("config", "show", "--file", "system", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["docker_library"] == {"path": "/websoft9/library/apps"}
    assert shown["appmonitor"]["keys"] == ["wordpress", "wordpresspro"]


def test_show_reveal_prints_plaintext_and_is_audited(apphub: RunApphub, data_dir: DataDir) -> None:
    secrets = plaintexts(data_dir)
    before = event_count(data_dir)
    masked = apphub("config", "show")
    assert masked.returncode == 0
    assert event_count(data_dir) == before, "a masked show is not a reveal and records nothing"

    result = apphub("config", "show", "--reveal", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    for (section, key), value in secrets.items():
        assert shown[section][key] == value
    rows = changes_of(data_dir, "secrets.reveal")
    assert {(row["section"], row["key"]) for row in rows} == set(SECRETS)
    assert {(row["actor"], row["source"], row["file"]) for row in rows} == {("cli", "cli", "config.ini")}
    for row in rows:
        assert row["old"] is None
        assert row["new"] is None
    raw = data_dir.database.read_bytes()
    for value in secrets.values():
        assert value.encode() not in raw


def test_show_reveal_of_one_section_audits_only_its_secrets(apphub: RunApphub, data_dir: DataDir) -> None:
    secrets = plaintexts(data_dir)
    result = apphub("config", "show", "gitea", "--reveal")
    assert result.returncode == 0, result.stderr
    assert f"user_pwd = {secrets['gitea', 'user_pwd']}" in result.stdout.splitlines()
    assert {(row["section"], row["key"]) for row in changes_of(data_dir, "secrets.reveal")} == {("gitea", "user_pwd")}


# -- get ----------------------------------------------------------------------------------------


def test_get_prints_a_secret_decrypted(apphub: RunApphub, data_dir: DataDir) -> None:
    secrets = plaintexts(data_dir)
    result = apphub("config", "get", "portainer", "user_pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == secrets["portainer", "user_pwd"] + "\n"
    assert len(secrets["portainer", "user_pwd"]) >= 12


def test_get_prints_a_plain_value_as_stored(apphub: RunApphub) -> None:
    result = apphub("config", "get", "cockpit", "port")
    assert (result.returncode, result.stdout) == (0, "9090\n")


@pytest.mark.parametrize(("section", "key", "named"), [("gitea", "nope", "nope"), ("nope", "key", "nope")])
def test_get_of_a_missing_key_fails_naming_it(apphub: RunApphub, section: str, key: str, named: str) -> None:
    result = apphub("config", "get", section, key)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"'{named}'" in result.stderr or f"[{named}]" in result.stderr


# -- set ----------------------------------------------------------------------------------------


def test_set_changes_only_that_line_and_is_audited_as_cli(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    result = apphub("config", "set", "gitea", "user_email", "ops@example.com")
    assert result.returncode == 0, result.stderr
    after = data_dir.config_ini.read_bytes()
    assert after == before.replace(b"user_email = admin@mydomain.com", b"user_email = ops@example.com")
    assert result.stdout.startswith("[gitea] user_email = ops@example.com")
    assert version_of(after) in result.stdout
    [row] = changes_of(data_dir, "settings.update")
    assert dict(row) | {"id": 0} == {
        "id": 0, "actor": "cli", "source": "cli", "action": "settings.update", "file": "config.ini",
        "version_before": version_of(before), "version_after": version_of(after),
        "section": "gitea", "key": "user_email", "change": "set", "old": "admin@mydomain.com",
        "new": "ops@example.com",
    }
    assert stat.S_IMODE(data_dir.config_ini.stat().st_mode) == 0o600


def test_set_a_secret_stores_it_encrypted_and_never_prints_it(apphub: RunApphub, data_dir: DataDir) -> None:
    password = "Cli-Set-Secret-7f3a9b"
    result = apphub("config", "set", "portainer", "user_pwd", password)
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    assert "[portainer] user_pwd = ********" in result.stdout
    text = data_dir.config_ini.read_text()
    assert password not in text
    assert plaintexts(data_dir)["portainer", "user_pwd"] == password
    [row] = changes_of(data_dir, "settings.update")
    assert (row["actor"], row["source"], row["old"], row["new"]) == ("cli", "cli", MASK, MASK)
    assert password.encode() not in data_dir.database.read_bytes()


def test_set_the_same_value_writes_nothing(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    events = event_count(data_dir)
    result = apphub("config", "set", "cockpit", "port", "9090")
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
    assert data_dir.config_ini.read_bytes() == before
    assert event_count(data_dir) == events


@pytest.mark.parametrize(
    ("section", "key", "value", "rule"),
    [
        ("cockpit", "port", "99999", "max"),
        ("cockpit", "port", "ninety", "type"),
        ("gitea", "user_email", "not-an-email", "type"),
        ("gitea", "colour", "blue", "unknown_key"),
        ("portainer", "user_pwd", "Sh0rt-Pw", "min_length"),
        ("api_key", "key", "has spaces in it", "pattern"),
        ("nope", "anything", "x", "unknown_section"),
    ],
)
def test_set_of_a_bad_value_exits_1_names_section_key_rule_and_changes_nothing(
    apphub: RunApphub, data_dir: DataDir, section: str, key: str, value: str, rule: str
) -> None:
    before = data_dir.config_ini.read_bytes()
    events = event_count(data_dir)
    result = apphub("config", "set", section, key, value)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"[{section}]" in result.stderr
    if rule != "unknown_section":
        assert key in result.stderr
    assert f"rule: {rule}" in result.stderr
    assert data_dir.config_ini.read_bytes() == before
    assert event_count(data_dir) == events
    assert not list(data_dir.root.glob(".config.ini.*"))


def test_set_of_a_bad_secret_does_not_echo_it(apphub: RunApphub) -> None:
    result = apphub("config", "set", "gitea", "user_pwd", "Tiny7x")
    assert result.returncode == 1
    assert "rule: min_length" in result.stderr
    assert "Tiny7x" not in result.stderr + result.stdout


def test_set_with_missing_arguments_is_a_usage_error(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    result = apphub("config", "set", "gitea", "user_email")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr
    assert data_dir.config_ini.read_bytes() == before


# -- choosing the data folder --------------------------------------------------------------------


def test_apphub_data_environment_variable_chooses_the_folder(apphub: RunApphub, data_dir: DataDir) -> None:
    result = apphub("config", "set", "cockpit", "port", "9191", data=None, env={"APPHUB_DATA": str(data_dir.root)})
    assert result.returncode == 0, result.stderr
    assert "port = 9191" in data_dir.config_ini.read_text().splitlines()
    got = apphub("config", "get", "cockpit", "port", data=None, env={"APPHUB_DATA": str(data_dir.root)})
    assert (got.returncode, got.stdout) == (0, "9191\n")


def test_data_dir_option_wins_over_the_environment(apphub: RunApphub, data_dir: DataDir, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = apphub("config", "get", "cockpit", "port", env={"APPHUB_DATA": str(elsewhere)})
    assert (result.returncode, result.stdout) == (0, "9090\n")
    assert not elsewhere.exists()


def test_an_uninitialised_folder_is_refused_and_left_alone(apphub: RunApphub, tmp_path: Path) -> None:
    empty = DataDir(tmp_path / "empty")
    for args in (("config", "show"), ("config", "set", "cockpit", "port", "9091")):
        result = apphub(*args, data=empty)
        assert result.returncode == 1
        assert "apphub init" in result.stderr
        assert str(empty.root) in result.stderr
    assert not empty.root.exists()


# -- init ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "environment"])
def test_init_creates_the_folder_and_says_where_the_admin_key_is(apphub: RunApphub, tmp_path: Path,
                                                                 how: str) -> None:
    data = DataDir(tmp_path / "fresh")
    if how == "option":
        result = apphub("init", data=data)
    else:
        result = apphub("init", data=None, env={"APPHUB_DATA": str(data.root)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{data.root}\n"
    assert result.stderr.count(str(data.admin_key)) == 1
    assert result.stderr.count("admin API key") == 1
    assert data.is_initialised()
    for path in (data.config_ini, data.system_ini, data.secret_key, data.admin_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    key = data.admin_key.read_text().strip()
    assert key not in result.stdout + result.stderr
    core = Core(data)
    try:
        granted = core.keys.verify(key)
        assert granted is not None
        assert (granted.name, granted.role) == ("admin", "admin")
        snapshot = core.config.snapshot()
        assert snapshot.sections()[:3] == ["nginx_proxy_manager", "gitea", "portainer"]
        password = snapshot.section_plaintext("gitea")["user_pwd"]
        assert len(password) >= 16
        assert password not in data.config_ini.read_text()
    finally:
        core.close()


def test_second_init_says_nothing_about_the_key_and_changes_no_byte(apphub: RunApphub, tmp_path: Path) -> None:
    data = DataDir(tmp_path / "fresh")
    first = apphub("init", data=data)
    assert first.returncode == 0, first.stderr
    before = folder_digest(data.root)
    second = apphub("init", data=data)
    assert second.returncode == 0, second.stderr
    assert second.stdout == f"{data.root}\n"
    assert "admin" not in second.stderr
    assert second.stderr == ""
    assert folder_digest(data.root) == before


def test_two_folders_get_different_credentials(apphub: RunApphub, tmp_path: Path) -> None:
    one, two = DataDir(tmp_path / "one"), DataDir(tmp_path / "two")
    assert apphub("init", data=one).returncode == 0
    assert apphub("init", data=two).returncode == 0
    first, second = plaintexts(one), plaintexts(two)
    for name in SECRETS:
        assert first[name] != second[name], name
    assert one.admin_key.read_text() != two.admin_key.read_text()
