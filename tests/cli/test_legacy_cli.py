"""Websoft9's commands: getconfig, setconfig, getsysconfig, setsysconfig, getallconfig, genkey, getkey.

Their callers (Cockpit plugins, install.sh, crontab.sh) parse this output, so the shape matters:
one line of JSON, a raw value, an empty line or `{}` when missing, exit 0.
"""

from __future__ import annotations

import json
import re

import pytest

from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import MASK
from apphub.store.snapshot import version_of
from tests.cli.conftest import RunApphub, changes_of
from tests.conftest import LiveServer


def plaintext_file(data: DataDir, file: str = "config") -> dict[str, dict[str, str]]:
    core = Core(data)
    try:
        snapshot = (core.config if file == "config" else core.system).snapshot()
        return {section: snapshot.section_plaintext(section) for section in snapshot.sections()}
    finally:
        core.close()


def one_json_line(stdout: str) -> object:
    assert stdout.endswith("\n")
    assert stdout.count("\n") == 1, stdout
    return json.loads(stdout)


# -- getconfig / getsysconfig / getallconfig -----------------------------------------------------


def test_getconfig_prints_all_of_config_ini_on_one_line_with_secrets_decrypted(apphub: RunApphub,
                                                                               data_dir: DataDir) -> None:
    result = apphub("getconfig")
    assert result.returncode == 0, result.stderr
    shown = one_json_line(result.stdout)
    expected = plaintext_file(data_dir)
    assert shown == expected
    assert isinstance(shown, dict)
    # Websoft9's configparser gives strings, ports included.
    assert shown["cockpit"]["port"] == "9090"
    assert shown["gitea"]["user_pwd"] != MASK
    assert not shown["gitea"]["user_pwd"].startswith("enc:")
    assert re.fullmatch(r"[0-9a-f]{64}", shown["api_key"]["key"])


def test_getconfig_of_a_section(apphub: RunApphub, data_dir: DataDir) -> None:
    result = apphub("getconfig", "--section", "gitea")
    assert result.returncode == 0, result.stderr
    assert one_json_line(result.stdout) == plaintext_file(data_dir)["gitea"]


def test_getconfig_of_a_missing_section_prints_empty_object(apphub: RunApphub) -> None:
    result = apphub("getconfig", "--section", "nope")
    assert (result.returncode, result.stdout, result.stderr) == (0, "{}\n", "")


def test_getconfig_of_a_key_prints_the_raw_value(apphub: RunApphub, data_dir: DataDir) -> None:
    password = plaintext_file(data_dir)["portainer"]["user_pwd"]
    secret = apphub("getconfig", "--section", "portainer", "--key", "user_pwd")
    assert (secret.returncode, secret.stdout) == (0, password + "\n")
    plain = apphub("getconfig", "--section", "nginx_proxy_manager", "--key", "base_url")
    assert (plain.returncode, plain.stdout) == (0, "http://websoft9-proxy:81/api\n")


@pytest.mark.parametrize(("section", "key"), [("gitea", "nope"), ("nope", "nope")])
def test_getconfig_of_a_missing_key_prints_an_empty_line(apphub: RunApphub, section: str, key: str) -> None:
    result = apphub("getconfig", "--section", section, "--key", key)
    assert (result.returncode, result.stdout, result.stderr) == (0, "\n", "")


def test_getsysconfig(apphub: RunApphub, data_dir: DataDir) -> None:
    everything = apphub("getsysconfig")
    assert everything.returncode == 0, everything.stderr
    assert one_json_line(everything.stdout) == plaintext_file(data_dir, "system")
    section = apphub("getsysconfig", "--section", "volume_backup")
    assert one_json_line(section.stdout) == {"repopath": "/data/backup/restic-repo",
                                            "hostname": "websoft9-backup-host", "image": "restic/restic:latest"}
    key = apphub("getsysconfig", "--section", "docker_library", "--key", "path")
    assert key.stdout == "/websoft9/library/apps\n"
    assert apphub("getsysconfig", "--section", "nope").stdout == "{}\n"
    assert apphub("getsysconfig", "--section", "nope", "--key", "x").stdout == "\n"


def test_getallconfig(apphub: RunApphub, data_dir: DataDir) -> None:
    result = apphub("getallconfig")
    assert result.returncode == 0, result.stderr
    assert one_json_line(result.stdout) == {"config": plaintext_file(data_dir),
                                           "system": plaintext_file(data_dir, "system")}


# -- setconfig ----------------------------------------------------------------------------------


def test_setconfig_changes_an_existing_key_prints_nothing_and_is_audited(apphub: RunApphub,
                                                                         data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    result = apphub("setconfig", "--section", "gitea", "--key", "user_email", "--value", "git@example.com")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    after = data_dir.config_ini.read_bytes()
    assert after == before.replace(b"user_email = admin@mydomain.com", b"user_email = git@example.com")
    assert apphub("getconfig", "--section", "gitea", "--key", "user_email").stdout == "git@example.com\n"
    [row] = changes_of(data_dir, "settings.update")
    assert (row["actor"], row["source"], row["section"], row["key"], row["old"], row["new"], row["version_after"]) == (
        "cli", "cli", "gitea", "user_email", "admin@mydomain.com", "git@example.com", version_of(after))


def test_setconfig_of_a_secret_stores_it_encrypted(apphub: RunApphub, data_dir: DataDir) -> None:
    password = "Setconfig-Secret-41d8c"
    result = apphub("setconfig", "--section", "gitea", "--key", "user_pwd", "--value", password)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert password not in data_dir.config_ini.read_text()
    assert apphub("getconfig", "--section", "gitea", "--key", "user_pwd").stdout == password + "\n"
    [row] = changes_of(data_dir, "settings.update")
    assert (row["old"], row["new"]) == (MASK, MASK)


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [("gitea", "colour", "Error: Key:colour does not exist"), ("nope", "key", "Error: Section:nope does not exist")],
)
def test_setconfig_of_a_missing_key_or_section_fails_like_websoft9(apphub: RunApphub, data_dir: DataDir,
                                                                   section: str, key: str, message: str) -> None:
    before = data_dir.config_ini.read_bytes()
    result = apphub("setconfig", "--section", section, "--key", key, "--value", "x")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == message
    assert data_dir.config_ini.read_bytes() == before


