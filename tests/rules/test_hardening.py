"""What a review of the rules and substitution found: values that grow without bound, type checks
skipped by a stray `${`, the server's environment shown, a secret compared by a preview, globs
where one key is meant, a level lost through a reference."""

from __future__ import annotations

import time

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import SchemaError, ValidationFailed
from apphub.paths import DataDir
from apphub.store.schema import load_schema
from apphub.store.secrets import MASK
from apphub.store.substitution import explain

ACTOR = Actor("hardening-test", "test")


def test_references_that_multiply_are_refused_at_a_bounded_length_and_cost(core: Core) -> None:
    body = {"gitea": {"user_name": "x" * 30,
                      "history_repo": "${gitea.user_name}" * 60,
                      "webhook_url": "${gitea.history_repo}" * 60,
                      "base_url": "${gitea.webhook_url}" * 60,
                      "user_email": "${gitea.base_url}" * 60}}
    started = time.monotonic()
    with pytest.raises(ValidationFailed) as caught:
        core.config.update(body, ACTOR)
    assert time.monotonic() - started < 5
    assert "resolves to more than 4096 characters" in str(caught.value)
    assert len(str(caught.value)) < 20_000


@pytest.mark.parametrize(("section", "key", "value"), [
    ("cockpit", "port", "99999${"),
    ("initial_apps", "keys", "BAD KEY $${x}"),
    ("gitea", "user_name", "u" * 300 + "$${x}"),
])
def test_a_stray_or_escaped_reference_does_not_skip_the_type_check(core: Core, section: str, key: str,
                                                                   value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        core.config.update({section: {key: value}}, ACTOR)
    assert {(e.section, e.key) for e in caught.value.errors} == {(section, key)}


def test_a_value_made_with_the_servers_environment_is_masked(core: Core) -> None:
    core.config.update({"docker_mirror": {"url": "https://u:${env:MIRROR_TOKEN}@mirror.example.com/list.json"}},
                       ACTOR)
    shown = explain(core.config.snapshot(), "docker_mirror", "url", {"MIRROR_TOKEN": "tok-Zq81-secret"})
    assert (shown.value, shown.secret, shown.env) == (MASK, True, ["MIRROR_TOKEN"])
    defaulted = explain(core.config.snapshot(), "docker_mirror", "url", {})  # unset: an error, nothing shown
    assert defaulted.value is None
    assert "tok-Zq81-secret" not in str(defaulted.as_dict())


def test_validating_a_secret_value_needs_an_admin(admin: httpx.Client, data_dir: DataDir) -> None:
    writer_key = _writer_key(data_dir)
    with httpx.Client(base_url=admin.base_url, headers={"x-api-key": writer_key}) as writer:
        refused = writer.post("/api/v1/settings/validate", json={"gitea": {"user_pwd": "Guess-Pass-Word-91"}})
        assert refused.status_code == 403, refused.text
        assert "needs 'admin'" in refused.text
        assert writer.post("/api/v1/settings/validate", json={"gitea": {"user_email": "a@b.org"}}).status_code == 200
    assert admin.post("/api/v1/settings/validate", json={"gitea": {"user_pwd": "Guess-Pass-Word-91"}}
                      ).status_code == 200


def _writer_key(data: DataDir) -> str:
    core = Core(data)
    try:
        return core.keys.create("hardening-writer", "write")
    finally:
        core.close()


def test_a_distinct_rule_on_secrets_never_refuses(core: Core, data_dir: DataDir) -> None:
    (data_dir.schema_dir / "60-strict.yaml").write_text(
        "config:\n  rules:\n    - {id: strict_differ, distinct: [gitea.user_pwd, portainer.user_pwd]}\n",
        encoding="utf-8")
    core.config.update({"gitea": {"user_pwd": "Velvet-Harbor-Quartz-51"}}, ACTOR)
    result = core.config.update({"portainer": {"user_pwd": "Velvet-Harbor-Quartz-51"}}, ACTOR)
    assert {(w.rule, w.severity) for w in result.warnings} >= {("strict_differ", "warning")}


@pytest.mark.parametrize("keys", ["[nginx_proxy_manager.ssl_*]", "['docker_mirror.*']"])
def test_globs_are_for_distinct_only(tmp_path: pytest.TempPathFactory, keys: str) -> None:
    folder = tmp_path / "schema.d"  # type: ignore[operator]
    folder.mkdir()
    (folder / "globs.yaml").write_text(f"config:\n  rules:\n    - {{id: g, require: {keys}}}\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"section\.key"):
        load_schema(folder)
