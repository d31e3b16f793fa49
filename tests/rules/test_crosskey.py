"""Cross-key rules declared in the schema, and the rules on every write path: a write, a rollback,
POST /settings/validate, `apphub check`; errors refuse, warnings are accepted and reported (the
response, the audit log, check), and no finding holds a secret."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from apphub.audit.log import Actor, AuditQuery
from apphub.core import Core
from apphub.errors import SchemaError, ValidationFailed
from apphub.paths import DataDir
from apphub.store.schema import load_schema
from apphub.store.secrets import MASK
from tests.cli.conftest import RunApphub, apphub, audit_rows

__all__ = ["apphub"]  # the CLI's fixture, used here

ACTOR = Actor("rules-test", "test")
SHARED_PASSWORD = "Velvet-Harbor-Quartz-51"

# An operator's own section and rules, in schema.d, without code.
OPERATOR_SCHEMA = """\
config:
  sections:
    shop:
      keys:
        tls: {type: bool, default: false, apply: restart}
        url: {type: url, default: "http://shop.example.com", apply: restart}
        mode: {type: enum, choices: [live, demo], default: live, apply: restart}
        demo_token: {type: string, secret: true, default: "", apply: restart}
        port: {type: port, default: 8101, apply: restart}
    blog:
      keys:
        port: {type: port, default: 8102, apply: restart}
  rules:
    - id: https_when_tls
      when: {key: shop.tls, equals: "true"}
      then: {key: shop.url, pattern: "^https://"}
    - id: no_token_live
      when: {key: shop.mode, equals: live}
      forbid: [shop.demo_token]
      message: a demo token has no business in a live shop
    - id: one_port_each
      distinct: ["*.port"]