def test_setconfig_is_validated_by_the_schema(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    result = apphub("setconfig", "--section", "nginx_proxy_manager", "--key", "listen_port", "--value", "0")
    assert result.returncode == 1
    assert "[nginx_proxy_manager] listen_port" in result.stderr
    assert "rule: min" in result.stderr
    assert data_dir.config_ini.read_bytes() == before
    assert changes_of(data_dir, "settings.update") == []


def test_setconfig_needs_all_three_options(apphub: RunApphub) -> None:
    result = apphub("setconfig", "--section", "gitea", "--key", "user_email")
    assert result.returncode == 2
    assert "--value" in result.stderr


# -- setsysconfig -------------------------------------------------------------------------------


def test_setsysconfig_creates_the_section_and_key(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.system_ini.read_text()
    result = apphub("setsysconfig", "--section", "edition", "--key", "name", "--value", "community")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "Set [edition] name=community in system.ini successfully.\n"
    after = data_dir.system_ini.read_text()
    assert after.startswith(before), "existing lines are kept as they were"
    assert apphub("getsysconfig", "--section", "edition").stdout == '{"name": "community"}\n'
    [row] = changes_of(data_dir, "system.update")
    assert (row["actor"], row["source"], row["file"], row["change"]) == ("cli", "cli", "system.ini", "add")


def test_setsysconfig_adds_a_key_to_an_existing_section_and_changes_one(apphub: RunApphub,
                                                                        data_dir: DataDir) -> None:
    added = apphub("setsysconfig", "--section", "volume_backup", "--key", "retention", "--value", "7")
    assert added.stdout == "Set [volume_backup] retention=7 in system.ini successfully.\n"
    changed = apphub("setsysconfig", "--section", "volume_backup", "--key", "image", "--value", "restic/restic:0.17")
    assert changed.stdout == "Set [volume_backup] image=restic/restic:0.17 in system.ini successfully.\n"
    assert json.loads(apphub("getsysconfig", "--section", "volume_backup").stdout) == {
        "repopath": "/data/backup/restic-repo", "hostname": "websoft9-backup-host", "image": "restic/restic:0.17",
        "retention": "7"}


def test_setsysconfig_is_validated_by_the_schema(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.system_ini.read_bytes()
    result = apphub("setsysconfig", "--section", "max_apps", "--key", "key", "--value", "plenty")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "[max_apps] key" in result.stderr
    assert "rule: type" in result.stderr
    assert data_dir.system_ini.read_bytes() == before


def test_setsysconfig_of_a_secret_does_not_print_it(apphub: RunApphub, data_dir: DataDir) -> None:
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=5f1c0ffee-sys-secret"
    result = apphub("setsysconfig", "--section", "webhook", "--key", "wechat", "--value", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Set [webhook] wechat=******** in system.ini successfully.\n"
    assert "5f1c0ffee-sys-secret" not in data_dir.system_ini.read_text()
    assert apphub("getsysconfig", "--section", "webhook", "--key", "wechat").stdout == url + "\n"


# -- genkey / getkey ----------------------------------------------------------------------------


def test_genkey_replaces_the_websoft9_key_which_works_at_once(apphub: RunApphub, live_server: LiveServer,
                                                             data_dir: DataDir) -> None:
    old = apphub("getkey").stdout.strip()
    with live_server.client(old) as client:
        assert client.get("/api/settings").status_code == 200

    result = apphub("genkey")

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)
    key = result.stdout.strip()
    assert key != old
    assert key not in data_dir.config_ini.read_text()
    assert re.search(r"^key = enc:v1:\S+$", data_dir.config_ini.read_text(), re.MULTILINE)
    assert apphub("getkey").stdout == key + "\n"
    with live_server.client(key) as client:
        response = client.get("/api/settings")
        assert response.status_code == 200
        assert response.json()["api_key"]["key"] == MASK
        written = client.put("/api/settings/gitea", params={"key": "user_email", "value": "k@example.com"})
        assert written.status_code == 200
    with live_server.client(old) as client:
        refused = client.get("/api/settings")
    assert refused.status_code == 400
    assert refused.json() == {"message": "Invalid Request", "details": "Invalid API Key"}
    [row] = changes_of(data_dir, "apikey.legacy_regenerate")
    assert (row["actor"], row["section"], row["key"], row["new"]) == ("cli", "api_key", "key", MASK)
    assert key.encode() not in data_dir.database.read_bytes()


def test_getkey_prints_the_stored_key(apphub: RunApphub, data_dir: DataDir) -> None:
    result = apphub("getkey")
    assert result.returncode == 0, result.stderr
    assert result.stdout == plaintext_file(data_dir)["api_key"]["key"] + "\n"
