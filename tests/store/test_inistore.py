"""IniStore: merged, validated, all-or-nothing writes with encrypted secrets, and a never-stale cache."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from apphub.audit.log import Actor, AuditQuery
from apphub.core import Core
from apphub.errors import (
    IniParseError,
    KeyNotFound,
    SectionNotFound,
    ValidationFailed,
    VersionConflict,
)
from apphub.paths import DataDir
from apphub.store.inistore import IniStore
from apphub.store.secrets import MASK, PREFIX, Secret
from apphub.store.snapshot import version_of

ACTOR = Actor("tester", "test", "req-1")


def hunks(before: bytes, after: bytes) -> list[tuple[list[str], list[str]]]:
    old, new = before.decode().split("\n"), after.decode().split("\n")
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [(old[i1:i2], new[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def events(core: Core) -> int:
    return len(core.audit.query(AuditQuery(limit=500)))


@pytest.fixture
def store(core: Core) -> IniStore:
    return core.config


def raw(store: IniStore) -> bytes:
    return store.path.read_bytes()


# -- merging -----------------------------------------------------------------------------------


def test_update_merges_into_the_sections_and_changes_only_those_lines(core: Core, store: IniStore) -> None:
    before = raw(store)
    old_version = store.snapshot().version

    result = store.update({"gitea": {"user_name": "forge-admin"}, "cockpit": {"port": 9191}}, ACTOR)

    after = raw(store)
    assert hunks(before, after) == [
        (["user_name = websoft9"], ["user_name = forge-admin"]),
        (["port = 9090"], ["port = 9191"]),
    ]
    assert result.changed
    assert result.previous_version == old_version
    assert result.snapshot.version == version_of(after) != old_version
    assert [(c.section, c.key, c.change, c.old, c.new) for c in result.changes] == [
        ("gitea", "user_name", "set", "websoft9", "forge-admin"),
        ("cockpit", "port", "set", "9090", "9191"),
    ]
    snapshot = store.snapshot()
    assert snapshot.public["cockpit"] == {"port": 9191}
    assert snapshot.public["gitea"]["user_name"] == "forge-admin"
    assert snapshot.public["gitea"]["user_pwd"] == MASK
    [event] = core.audit.query(AuditQuery(actor="tester"))
    assert (event.action, event.file) == ("settings.update", "config.ini")
    assert (event.actor, event.source, event.request_id) == ("tester", "test", "req-1")
    assert (event.version_before, event.version_after) == (old_version, result.snapshot.version)


def test_a_new_key_in_a_section_that_allows_extras_is_added_after_its_last_key(data_dir: DataDir) -> None:
    (data_dir.schema_dir / "10-open.yaml").write_text("config:\n  sections:\n    cockpit:\n      extra_keys: true\n")
    core = Core(data_dir)
    try:
        before = raw(core.config)
        result = core.config.update({"cockpit": {"origins": "https://10.0.0.1:9000"}}, ACTOR)
        assert hunks(before, raw(core.config)) == [([], ["origins = https://10.0.0.1:9000"])]
        assert [(c.change, c.old, c.new) for c in result.changes] == [("add", None, "https://10.0.0.1:9000")]
        lines = raw(core.config).decode().split("\n")
        assert lines[lines.index("[cockpit]") + 1 :][:2] == ["port = 9090", "origins = https://10.0.0.1:9000"]
    finally:
        core.close()


def test_system_ini_accepts_new_sections_appended_at_the_end(core: Core) -> None:
    before = raw(core.system)

    core.system.update({"backup_schedule": {"cron": "0 3 * * *"}}, ACTOR)

    after = raw(core.system)
    assert after.startswith(before)
    added = b"[backup_schedule]\ncron = 0 3 * * *\n"
    assert after[len(before) :] == (added if before.endswith(b"\n\n") else b"\n" + added)
    assert core.system.snapshot().document.get("backup_schedule", "cron") == "0 3 * * *"


# -- writes that change nothing ----------------------------------------------------------------


def test_a_no_op_update_does_not_touch_the_file_nor_the_audit_log(core: Core, store: IniStore) -> None:
    before = raw(store)
    status = store.path.stat()
    count = events(core)
    npm_password = store.snapshot().plaintext("nginx_proxy_manager", "user_pwd")
    assert isinstance(npm_password, Secret)

    result = store.update(
        {
            "gitea": {"user_name": "websoft9", "user_pwd": MASK},
            "portainer": {"user_pwd": MASK},
            "cockpit": {"port": 9090},
            "nginx_proxy_manager": {"user_pwd": npm_password.reveal(), "listen_port": "9000"},
            "initial_apps": {"keys": []},
        },
        ACTOR,
    )

    assert not result.changed
    assert result.changes == []
    assert raw(store) == before
    assert (store.path.stat().st_ino, store.path.stat().st_mtime_ns) == (status.st_ino, status.st_mtime_ns)
    assert events(core) == count
    assert result.snapshot.version == version_of(before) == result.previous_version


def test_sending_the_mask_back_keeps_the_stored_secret(store: IniStore) -> None:
    stored_before = store.snapshot().document.get("gitea", "user_pwd")

    result = store.update({"gitea": {"user_pwd": MASK, "user_name": "someone"}}, ACTOR)

    assert [c.key for c in result.changes] == ["user_name"]
    assert store.snapshot().document.get("gitea", "user_pwd") == stored_before


# -- validation --------------------------------------------------------------------------------


def test_a_write_that_fails_validation_writes_nothing(core: Core, store: IniStore) -> None:
    before = raw(store)
    count = events(core)

    with pytest.raises(ValidationFailed):
        store.update({"gitea": {"user_name": "fine-name"}, "cockpit": {"port": 70000}}, ACTOR)

    assert raw(store) == before
    assert events(core) == count


BAD_VALUES: dict[str, dict[str, object]] = {
    "nginx_proxy_manager": {"listen_port": "http", "user_name": "not-an-email", "docker0_ip": "bad_host!"},
    "gitea": {"base_url": "ftp://git", "user_pwd": "short"},
    "cockpit": {"colour": "blue"},
    "nope": {"x": "1"},
    "domain": {"wildcard_domain": " padded"},
}


def expected_problems(store: IniStore) -> set[tuple[str, str, str | None, str, int | None, str | None]]:
    line = store.snapshot().document.line_of
    return {
        ("config.ini", "nginx_proxy_manager", "listen_port", "type", line("nginx_proxy_manager", "listen_port"),
         "http"),
        ("config.ini", "nginx_proxy_manager", "user_name", "type", line("nginx_proxy_manager", "user_name"),
         "not-an-email"),
        ("config.ini", "nginx_proxy_manager", "docker0_ip", "type", line("nginx_proxy_manager", "docker0_ip"),
         "bad_host!"),
        ("config.ini", "gitea", "base_url", "type", line("gitea", "base_url"), "ftp://git"),
        ("config.ini", "gitea", "user_pwd", "min_length", line("gitea", "user_pwd"), MASK),
        # an unknown key may be a mistyped secret: its value is never echoed
        ("config.ini", "cockpit", "colour", "unknown_key", None, None),
        ("config.ini", "nope", None, "unknown_section", None, None),
        ("config.ini", "domain", "wildcard_domain", "whitespace", line("domain", "wildcard_domain"), " padded"),
    }


def test_every_problem_is_reported_at_once_with_file_section_key_rule_and_line(store: IniStore) -> None:
    before = raw(store)
    expected = expected_problems(store)

    with pytest.raises(ValidationFailed) as caught:
        store.update(BAD_VALUES, ACTOR)

    assert {(e.file, e.section, e.key, e.rule, e.line, e.value) for e in caught.value.errors} == expected
    assert all(e.line is not None for e in caught.value.errors if e.key in ("listen_port", "base_url", "user_pwd"))
    assert "short" not in str(caught.value)
    assert raw(store) == before


def test_a_value_of_the_wrong_json_type_is_reported_together_with_the_other_problems(store: IniStore) -> None:
    before = raw(store)
    expected = expected_problems(store) | {
        ("config.ini", "cockpit", "port", "type", store.snapshot().document.line_of("cockpit", "port"), "[9090]")
    }
    changes = {section: dict(keys) for section, keys in BAD_VALUES.items()}
    changes["cockpit"]["port"] = [9090]

    with pytest.raises(ValidationFailed) as caught:
        store.update(changes, ACTOR)

    assert {(e.file, e.section, e.key, e.rule, e.line, e.value) for e in caught.value.errors} == expected
    assert raw(store) == before


def test_names_that_an_ini_file_cannot_hold_are_refused(store: IniStore) -> None:
    before = raw(store)

    with pytest.raises(ValidationFailed) as caught:
        store.update({"bad]section": {"k": "v"}, "cockpit": {"bad=key": "1", "": "x"}}, ACTOR)

    assert {(e.section, e.key, e.rule) for e in caught.value.errors} == {
        ("bad]section", None, "name"),
        ("cockpit", "bad=key", "name"),
        ("cockpit", "", "name"),
    }
    assert raw(store) == before


@pytest.mark.parametrize("value", ["two\nlines", "tab\there", "nul\x00"])
def test_control_characters_are_refused_and_nothing_is_written(store: IniStore, value: str) -> None:
    before = raw(store)

    with pytest.raises(ValidationFailed) as caught:
        store.update({"nginx_proxy_manager": {"nike_name": value}}, ACTOR)

    assert [e.rule for e in caught.value.errors] == ["control_characters"]
    assert raw(store) == before


def test_a_unicode_line_separator_does_not_leave_a_file_whose_later_keys_cannot_change(store: IniStore) -> None:
    refused: list[str] = []
    try:
        store.update({"nginx_proxy_manager": {"nike_name": "ad\u2028min"}}, ACTOR)
    except ValidationFailed as exc:  # refusing it is fine too
        refused = [e.rule for e in exc.errors]
    assert refused in ([], ["control_characters"])

    store.update({"nginx_proxy_manager": {"listen_port": 9443, "ssl_key": "/data/other.key"}}, ACTOR)

    document = store.snapshot().document
    assert document.get("nginx_proxy_manager", "listen_port") == "9443"
    assert document.get("nginx_proxy_manager", "ssl_key") == "/data/other.key"


# -- existing_only (Websoft9's rule) -----------------------------------------------------------


def test_existing_only_refuses_an_unknown_section_or_key_and_writes_nothing(core: Core, store: IniStore) -> None:
    before = raw(store)
    count = events(core)

    with pytest.raises(SectionNotFound) as section:
        store.update({"gitea": {"user_name": "x"}, "platform_gateway": {"https_enabled": "true"}}, ACTOR,
                     existing_only=True)
    with pytest.raises(KeyNotFound) as key:
        store.update({"gitea": {"user_name": "x", "ssh_port": "22"}}, ACTOR, existing_only=True)

    assert section.value.section == "platform_gateway"
    assert (key.value.section, key.value.key) == ("gitea", "ssh_port")
    assert raw(store) == before
    assert events(core) == count


def test_existing_only_updates_an_existing_key(store: IniStore) -> None:
    store.update({"domain": {"wildcard_domain": "apps.example.com"}}, ACTOR, existing_only=True)

    assert store.snapshot().public["domain"] == {"wildcard_domain": "apps.example.com"}


# -- If-Match ----------------------------------------------------------------------------------


def test_a_stale_if_match_is_a_version_conflict_and_changes_nothing(core: Core, store: IniStore) -> None:
    stale = store.snapshot().version
    store.update({"cockpit": {"port": 9091}}, ACTOR)
    current = store.snapshot().version
    before = raw(store)
    count = events(core)

    with pytest.raises(VersionConflict) as caught:
        store.update({"cockpit": {"port": 9092}}, ACTOR, if_match={stale})

    assert (caught.value.expected, caught.value.current) == (stale, current)
    assert raw(store) == before
    assert events(core) == count


def test_the_current_version_in_if_match_lets_the_write_through(store: IniStore) -> None:
    current = store.snapshot().version

    result = store.update({"cockpit": {"port": 9092}}, ACTOR, if_match={"0" * 32, current})

    assert result.changed
    assert result.previous_version == current


def test_an_empty_if_match_never_matches(store: IniStore) -> None:
    with pytest.raises(VersionConflict):
        store.update({"cockpit": {"port": 9092}}, ACTOR, if_match=set())


# -- secrets -----------------------------------------------------------------------------------


def test_a_secret_is_stored_encrypted_and_read_back_in_plaintext(store: IniStore) -> None:
    password = "Correct-Horse-Battery-9"

    result = store.update({"portainer": {"user_pwd": password}}, ACTOR)

    data = raw(store)
    assert password.encode() not in data
    stored = store.snapshot().document.get("portainer", "user_pwd")
    assert stored is not None
    assert stored.startswith(PREFIX)
    secret = store.snapshot().plaintext("portainer", "user_pwd")
    assert isinstance(secret, Secret)
    assert secret.reveal() == password
    assert store.snapshot().public_section("portainer")["user_pwd"] == MASK
    assert store.snapshot().public_section("portainer", reveal=True)["user_pwd"] == password
    assert [(c.key, c.old, c.new) for c in result.changes] == [("user_pwd", MASK, MASK)]


def test_sending_the_same_plaintext_secret_again_writes_nothing(core: Core, store: IniStore) -> None:
    store.update({"gitea": {"user_pwd": "Same-Password-1"}}, ACTOR)
    before = raw(store)
    count = events(core)

    result = store.update({"gitea": {"user_pwd": "Same-Password-1"}}, ACTOR)

    assert not result.changed
    assert raw(store) == before
    assert events(core) == count


def test_an_empty_secret_is_allowed_where_it_is_not_required(core: Core) -> None:
    system = core.system
    webhook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=9393241f-aaaa-bbbb"

    system.update({"webhook": {"wechat": webhook}}, ACTOR)
    assert webhook.encode() not in raw(system)
    assert system.snapshot().public_section("webhook", reveal=True)["wechat"] == webhook

    result = system.update({"webhook": {"wechat": ""}}, ACTOR)

    assert system.snapshot().document.get("webhook", "wechat") == ""
    assert system.snapshot().public["webhook"]["wechat"] == ""
    assert [(c.key, c.old, c.new) for c in result.changes] == [("wechat", MASK, "")]


def test_an_empty_secret_is_refused_where_it_is_required(store: IniStore) -> None:
    before = raw(store)

    with pytest.raises(ValidationFailed) as caught:
        store.update({"gitea": {"user_pwd": ""}}, ACTOR)

    assert [(e.key, e.rule) for e in caught.value.errors] == [("user_pwd", "required")]
    assert raw(store) == before


def test_audit_entries_and_the_database_never_hold_a_secret_in_plaintext(core: Core, store: IniStore) -> None:
    password = "Audit-Must-Not-See-This-1"

    store.update({"gitea": {"user_pwd": password}}, ACTOR)
    store.update({"gitea": {"user_pwd": "Second-Password-2"}}, ACTOR)

    logged = core.audit.query(AuditQuery(key="user_pwd"))
    assert [(c.old, c.new) for event in logged for c in event.changes] == [(MASK, MASK), (MASK, MASK)]
    for path in core.data.state_dir.glob("apphub.db*"):
        assert password.encode() not in path.read_bytes()
        assert b"Second-Password-2" not in path.read_bytes()


def test_reencrypt_encrypts_a_secret_typed_by_hand_in_plaintext(core: Core, store: IniStore) -> None:
    text = raw(store).decode()
    stored = store.snapshot().document.get("gitea", "user_pwd")
    assert stored is not None
    store.path.write_text(text.replace(f"user_pwd = {stored}", "user_pwd = Typed-By-Hand-42"))
    typed = raw(store)

    result = store.reencrypt_secrets(ACTOR, only_plaintext=True)

    assert [(c.section, c.key, c.change, c.old, c.new) for c in result.changes] == [
        ("gitea", "user_pwd", "encrypt", MASK, MASK)
    ]
    data = raw(store)
    assert b"Typed-By-Hand-42" not in data
    assert hunks(typed, data) == [
        (["user_pwd = Typed-By-Hand-42"], [f"user_pwd = {store.snapshot().document.get('gitea', 'user_pwd')}"])
    ]
    secret = store.snapshot().plaintext("gitea", "user_pwd")
    assert isinstance(secret, Secret)
    assert secret.reveal() == "Typed-By-Hand-42"
    [event] = core.audit.query(AuditQuery(action="secrets.encrypt"))
    assert event.actor == "tester"

    again = store.reencrypt_secrets(ACTOR, only_plaintext=True)
    assert not again.changed
    assert raw(store) == data


# -- deletes -----------------------------------------------------------------------------------


def test_deleting_a_key_removes_its_line_and_is_audited(core: Core, store: IniStore) -> None:
    before = raw(store)

    result = store.update({}, ACTOR, deletes=[("nginx_proxy_manager", "nike_name")])

    assert hunks(before, raw(store)) == [(["nike_name = admin"], [])]
    assert [(c.section, c.key, c.change, c.old, c.new) for c in result.changes] == [
        ("nginx_proxy_manager", "nike_name", "delete", "admin", None)
    ]
    [event] = core.audit.query(AuditQuery(key="nike_name"))
    assert event.changes[0].change == "delete"


def test_deleting_a_required_key_is_refused(core: Core, store: IniStore) -> None:
    before = raw(store)
    count = events(core)

    with pytest.raises(ValidationFailed) as caught:
        store.update({}, ACTOR, deletes=[("gitea", "user_pwd"), ("nginx_proxy_manager", "nike_name")])

    assert [(e.section, e.key, e.rule) for e in caught.value.errors] == [("gitea", "user_pwd", "required")]
    assert raw(store) == before
    assert events(core) == count


def test_deleting_a_missing_key_or_section_is_not_found(store: IniStore) -> None:
    before = raw(store)

    with pytest.raises(KeyNotFound):
        store.update({}, ACTOR, deletes=[("gitea", "nope")])
    with pytest.raises(SectionNotFound):
        store.update({}, ACTOR, deletes=[("nope", "nope")])

    assert raw(store) == before


def test_deleting_a_secret_masks_it_in_the_audit_log(core: Core) -> None:
    core.system.update({"webhook": {"wechat": "https://hooks.example.com/secret-token-123"}}, ACTOR)

    result = core.system.update({}, ACTOR, deletes=[("webhook", "wechat")])

    assert [(c.change, c.old, c.new) for c in result.changes] == [("delete", MASK, None)]
    assert not core.system.snapshot().document.has_key("webhook", "wechat")


# -- the snapshot cache ------------------------------------------------------------------------


def test_the_snapshot_follows_an_edit_behind_the_stores_back_even_at_the_same_size_and_mtime(store: IniStore) -> None:
    first = store.snapshot()
    assert first.public["cockpit"]["port"] == 9090
    status = store.path.stat()

    text = raw(store).replace(b"port = 9090", b"port = 9191")
    assert len(text) == status.st_size
    with store.path.open("r+b") as handle:  # in place, like an editor that does not rename
        handle.write(text)
    os.utime(store.path, ns=(status.st_atime_ns, status.st_mtime_ns))

    second = store.snapshot()
    assert second.public["cockpit"]["port"] == 9191
    assert second.version != first.version
    assert store.snapshot() is second  # unchanged bytes: the parsed snapshot is reused


def test_a_write_starts_from_the_file_on_disk_not_from_the_cache(store: IniStore) -> None:
    store.snapshot()
    store.path.write_bytes(raw(store).replace(b"port = 9090", b"port = 9191"))

    store.update({"gitea": {"user_name": "other"}}, ACTOR)

    assert b"port = 9191" in raw(store)
    assert store.snapshot().public["cockpit"]["port"] == 9191


# -- bytes that are not ours -------------------------------------------------------------------


def test_comments_spacing_and_order_survive_updates(store: IniStore) -> None:
    text = raw(store).decode()
    text = "; Edited by hand on the host\n# keep me\n\n" + text
    text = text.replace("port = 9090", "port=9090   ")
    text = text.replace("[gitea]\n", "[gitea]\n; the forge admin\n")
    store.path.write_text(text)
    before = raw(store)
    old_password = store.snapshot().document.get("gitea", "user_pwd")

    store.update({"cockpit": {"port": 9191}, "gitea": {"user_name": "forge"}}, ACTOR)
    store.update({"gitea": {"user_pwd": "A-New-Password-1"}}, ACTOR)

    after = raw(store)
    new_password = store.snapshot().document.get("gitea", "user_pwd")
    assert hunks(before, after) == [
        (["user_name = websoft9"], ["user_name = forge"]),
        ([f"user_pwd = {old_password}"], [f"user_pwd = {new_password}"]),
        (["port=9090   "], ["port=9191"]),
    ]
    assert after.startswith(b"; Edited by hand on the host\n# keep me\n\n")
    assert b"[gitea]\n; the forge admin\n" in after


def test_crlf_line_ends_and_a_byte_order_mark_are_kept(store: IniStore) -> None:
    text = "\ufeff" + raw(store).decode().replace("\n", "\r\n")
    store.path.write_bytes(text.encode())

    store.update({"cockpit": {"port": 9191}, "docker_mirror": {"url": "https://mirror.example.com/m.json"}}, ACTOR)

    data = raw(store)
    assert data.startswith("\ufeff".encode())
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r\nport = 9191\r\n" in data
    assert store.snapshot().public["docker_mirror"]["url"] == "https://mirror.example.com/m.json"


def test_the_file_mode_is_kept_across_writes(store: IniStore) -> None:
    os.chmod(store.path, 0o640)

    store.update({"cockpit": {"port": 9191}}, ACTOR)

    assert stat.S_IMODE(store.path.stat().st_mode) == 0o640


def test_a_file_that_does_not_parse_is_reported_with_its_line_and_never_written(store: IniStore) -> None:
    text = raw(store).decode().replace("[cockpit]\n", "[cockpit]\nthis is not a setting\n")
    store.path.write_text(text)
    before = raw(store)
    line = text.split("\n").index("this is not a setting") + 1

    with pytest.raises(IniParseError) as read:
        store.snapshot()
    with pytest.raises(IniParseError) as write:
        store.update({"gitea": {"user_name": "x"}}, ACTOR)

    assert read.value.line == write.value.line == line
    assert read.value.source == "config.ini"
    assert raw(store) == before


def test_a_file_that_is_not_utf8_is_a_parse_error_naming_the_line(store: IniStore) -> None:
    store.path.write_bytes(raw(store).replace(b"nike_name = admin", b"nike_name = adm\xe9n"))
    line = raw(store).split(b"\n").index(b"nike_name = adm\xe9n") + 1

    with pytest.raises(IniParseError) as caught:
        store.snapshot()

    assert caught.value.line == line


def test_no_temporary_file_is_left_next_to_the_config(store: IniStore) -> None:
    stale = store.path.parent / ".config.ini.99999.1.0.apphub-tmp"
    stale.write_text("half written by a killed writer")

    store.update({"cockpit": {"port": 9191}}, ACTOR)

    assert not stale.exists()
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith(".apphub-tmp")]


def test_a_snapshot_of_a_missing_file_is_a_data_dir_error(tmp_path: Path, core: Core) -> None:
    from apphub.errors import DataDirError

    missing = IniStore(tmp_path / "gone.ini", tmp_path / "gone.lock", core.schema.config, core.box, core.audit)

    with pytest.raises(DataDirError, match="does not exist"):
        missing.snapshot()