"""


@pytest.fixture
def operator_dir(data_dir: DataDir) -> DataDir:
    (data_dir.schema_dir / "60-shop.yaml").write_text(OPERATOR_SCHEMA, encoding="utf-8")
    with opened(data_dir) as core:  # the operator's sections, with their defaults
        core.config.update({"shop": {"tls": False}, "blog": {"port": 8102}}, ACTOR)
    return data_dir


@contextlib.contextmanager
def opened(data: DataDir) -> Iterator[Core]:
    core = Core(data)
    try:
        yield core
    finally:
        core.close()


@pytest.fixture
def core(operator_dir: DataDir) -> Iterator[Core]:
    with opened(operator_dir) as core:
        yield core


def refused(core: Core, changes: dict[str, dict[str, object]]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        core.config.update(changes, ACTOR)
    return [f"{e.rule}@[{e.section}] {e.key} {e.severity}" for e in caught.value.errors]


# -- the rules themselves, one passing and one failing case each ---------------------------------


def test_a_key_that_requires_another(core: Core) -> None:
    section = "nginx_proxy_manager"
    assert refused(core, {section: {"ssl_key": ""}}) == [f"npm_tls_pair@[{section}] ssl_key error"]
    with pytest.raises(ValidationFailed) as caught:
        core.config.update({section: {"ssl_key": ""}}, ACTOR)
    error = caught.value.errors[0]
    assert error.line is not None
    assert error.file == "config.ini"
    assert "must be set while [nginx_proxy_manager] ssl_cert is set" in error.message
    # both empty: the rule's condition does not hold
    result = core.config.update({section: {"ssl_key": "", "ssl_cert": ""}}, ACTOR)
    assert result.changed
    assert result.warnings == []


def test_a_condition_on_another_keys_value(core: Core) -> None:
    assert refused(core, {"shop": {"tls": True}}) == ["https_when_tls@[shop] url error"]
    assert core.config.update({"shop": {"tls": True, "url": "https://shop.example.com"}}, ACTOR).changed
    assert refused(core, {"shop": {"url": "http://back.example.com"}}) == ["https_when_tls@[shop] url error"]


def test_a_key_that_must_stay_empty_while_another_has_a_value(core: Core) -> None:
    errors = refused(core, {"shop": {"demo_token": "tok-Qx81"}})
    assert errors == ["no_token_live@[shop] demo_token error"]
    with pytest.raises(ValidationFailed) as caught:
        core.config.update({"shop": {"demo_token": "tok-Qx81"}}, ACTOR)
    assert "a demo token has no business in a live shop" in str(caught.value)
    assert "tok-Qx81" not in str(caught.value)
    assert caught.value.errors[0].value == MASK
    assert core.config.update({"shop": {"mode": "demo", "demo_token": "tok-Qx81"}}, ACTOR).changed


def test_keys_that_must_be_unique_across_sections(core: Core) -> None:
    # the port rule says so too: two ports named the same
    assert refused(core, {"blog": {"port": 8101}}) == ["one_port_each@[blog] port error",
                                                       "port_conflict@[blog] port error"]
    assert core.config.update({"blog": {"port": 8103}}, ACTOR).changed


def test_a_warning_is_accepted_reported_and_audited_without_the_secret(core: Core) -> None:
    core.config.update({"gitea": {"user_pwd": SHARED_PASSWORD}}, ACTOR)
    result = core.config.update({"portainer": {"user_pwd": SHARED_PASSWORD}}, ACTOR)
    assert result.changed
    assert [(w.rule, w.section, w.key, w.severity) for w in result.warnings] == [
        ("admin_passwords_differ", "portainer", "user_pwd", "warning")]
    assert "must differ from [gitea] user_pwd" in result.warnings[0].message
    assert result.warnings[0].value == MASK
    row = audit_rows(core.data, "SELECT warnings FROM audit_events ORDER BY id DESC LIMIT 1")[0]
    assert "admin_passwords_differ" in row["warnings"]
    assert SHARED_PASSWORD not in row["warnings"]
    assert core.audit.query(AuditQuery(limit=1))[0].warnings == json.loads(row["warnings"])
    # different passwords: nothing to warn of
    assert core.config.update({"portainer": {"user_pwd": "Other-Lantern-Pine-77"}}, ACTOR).warnings == []


def test_an_untouched_key_is_not_blamed_on_a_write(core: Core, operator_dir: DataDir) -> None:
    """A rule added after the values were written: a write of something else goes through."""
    with (operator_dir.schema_dir / "70-later.yaml").open("w", encoding="utf-8") as later:
        later.write("config:\n  rules:\n    - id: blog_high\n      when: {key: blog.port}\n"
                    "      then: {key: blog.port, pattern: '^9'}\n")
    assert core.config.update({"shop": {"url": "http://other.example.com"}}, ACTOR).changed
    assert refused(core, {"blog": {"port": 8104}}) == ["blog_high@[blog] port error"]
    assert [f.rule for f in core.findings() if f.severity == "error"] == ["blog_high"]


def test_a_rollback_to_a_version_that_breaks_a_rule_is_refused_unless_forced(core: Core,
                                                                            operator_dir: DataDir) -> None:
    old = core.config.snapshot().raw  # blog on 8102
    core.config.update({"blog": {"port": 9102}}, ACTOR)
    (operator_dir.schema_dir / "70-later.yaml").write_text(
        "config:\n  rules:\n    - id: blog_high\n      then: {key: blog.port, pattern: '^9'}\n", encoding="utf-8")
    with pytest.raises(ValidationFailed) as caught:
        core.config.restore(old, ACTOR)
    assert [(e.rule, e.section, e.key) for e in caught.value.errors] == [("blog_high", "blog", "port")]
    assert core.config.restore(old, ACTOR, force=True).changed


# -- the schema's own checks --------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "mentions"), [
    ("{id: two, when: {key: a.b}, require: [a.c], forbid: [a.d]}", "exactly one of"),
    ("{id: none}", "exactly one of"),
    ("{id: bad-ref, require: [nodot]}", "section.key"),
    ("{id: glob-when, when: {key: 'a.*'}, require: [a.c]}", "section.key"),
    ("{id: bad-pattern, then: {key: a.b, pattern: '('}}", "regular expression"),
    ("{id: distinct-when, when: {key: a.b}, distinct: [a.c, a.d]}", "takes no 'when'"),
])
def test_a_malformed_rule_is_refused_naming_it(tmp_path: pytest.TempPathFactory, rule: str, mentions: str) -> None:
    folder = tmp_path / "schema.d"  # type: ignore[operator]
    folder.mkdir()
    (folder / "bad.yaml").write_text(f"config:\n  rules:\n    - {rule}\n", encoding="utf-8")
    with pytest.raises(SchemaError) as caught:
        load_schema(folder)
    assert "bad.yaml" in str(caught.value)
    assert mentions in str(caught.value)


# -- the API and the CLI ------------------------------------------------------------------------


def test_validate_judges_a_proposal_without_writing_it(operator_dir: DataDir, admin: httpx.Client) -> None:
    before = operator_dir.config_ini.read_bytes()
    answer = admin.post("/api/v1/settings/validate", json={"blog": {"port": 8101}, "gitea": {"user_pwd": "admin123"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False
    assert {(e["rule"], e["section"], e["key"]) for e in body["errors"]} == {
        ("one_port_each", "blog", "port"), ("port_conflict", "blog", "port"),
        ("placeholder_password", "gitea", "user_pwd")}
    assert "admin123" not in answer.text
    assert all(e["line"] is not None and e["severity"] == "error" for e in body["errors"])
    assert operator_dir.config_ini.read_bytes() == before

    fine = admin.post("/api/v1/settings/validate", json={"blog": {"port": 8109}}).json()
    assert fine == {"valid": True, "errors": [], "warnings": []}
    whole = admin.post("/api/v1/settings/validate").json()
    assert whole["valid"] is True, whole


def test_a_write_answers_its_warnings_and_a_refusal_every_finding(operator_dir: DataDir,
                                                                 admin: httpx.Client) -> None:
    admin.put("/api/v1/settings/gitea", json={"user_pwd": SHARED_PASSWORD}).raise_for_status()
    answer = admin.put("/api/v1/settings/portainer", json={"user_pwd": SHARED_PASSWORD})
    assert answer.status_code == 200, answer.text
    assert [w["rule"] for w in answer.json()["warnings"]] == ["admin_passwords_differ"]
    assert SHARED_PASSWORD not in answer.text
    audit = admin.get("/api/v1/audit", params={"limit": 1}).json()["entries"][0]
    assert len(audit["warnings"]) == 1
    assert audit["warnings"][0].endswith(
        "[portainer] user_pwd = '********': warning: must differ from [gitea] user_pwd, and has the same value: "
        "one leaked password would open every product (rule: admin_passwords_differ)")

    refused_answer = admin.put("/api/v1/settings", json={"shop": {"tls": True}, "blog": {"port": 8101}})
    assert refused_answer.status_code == 422
    assert {e["rule"] for e in refused_answer.json()["errors"]} == {"https_when_tls", "one_port_each",
                                                                     "port_conflict"}


def test_check_lists_rule_errors_and_warnings(operator_dir: DataDir, apphub: RunApphub) -> None:
    with opened(operator_dir) as core:
        core.config.update({"gitea": {"user_pwd": SHARED_PASSWORD}}, ACTOR)
        core.config.update({"portainer": {"user_pwd": SHARED_PASSWORD}}, ACTOR)
    done: subprocess.CompletedProcess[str] = apphub("check")
    assert done.returncode == 0, done.stderr
    assert "warning: must differ from [gitea] user_pwd" in done.stderr
    assert SHARED_PASSWORD not in done.stderr

    text = operator_dir.config_ini.read_text(encoding="utf-8")
    operator_dir.config_ini.write_text(text.replace("port = 8102", "port = 8101"), encoding="utf-8")
    done = apphub("check")
    assert done.returncode == 1
    # shop's port is its default (8101): the finding stands at its section
    assert "[shop] port: must differ from [blog] port, and has the same value (rule: one_port_each)" in done.stderr
