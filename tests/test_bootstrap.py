"""First start: a complete Websoft9 data folder with strong fresh credentials; a second start changes nothing."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest

from apphub.audit.log import AuditQuery
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.db import Database
from apphub.errors import DataDirError
from apphub.keys import KeyStore
from apphub.paths import DataDir
from apphub.store.inidoc import IniDocument
from apphub.store.schema import load_schema
from apphub.store.secrets import PREFIX, SecretBox
from apphub.store.validate import check_file

# reference/websoft9-apphub.md §2.1 (config.ini) and §2.2 (system.ini), classic tag 2.2.17.
# None marks a credential: generated fresh on every install, never the committed placeholder.
WEBSOFT9_CONFIG: dict[str, dict[str, str | None]] = {
    "nginx_proxy_manager": {
        "base_url": "http://websoft9-proxy:81/api",
        "user_name": "admin@mydomain.com",
        "user_pwd": None,
        "nike_name": "admin",
        "listen_port": "9000",
        "docker0_ip": "172.17.0.1",
        "ssl_cert": "/data/custom_ssl/websoft9-self-signed.cert",
        "ssl_key": "/data/custom_ssl/websoft9-self-signed.key",
    },
    "gitea": {
        "base_url": "http://websoft9-git:3000/api/v1",
        "user_name": "websoft9",
        "user_email": "admin@mydomain.com",
        "user_pwd": None,
    },
    "portainer": {"base_url": "http://websoft9-deployment:9000/api", "user_name": "admin", "user_pwd": None},
    "api_key": {"key": None},
    "docker_mirror": {"url": "https://artifact.websoft9.com/release/websoft9/mirrors.json"},
    "domain": {"wildcard_domain": ""},
    "cockpit": {"port": "9090"},
    "initial_apps": {"keys": ""},
    "favorite_apps": {"keys": ""},
}
WEBSOFT9_SYSTEM: dict[str, dict[str, str | None]] = {
    "docker_library": {"path": "/websoft9/library/apps"},
    "app_media": {"path": "/websoft9/media/json/"},
    "volume_backup": {
        "repopath": "/data/backup/restic-repo",
        "hostname": "websoft9-backup-host",
        "image": "restic/restic:latest",
    },
    "max_apps": {"key": ""},
    "appmonitor": {"keys": "wordpress,wordpresspro"},
    "php_apps": {
        "keys": "wordpress,zentao,passbolt,moodle,mautic,espocrm,ttrss,discuz,mixpost,nextcloud,typo3,zabbix,magento,"
        "suitecrm,pimcore,phpmyadmin,filerun,snipeit,joomla,humhub,drupal,dolibarr,akaunting,akeneo,vtiger,discuzq"
    },
    "webhook": {"wechat": "", "monitor_api": "https://monitor.service.websoft9.com"},
}
# What a fresh config.ini holds: Websoft9's keys, and after them apphub's own for the first-start
# initialisers (Gitea's token, history repository and webhook; Portainer's setup token).
FRESH_CONFIG: dict[str, dict[str, str | None]] = {
    **WEBSOFT9_CONFIG,
    "gitea": {**WEBSOFT9_CONFIG["gitea"], "api_token": "", "history_repo": "apphub-config", "webhook_url": "",
              "webhook_secret": ""},
    "portainer": {**WEBSOFT9_CONFIG["portainer"], "setup_token": ""},
}
# What a fresh system.ini holds: Websoft9's sections, then apphub's own.
FRESH_SYSTEM: dict[str, dict[str, str | None]] = {
    **WEBSOFT9_SYSTEM,
    "history": {"remote_url": "", "remote_branch": "main", "remote_user": "", "remote_token": "",
                "remote_create": "true"},
    "environments": {"active": ""},
    "rules": {"enabled": "true", "port_probes": "true"},
    "services": {"enabled": "", "check_interval_s": "30", "step_timeout_s": "10", "step_attempts": "6",
                 "gitea_container": "websoft9-git", "cockpit_host": "127.0.0.1"},
    "sync": {"roots": "", "supervisor_url": "unix:///var/run/supervisor.sock",
             "docker_url": "unix:///var/run/docker.sock", "debounce_ms": "50", "drift_interval_s": "60"},
}
PLACEHOLDERS = {
    ("nginx_proxy_manager", "user_pwd"): "hJUGWrlDgqmGglr0",
    ("gitea", "user_pwd"): "JGFceAxAmjrx",
    ("portainer", "user_pwd"): "R@9)qn)t9hJW",
    ("api_key", "key"): "9e66918137d882c6ebdc1eccb0866e25172c5f8fa2101458a8ce9b044e4c7e5e",
}

# Websoft9's own config.ini and system.ini, as its configparser writes them, plaintext credentials included.
WEBSOFT9_CONFIG_INI = "".join(
    f"[{section}]\n" + "".join(f"{key} = {PLACEHOLDERS.get((section, key), value)}\n" for key, value in keys.items())
    + "\n"
    for section, keys in WEBSOFT9_CONFIG.items()
)
WECHAT = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=9393241f-1111-2222-3333-444455556666"
WEBSOFT9_SYSTEM_INI = "".join(
    f"[{section}]\n" + "".join(f"{key} = {WECHAT if key == 'wechat' else value}\n" for key, value in keys.items())
    + "\n"
    for section, keys in WEBSOFT9_SYSTEM.items()
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fingerprint(root: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every file under root: content hash, mode, inode and mtime."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mode,
            path.stat().st_ino,
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def credentials(data: DataDir) -> dict[tuple[str, str], str]:
    document = IniDocument(data.config_ini.read_text(), "config.ini")
    box = SecretBox(data.secret_key)
    return {pair: box.decrypt(document.get(*pair) or "", str(pair)).reveal() for pair in PLACEHOLDERS}


@pytest.fixture
def fresh(tmp_path: Path) -> DataDir:
    data = DataDir(tmp_path / "data")
    report = initialise(data)
    assert report.admin_key_file == data.admin_key
    return data


# -- the first start ---------------------------------------------------------------------------


def test_first_start_creates_every_part_of_the_data_folder(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")

    report = initialise(data)

    for path in (data.root, data.state_dir, data.schema_dir, data.secret_key, data.config_ini, data.system_ini,
                 data.database):
        assert str(path) in report.created
    assert report.admin_key_file == data.admin_key
    assert report.encrypted_secrets == 0
    assert data.is_initialised()


@pytest.mark.parametrize(("name", "expected"), [("config", FRESH_CONFIG), ("system", FRESH_SYSTEM)])
def test_the_ini_files_hold_every_websoft9_section_and_key(
    fresh: DataDir, name: str, expected: dict[str, dict[str, str | None]]
) -> None:
    path = fresh.config_ini if name == "config" else fresh.system_ini
    document = IniDocument(path.read_text(), path.name)

    assert document.sections() == list(expected)
    for section, keys in expected.items():
        assert [key for key, _ in document.items(section)] == list(keys), section
        for key, value in keys.items():
            if value is not None:
                assert document.get(section, key) == value, (section, key)


def test_the_credentials_are_encrypted_in_the_file(fresh: DataDir) -> None:
    document = IniDocument(fresh.config_ini.read_text(), "config.ini")
    plain = credentials(fresh)

    for pair in PLACEHOLDERS:
        assert (document.get(*pair) or "").startswith(PREFIX), pair
    text = fresh.config_ini.read_text()
    for value in plain.values():
        assert value not in text


def test_the_credentials_are_strong_and_not_the_websoft9_placeholders(fresh: DataDir) -> None:
    plain = credentials(fresh)

    for pair, value in plain.items():
        assert value != PLACEHOLDERS[pair], pair
        assert len(value) >= 16, pair
        assert len(set(value)) >= 10, pair
    assert re.fullmatch(r"[0-9a-f]{64}", plain[("api_key", "key")])  # the shape Websoft9's clients expect
    passwords = [plain[(s, "user_pwd")] for s in ("nginx_proxy_manager", "gitea", "portainer")]
    assert len(set(passwords)) == 3
    for password in passwords:
        assert "%" not in password  # Websoft9 reads these with configparser interpolation on


def test_two_data_folders_get_different_credentials_and_keys(fresh: DataDir, tmp_path: Path) -> None:
    other = DataDir(tmp_path / "other")
    initialise(other)

    mine, theirs = credentials(fresh), credentials(other)
    for pair in PLACEHOLDERS:
        assert mine[pair] != theirs[pair], pair
    assert fresh.secret_key.read_bytes() != other.secret_key.read_bytes()
    assert fresh.admin_key.read_text() != other.admin_key.read_text()


def test_the_new_files_pass_their_own_schema(fresh: DataDir) -> None:
    schema = load_schema(fresh.schema_dir)
    box = SecretBox(fresh.secret_key)

    for path, file_schema in ((fresh.config_ini, schema.config), (fresh.system_ini, schema.system)):
        document = IniDocument(path.read_text(), path.name)
        values = {
            section: {
                key: box.decrypt(value, key).reveal() if file_schema.is_secret(section, key) else value
                for key, value in document.items(section)
            }
            for section in document.sections()
        }
        assert check_file(file_schema, values, file=path.name, line_of=document.line_of) == []


def test_the_admin_key_file_is_private_and_holds_a_working_admin_key(fresh: DataDir) -> None:
    assert mode_of(fresh.admin_key) == 0o600
    key = fresh.admin_key.read_text().strip()

    database = Database(fresh.database)
    try:
        found = KeyStore(database).verify(key)
        assert found is not None
        assert found.role == "admin"
        assert KeyStore(database).verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert key.encode() not in fresh.database.read_bytes()
    finally:
        database.close()


def test_secret_files_and_the_state_folder_are_private(fresh: DataDir) -> None:
    assert mode_of(fresh.secret_key) == 0o600
    assert mode_of(fresh.state_dir) == 0o700
    assert mode_of(fresh.config_ini) == 0o600
    assert mode_of(fresh.system_ini) == 0o600


def test_the_schema_folder_gets_a_readme_and_no_schema_file(fresh: DataDir) -> None:
    assert [p.name for p in fresh.schema_dir.iterdir()] == ["README.txt"]
    assert load_schema(fresh.schema_dir) == load_schema(None)


# -- the second start --------------------------------------------------------------------------


def test_a_second_start_changes_no_byte_and_creates_nothing(fresh: DataDir) -> None:
    before = fingerprint(fresh.root)

    report = initialise(fresh)

    assert report.created == []
    assert report.admin_key_file is None
    assert report.encrypted_secrets == 0
    assert fingerprint(fresh.root) == before


def test_a_second_start_keeps_the_admin_key_working(fresh: DataDir) -> None:
    key = fresh.admin_key.read_text().strip()

    initialise(fresh)

    database = Database(fresh.database)
    try:
        assert KeyStore(database).verify(key) is not None
        assert [k.name for k in KeyStore(database).list()] == ["admin"]
    finally:
        database.close()


def test_a_deleted_system_ini_is_recreated_and_config_ini_is_left_alone(fresh: DataDir) -> None:
    config_before = fresh.config_ini.read_bytes()
    fresh.system_ini.unlink()

    report = initialise(fresh)

    assert report.created == [str(fresh.system_ini)]
    assert fresh.config_ini.read_bytes() == config_before
    assert IniDocument(fresh.system_ini.read_text()).sections() == list(FRESH_SYSTEM)


# -- adopting Websoft9's files -----------------------------------------------------------------


@pytest.fixture
def websoft9(tmp_path: Path) -> DataDir:
    data = DataDir(tmp_path / "websoft9")
    data.root.mkdir()
    data.config_ini.write_text(WEBSOFT9_CONFIG_INI)
    data.system_ini.write_text(WEBSOFT9_SYSTEM_INI)
    return data


def test_websoft9_plaintext_secrets_get_encrypted_and_nothing_else_changes(websoft9: DataDir) -> None:
    report = initialise(websoft9)

    assert report.encrypted_secrets == 5
    assert str(websoft9.config_ini) not in report.created
    config = websoft9.config_ini.read_text()
    system = websoft9.system_ini.read_text()
    for plaintext in [*PLACEHOLDERS.values(), WECHAT]:
        assert plaintext not in config
        assert plaintext not in system
    # Every line but the five secrets is byte for byte what Websoft9 wrote.
    secret_lines = {f"{key} = {value}" for (_, key), value in PLACEHOLDERS.items()} | {f"wechat = {WECHAT}"}
    old_lines = (WEBSOFT9_CONFIG_INI + WEBSOFT9_SYSTEM_INI).split("\n")
    new_lines = (config + system).split("\n")
    assert len(new_lines) == len(old_lines)
    for old, new in zip(old_lines, new_lines, strict=True):
        if old in secret_lines:
            assert new.startswith(old.split(" = ")[0] + " = " + PREFIX)
        else:
            assert new == old
    assert credentials(websoft9) == PLACEHOLDERS


def test_adopting_websoft9_files_is_audited_as_the_init_actor(websoft9: DataDir) -> None:
    initialise(websoft9)

    core = Core(websoft9)  # the stores locate the staged files: the last writes are still pending
    try:
        logged = core.audit.query(AuditQuery(action="secrets.encrypt"))
    finally:
        core.close()
    assert {(event.actor, event.file) for event in logged} == {("init", "config.ini"), ("init", "system.ini")}
    changes = [(c.section, c.key, c.old, c.new) for event in logged for c in event.changes]
    assert len(changes) == 5
    assert all(old == new == "********" for _, _, old, new in changes)


def test_a_second_start_after_adopting_changes_nothing(websoft9: DataDir) -> None:
    initialise(websoft9)
    before = fingerprint(websoft9.root)

    report = initialise(websoft9)

    assert (report.created, report.admin_key_file, report.encrypted_secrets) == ([], None, 0)
    assert fingerprint(websoft9.root) == before


def test_encrypted_values_without_their_key_file_stop_the_start(fresh: DataDir, tmp_path: Path) -> None:
    moved = tmp_path / "secret.key.saved"
    fresh.secret_key.rename(moved)
    config_before = fresh.config_ini.read_bytes()

    with pytest.raises(DataDirError) as caught:
        initialise(fresh)

    assert str(fresh.secret_key) in str(caught.value)
    assert str(fresh.config_ini) in str(caught.value)
    assert not fresh.secret_key.exists()  # a new key could never decrypt them: none is made
    assert fresh.config_ini.read_bytes() == config_before


def test_a_websoft9_config_with_encrypted_values_and_no_key_file_stops_the_start(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "restored")
    data.root.mkdir()
    encrypted = WEBSOFT9_CONFIG_INI.replace("user_pwd = JGFceAxAmjrx", "user_pwd = enc:v1:gAAAAABmissingkey")
    data.config_ini.write_text(encrypted)

    with pytest.raises(DataDirError, match="key file"):
        initialise(data)

    assert not data.secret_key.exists()
    assert data.config_ini.read_text() == encrypted
