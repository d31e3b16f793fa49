"""Environments' overlays, in the store and through the API: an overlay file `config.<name>.ini`
holds only the keys that differ; its secrets are encrypted at rest and masked in every answer; a
write is judged as the merge it makes (the schema, then the rules) and a refusal names the overlay's
file; names are checked; diff never shows a secret; promote is one audited write that copies keys
as written; explain says which layer a value comes from.

The store-level tests open a Core over a fresh folder each; the API tests share one live server
(`server`): each of them writes its own environment, and reads only what it wrote.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.environments.compare import diff, promote
from apphub.environments.overlays import check_name
from apphub.errors import ValidationFailed
from apphub.paths import DataDir
from apphub.store.secrets import MASK, Secret
from tests.cli.conftest import audit_rows
from tests.conftest import LiveServer, serving

ACTOR = Actor("environments-test", "test")
PROD_PASSWORD = "Prod-Otter-Lantern-83"
STAGING_PASSWORD = "Staging-Fjord-Maple-29"
BAD_NAMES = ["Prod", "base", "../x", "diff", "promote", "", "a" * 33, "dev.1", "-dev"]


def _line(path: Path, section: str, key: str) -> int:
    """The line of `key` in `[section]` of the file, read as an operator would."""
    current = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("["):
            current = line.strip()[1:-1]
        elif current == section and line.split("=")[0].strip() == key:
            return number
    raise AssertionError(f"[{section}] {key} is not in {path.name}")


def _files(root: Path) -> list[str]:
    return sorted(path.name for path in root.glob("config*"))


def _files_outside_history(data: DataDir) -> list[str]:
    """Every file near the data folder but the history repository, whose objects the background committer
    and packer may add at any moment on behalf of earlier tests' writes."""
    history = data.state_dir / "history"
    return sorted(str(path) for path in data.root.parent.rglob("*")
                  if path.is_file() and not path.is_relative_to(history))


def _events(data: DataDir, action: str) -> list[dict[str, object]]:
    return [dict(row) for row in audit_rows(data, "SELECT * FROM audit_events WHERE action = ? ORDER BY id", (action,))]


def _plain(core: Core, section: str, key: str) -> str:
    value = core.config.snapshot().plaintext(section, key)
    assert isinstance(value, Secret)
    return value.reveal()


# -- the store ----------------------------------------------------------------------------------


def test_an_overlay_write_creates_a_private_file_holding_only_the_key(core: Core) -> None:
    config_before = core.data.config_ini.read_bytes()
    result = core.environments.store("prod", create=True).update(
        {"gitea": {"user_email": "prod@example.com"}}, ACTOR, action="environments.update")
    assert result.changed
    path = core.data.root / "config.prod.ini"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    overlay = core.environments.overlay("prod")
    assert overlay is not None
    assert {section: dict(overlay.document.items(section)) for section in overlay.sections()} == {
        "gitea": {"user_email": "prod@example.com"}}
    assert core.data.config_ini.read_bytes() == config_before
    assert core.environments.names() == ["prod"]
    # the merge: the overlay's key over config.ini, every other key config.ini's
    effective = core.environments.effective("prod")
    assert effective.document.get("gitea", "user_email") == "prod@example.com"
    assert effective.document.get("gitea", "user_name") == core.config.snapshot().document.get("gitea", "user_name")
    event = _events(core.data, "environments.update")[-1]
    assert event["file"] == "config.prod.ini"


def test_a_secret_in_an_overlay_is_encrypted_at_rest_and_masked(core: Core) -> None:
    store = core.environments.store("prod", create=True)
    result = store.update({"gitea": {"user_pwd": PROD_PASSWORD}}, ACTOR, action="environments.update")
    text = (core.data.root / "config.prod.ini").read_text(encoding="utf-8")
    assert PROD_PASSWORD not in text
    assert re.search(r"^user_pwd = enc:v1:", text, re.MULTILINE), text
    assert store.snapshot().public == {"gitea": {"user_pwd": MASK}}
    assert [(c.key, c.new) for c in result.changes] == [("user_pwd", MASK)]
    assert core.environments.effective("prod").plaintext("gitea", "user_pwd") == Secret(PROD_PASSWORD)
    for row in audit_rows(core.data, "SELECT c.old, c.new FROM audit_changes c"):
        assert PROD_PASSWORD not in f"{row['old']} {row['new']}"


def test_a_rule_broken_by_the_merge_is_refused_naming_the_overlay(core: Core) -> None:
    store = core.environments.store("prod", create=True)
    before = store.snapshot().raw
    with pytest.raises(ValidationFailed) as caught:
        store.update({"cockpit": {"port": 9000}}, ACTOR)  # config.ini's [nginx_proxy_manager] listen_port
    conflicts = [e for e in caught.value.errors if e.rule == "port_conflict"]
    assert conflicts, caught.value.errors
    assert conflicts[0].file == "config.prod.ini"
    assert "listen_port" in conflicts[0].message
    assert store.snapshot().raw == before


def test_a_config_ini_write_is_judged_under_the_active_overlay(core: Core) -> None:
    core.environments.store("prod", create=True).update({"cockpit": {"port": 9100}}, ACTOR)
    # not active: config.ini is judged alone
    assert core.config.update({"nginx_proxy_manager": {"listen_port": 9101}}, ACTOR).changed
    core.system.update({"environments": {"active": "prod"}}, ACTOR)
    with pytest.raises(ValidationFailed) as caught:
        core.config.update({"nginx_proxy_manager": {"listen_port": 9100}}, ACTOR)
    assert "port_conflict" in {e.rule for e in caught.value.errors}


def test_switching_to_an_environment_whose_merge_breaks_a_rule_is_refused(core: Core) -> None:
    core.environments.store("staging", create=True).update({"cockpit": {"port": 9100}}, ACTOR)
    core.config.update({"nginx_proxy_manager": {"listen_port": 9100}}, ACTOR)  # fine while staging does not run
    with pytest.raises(ValidationFailed) as caught:
        core.system.update({"environments": {"active": "staging"}}, ACTOR)
    assert "port_conflict" in {e.rule for e in caught.value.errors}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_name_is_refused_and_makes_no_file(core: Core, name: str) -> None:
    before = sorted(p.name for p in core.data.root.parent.rglob("*"))
    with pytest.raises(ValidationFailed) as caught:
        check_name(name)
    assert "cannot name an environment" in str(caught.value)
    with pytest.raises(ValidationFailed):
        core.environments.store(name, create=True)
    assert sorted(p.name for p in core.data.root.parent.rglob("*")) == before


@pytest.mark.parametrize("name", ["dev", "prod-eu", "stage_2", "0", "a" * 32])
def test_a_good_name_is_taken(core: Core, name: str) -> None:
    core.environments.store(name, create=True).update({"gitea": {"user_email": "x@example.com"}}, ACTOR)
    assert core.environments.names() == [name]


def test_a_refused_first_write_leaves_no_environment_behind(core: Core) -> None:
    with pytest.raises(ValidationFailed):
        core.environments.update("typo", {"cockpit": {"port": "not a port"}}, ACTOR)
    assert core.environments.names() == []
    assert _files(core.data.root) == ["config.ini"]


def test_diff_shows_a_secret_only_as_differing(core: Core) -> None:
    base_password = _plain(core, "gitea", "user_pwd")
    core.environments.store("same", create=True).update({"gitea": {"user_pwd": base_password}}, ACTOR)
    core.environments.store("other", create=True).update({"gitea": {"user_pwd": PROD_PASSWORD}}, ACTOR)
    assert diff(core.environments, "base", "same") == []
    found = diff(core.environments, "same", "other")
    assert [(d.section, d.key, d.secret, d.a.value, d.b.value) for d in found] == [
        ("gitea", "user_pwd", True, None, None)]
    assert (found[0].a.origin, found[0].b.origin) == ("config.same.ini", "config.other.ini")


def test_promote_is_one_audited_write_of_the_target_copying_references_as_written(core: Core) -> None:
    reference = "http://${nginx_proxy_manager.docker0_ip}:3000/api/v1"
    core.environments.store("staging", create=True).update(
        {"gitea": {"base_url": reference, "user_email": "staging@example.com", "user_pwd": STAGING_PASSWORD}}, ACTOR)
    core.environments.store("prod", create=True).update({"gitea": {"user_name": "prod-admin"}}, ACTOR)
    result = promote(core.environments, "staging", "prod", None, ACTOR)
    # every key that differs, prod's own user_name too (staging leaves it at config.ini's)
    assert {(c.section, c.key) for c in result.changes} == {("gitea", "base_url"), ("gitea", "user_email"),
                                                            ("gitea", "user_pwd"), ("gitea", "user_name")}
    events = _events(core.data, "environments.promote")
    assert len(events) == 1
    assert events[0]["file"] == "config.prod.ini"
    overlay = core.environments.overlay("prod")
    assert overlay is not None
    assert overlay.document.get("gitea", "base_url") == reference  # not its resolution
    assert overlay.document.get("gitea", "user_name") == core.config.snapshot().document.get("gitea", "user_name")
    assert core.environments.effective("prod").plaintext("gitea", "user_pwd") == Secret(STAGING_PASSWORD)
    assert diff(core.environments, "staging", "prod") == []


def test_promote_of_every_differing_key_creates_a_new_target_as_promote_with_keys_does(core: Core) -> None:
    core.environments.store("staging", create=True).update({"gitea": {"user_email": "staging@example.com"}}, ACTOR)
    assert promote(core.environments, "staging", "fresh", [("gitea", "user_email")], ACTOR).changed
    result = promote(core.environments, "staging", "newer", None, ACTOR)
    assert [(c.section, c.key) for c in result.changes] == [("gitea", "user_email")]


# -- the API --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = DataDir(tmp_path_factory.mktemp("environments") / "data")
    initialise(data)
    with serving(data) as live:
        yield live


@pytest.fixture(scope="module")
def read_key(server: LiveServer) -> str:
    core = Core(server.data)
    try:
        return core.keys.create("reader", "read")
    finally:
        core.close()


@pytest.fixture(scope="module")
def admin_client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client(server.data.admin_key.read_text().strip()) as client:
        yield client


@pytest.fixture(scope="module")
def reader_client(server: LiveServer, read_key: str) -> Iterator[httpx.Client]:
    with server.client(read_key) as client:
        yield client


@pytest.fixture
def api(admin_client: httpx.Client) -> httpx.Client:
    return admin_client


def _put(api: httpx.Client, name: str, section: str, **values: object) -> httpx.Response:
    return api.put(f"/api/v1/environments/{name}/{section}", json=values)


def _errors(answer: httpx.Response) -> list[dict[str, object]]:
    body = answer.json()
    errors: list[dict[str, object]] = body["errors"]
    return errors


def test_a_put_creates_the_overlay_and_it_is_listed_and_read_back(api: httpx.Client, server: LiveServer) -> None:
    answer = _put(api, "api-create", "gitea", user_email="create@example.com")
    assert answer.status_code == 200, answer.text
    assert answer.json()["settings"] == {"gitea": {"user_email": "create@example.com"}}
    path = server.data.root / "config.api-create.ini"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = api.get("/api/v1/environments").json()
    assert {"name": "api-create", "file": "config.api-create.ini", "keys": 1,
            "version": answer.json()["version"]} in listed["environments"]
    read = api.get("/api/v1/environments/api-create").json()
    assert read["file"] == "config.api-create.ini"
    assert read["settings"] == {"gitea": {"user_email": "create@example.com"}}

    dropped = api.delete("/api/v1/environments/api-create/gitea/user_email")
    assert dropped.status_code == 200, dropped.text
    settings = api.get("/api/v1/environments/api-create").json()["settings"]
    assert not any(settings.values()), settings  # (an emptied section's header may stay)
    assert api.delete("/api/v1/environments/api-create/gitea/user_email").status_code == 404


def test_a_secret_put_is_masked_in_every_answer(api: httpx.Client, server: LiveServer) -> None:
    answer = _put(api, "api-secret", "gitea", user_pwd=PROD_PASSWORD)
    assert answer.status_code == 200, answer.text
    assert answer.json()["settings"] == {"gitea": {"user_pwd": MASK}}
    read = api.get("/api/v1/environments/api-secret")
    explained = api.get("/api/v1/settings/gitea/user_pwd/explain", params={"environment": "api-secret"})
    assert explained.json()["origin"] == "config.api-secret.ini"
    audit = api.get("/api/v1/audit", params={"limit": 5})
    for text in (answer.text, read.text, explained.text, audit.text,
                 (server.data.root / "config.api-secret.ini").read_text(encoding="utf-8")):
        assert PROD_PASSWORD not in text


def test_a_type_error_is_422_naming_the_overlay_file(api: httpx.Client, server: LiveServer) -> None:
    assert _put(api, "api-types", "gitea", user_email="types@example.com").status_code == 200
    before = (server.data.root / "config.api-types.ini").read_bytes()
    answer = _put(api, "api-types", "cockpit", port="not a port")
    assert answer.status_code == 422, answer.text
    assert [(e["file"], e["section"], e["key"], e["rule"]) for e in _errors(answer)] == [
        ("config.api-types.ini", "cockpit", "port", "type")]
    assert "config.api-types.ini" in answer.json()["detail"]
    assert (server.data.root / "config.api-types.ini").read_bytes() == before


@pytest.mark.parametrize(("value", "says"), [
    ("${gitea.no_such_key}", "no value and no default"),
    ("${nginx_proxy_manager.nike_name}", "cycle"),
])
def test_a_reference_that_cannot_resolve_in_the_merge_is_422_naming_the_overlay_file(
        api: httpx.Client, server: LiveServer, value: str, says: str) -> None:
    assert _put(api, "api-refs", "nginx_proxy_manager", nike_name="${gitea.user_name}").status_code == 200
    before = (server.data.root / "config.api-refs.ini").read_bytes()
    answer = _put(api, "api-refs", "gitea", user_name=value)
    assert answer.status_code == 422, answer.text
    assert {e["file"] for e in _errors(answer)} == {"config.api-refs.ini"}, answer.text
    assert says in answer.text
    assert (server.data.root / "config.api-refs.ini").read_bytes() == before


def test_an_unset_environment_variable_is_a_warning_naming_the_overlay_file(api: httpx.Client) -> None:
    """Only a warning: the environment the services are rendered in may have it."""
    answer = _put(api, "api-env-var", "gitea", user_name="${env:APPHUB_TEST_SURELY_UNSET}")
    assert answer.status_code == 200, answer.text
    assert [(w["file"], w["key"], w["rule"]) for w in answer.json()["warnings"]] == [
        ("config.api-env-var.ini", "user_name", "reference")]
    assert "APPHUB_TEST_SURELY_UNSET is not set" in answer.json()["warnings"][0]["message"]


def test_rules_broken_by_the_merge_are_422_naming_the_overlay_file_and_line(api: httpx.Client,
                                                                            server: LiveServer) -> None:
    path = server.data.root / "config.api-rules.ini"
    assert _put(api, "api-rules", "nginx_proxy_manager", nike_name="rules").status_code == 200
    before = path.read_bytes()

    ports = _put(api, "api-rules", "cockpit", port=9000)  # config.ini's [nginx_proxy_manager] listen_port
    assert ports.status_code == 422, ports.text
    conflict = next(e for e in _errors(ports) if e["rule"] == "port_conflict")
    assert conflict["file"] == "config.api-rules.ini"
    assert "listen_port" in str(conflict["message"])

    tls = _put(api, "api-rules", "nginx_proxy_manager", ssl_key="")  # ssl_cert stays set in config.ini
    assert tls.status_code == 422, tls.text
    # the line the key would take in the version refused: after the section's last key
    assert [(e["file"], e["key"], e["rule"], e["line"]) for e in _errors(tls)] == [
        ("config.api-rules.ini", "ssl_key", "npm_tls_pair", _line(path, "nginx_proxy_manager", "nike_name") + 1)]
    assert path.read_bytes() == before

    both = _put(api, "api-rules", "nginx_proxy_manager", ssl_key="", ssl_cert="")  # the pair cleared together
    assert both.status_code == 200, both.text


@pytest.mark.parametrize("name", ["Prod", "base", "a" * 33, "dev.1"])
def test_a_bad_name_in_a_put_is_422_and_makes_no_file(api: httpx.Client, server: LiveServer, name: str) -> None:
    before = _files(server.data.root)
    answer = _put(api, name, "gitea", user_email="bad@example.com")
    assert answer.status_code == 422, answer.text
    assert "cannot name an environment" in answer.json()["detail"]
    assert _files(server.data.root) == before


@pytest.mark.parametrize("path", ["/api/v1/environments/diff/gitea", "/api/v1/environments/promote/gitea",
                                  "/api/v1/environments/..%2Fx/gitea", "/api/v1/environments/%2E%2E/gitea"])
def test_a_name_that_is_a_route_or_a_path_is_refused_and_makes_no_file(api: httpx.Client, server: LiveServer,
                                                                        path: str) -> None:
    before = _files_outside_history(server.data)
    answer = api.put(path, json={"user_email": "bad@example.com"})
    assert answer.status_code in (404, 405, 422), answer.text
    assert _files_outside_history(server.data) == before


@pytest.mark.parametrize(("method", "path", "params"), [
    ("GET", "/api/v1/environments/nowhere", None),
    ("DELETE", "/api/v1/environments/nowhere/gitea/user_email", None),
    ("GET", "/api/v1/environments/diff", {"a": "base", "b": "nowhere"}),
    ("GET", "/api/v1/environments/diff", {"a": "nowhere", "b": "base"}),
    ("GET", "/api/v1/settings/gitea/user_email/explain", {"environment": "nowhere"}),
])
def test_an_unknown_environment_is_404(api: httpx.Client, server: LiveServer, method: str, path: str,
                                       params: dict[str, str] | None) -> None:
    answer = api.request(method, path, params=params)
    assert answer.status_code == 404, answer.text
    assert "nowhere" in answer.json()["detail"]
    assert not (server.data.root / "config.nowhere.ini").exists()


def test_promoting_from_an_unknown_environment_is_404_and_writes_nothing(api: httpx.Client,
                                                                        server: LiveServer) -> None:
    before = _files(server.data.root)
    answer = api.post("/api/v1/environments/promote", json={"from": "nowhere", "to": "api-nowhere",
                                                            "keys": ["gitea.user_email"]})
    assert answer.status_code == 404, answer.text
    assert _files(server.data.root) == before


def test_diff_lists_different_secrets_without_a_value_and_not_equal_ones(api: httpx.Client,
                                                                         server: LiveServer) -> None:
    core = Core(server.data)
    try:
        base_password, portainer_password = _plain(core, "gitea", "user_pwd"), _plain(core, "portainer", "user_pwd")
    finally:
        core.close()
    assert _put(api, "api-same", "gitea", user_pwd=base_password, user_email="same@example.com").status_code == 200
    assert _put(api, "api-other", "gitea", user_pwd=PROD_PASSWORD, user_email="same@example.com").status_code == 200
    # a plain key made with a secret is a secret too
    assert _put(api, "api-other", "nginx_proxy_manager", nike_name="${portainer.user_pwd}").status_code == 200

    equal = api.get("/api/v1/environments/diff", params={"a": "base", "b": "api-same"})
    assert equal.status_code == 200, equal.text
    assert equal.json()["differences"] == [{"section": "gitea", "key": "user_email", "secret": False,
                                            "a": {"value": "admin@mydomain.com", "origin": "config.ini"},
                                            "b": {"value": "same@example.com", "origin": "config.api-same.ini"}}]

    different = api.get("/api/v1/environments/diff", params={"a": "api-same", "b": "api-other"})
    assert different.status_code == 200, different.text
    found = {(d["section"], d["key"]): d for d in different.json()["differences"]}
    assert set(found) == {("gitea", "user_pwd"), ("nginx_proxy_manager", "nike_name")}
    assert found["gitea", "user_pwd"] == {"section": "gitea", "key": "user_pwd", "secret": True,
                                          "a": {"value": None, "origin": "config.api-same.ini"},
                                          "b": {"value": None, "origin": "config.api-other.ini"}}
    assert found["nginx_proxy_manager", "nike_name"]["secret"] is True
    assert found["nginx_proxy_manager", "nike_name"]["b"]["value"] is None
    for secret in (base_password, PROD_PASSWORD, portainer_password):
        assert secret not in different.text
        assert secret not in equal.text


def test_promote_through_the_api(api: httpx.Client, server: LiveServer) -> None:
    reference = "http://${nginx_proxy_manager.docker0_ip}:3000/api/v1"
    assert _put(api, "api-from", "gitea", base_url=reference, user_email="from@example.com",
                user_pwd=STAGING_PASSWORD).status_code == 200
    events = len(_events(server.data, "environments.promote"))

    answer = api.post("/api/v1/environments/promote", json={"from": "api-from", "to": "api-to",
                                                            "keys": ["gitea.base_url", "gitea.user_pwd"]})
    assert answer.status_code == 200, answer.text
    assert STAGING_PASSWORD not in answer.text
    assert answer.json()["settings"] == {"gitea": {"base_url": reference, "user_pwd": MASK}}
    made = _events(server.data, "environments.promote")[events:]
    assert [(e["file"], e["actor"]) for e in made] == [("config.api-to.ini", "admin")]
    text = (server.data.root / "config.api-to.ini").read_text(encoding="utf-8")
    assert f"base_url = {reference}" in text
    assert STAGING_PASSWORD not in text
    assert "user_email" not in text, "only the keys asked for"

    # to base: config.ini itself
    config_events = len(_events(server.data, "environments.promote"))
    to_base = api.post("/api/v1/environments/promote", json={"from": "api-from", "to": "base",
                                                             "keys": ["gitea.history_repo"]})
    # api-from leaves history_repo at config.ini's value: writing it changes nothing
    assert to_base.status_code == 200, to_base.text
    assert to_base.json()["changed"] == []
    assert _put(api, "api-from", "gitea", history_repo="promoted-history").status_code == 200
    to_base = api.post("/api/v1/environments/promote", json={"from": "api-from", "to": "base",
                                                             "keys": ["gitea.history_repo"]})
    assert to_base.status_code == 200, to_base.text
    assert [e["file"] for e in _events(server.data, "environments.promote")[config_events:]] == ["config.ini"]
    assert re.search(r"^history_repo = promoted-history$", server.data.config_ini.read_text(encoding="utf-8"),
                     re.MULTILINE)


@pytest.mark.parametrize(("body", "status"), [
    ({"from": "api-itself", "to": "api-itself"}, 422),
    ({"from": "api-itself", "to": "base", "keys": ["gitea"]}, 422),
    ({"from": "api-itself", "to": "base", "keys": ["gitea.no_such_key"]}, 422),
    ({"from": "api-itself", "to": "Bad"}, 422),
])
def test_a_bad_promotion_is_refused_and_writes_nothing(api: httpx.Client, server: LiveServer,
                                                       body: dict[str, object], status: int) -> None:
    assert _put(api, "api-itself", "gitea", user_email="itself@example.com").status_code == 200
    before = {path: path.read_bytes() for path in server.data.root.glob("config*.ini")}
    answer = api.post("/api/v1/environments/promote", json=body)
    assert answer.status_code == status, answer.text
    assert {path: path.read_bytes() for path in server.data.root.glob("config*.ini")} == before


def test_explain_says_which_layer_and_line_a_value_comes_from(api: httpx.Client, server: LiveServer) -> None:
    reference = "http://${nginx_proxy_manager.docker0_ip}:3000/api/v1"
    assert _put(api, "api-explain", "gitea", user_email="explain@example.com", base_url=reference).status_code == 200
    overlay = server.data.root / "config.api-explain.ini"

    def explain(key: str, **params: str) -> dict[str, object]:
        answer = api.get(f"/api/v1/settings/gitea/{key}/explain", params=params)
        assert answer.status_code == 200, answer.text
        found: dict[str, object] = answer.json()
        return found

    from_overlay = explain("user_email", environment="api-explain")
    assert (from_overlay["origin"], from_overlay["line"], from_overlay["value"]) == (
        "config.api-explain.ini", _line(overlay, "gitea", "user_email"), "explain@example.com")
    from_base = explain("user_email", environment="base")
    assert (from_base["origin"], from_base["line"]) == ("config.ini",
                                                        _line(server.data.config_ini, "gitea", "user_email"))
    untouched = explain("user_name", environment="api-explain")
    assert (untouched["origin"], untouched["line"]) == ("config.ini",
                                                        _line(server.data.config_ini, "gitea", "user_name"))
    resolved = explain("base_url", environment="api-explain")
    assert resolved["raw"] == reference
    assert resolved["value"] == "http://172.17.0.1:3000/api/v1"
    assert resolved["references"] == [{"section": "nginx_proxy_manager", "key": "docker0_ip",
                                       "origin": "config.ini", "secret": False}]

    # an environment variable, with the default it falls back to
    assert _put(api, "api-explain", "domain", wildcard_domain="${env:APPHUB_TEST_SURELY_UNSET:-apps.example.com}"
                ).status_code == 200
    answer = api.get("/api/v1/settings/domain/wildcard_domain/explain", params={"environment": "api-explain"})
    assert (answer.json()["value"], answer.json()["env"]) == ("apps.example.com", ["APPHUB_TEST_SURELY_UNSET"])

    # a key config.ini does not hold: the schema's default
    core = Core(server.data)
    try:
        core.config.update({}, ACTOR, deletes=[("gitea", "webhook_url")])
    finally:
        core.close()
    default = explain("webhook_url", environment="api-explain")
    assert (default["origin"], default["line"]) == ("default", None)


def test_explain_without_an_environment_follows_the_active_one(api: httpx.Client, server: LiveServer) -> None:
    assert _put(api, "api-active", "gitea", user_email="active@example.com").status_code == 200
    core = Core(server.data)
    try:
        core.system.update({"environments": {"active": "api-active"}}, ACTOR)
        try:
            running = api.get("/api/v1/settings/gitea/user_email/explain").json()
            assert (running["origin"], running["value"]) == ("config.api-active.ini", "active@example.com")
            assert api.get("/api/v1/environments").json()["active"] == "api-active"
        finally:
            core.system.update({"environments": {"active": ""}}, ACTOR)
    finally:
        core.close()
    assert api.get("/api/v1/settings/gitea/user_email/explain").json()["origin"] == "config.ini"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/api/v1/environments/api-reader/gitea", {"user_email": "reader@example.com"}),
    ("PUT", "/api/v1/environments/api-reader-new/gitea", {"user_email": "reader@example.com"}),
    ("DELETE", "/api/v1/environments/api-reader/gitea/user_email", None),
    ("POST", "/api/v1/environments/promote", {"from": "api-reader", "to": "base", "keys": ["gitea.user_email"]}),
])
def test_a_read_key_cannot_write_an_overlay(api: httpx.Client, reader_client: httpx.Client, server: LiveServer,
                                           method: str, path: str, body: dict[str, object] | None) -> None:
    assert _put(api, "api-reader", "gitea", user_email="owner@example.com").status_code == 200
    before = {path.name: path.read_bytes() for path in server.data.root.glob("config*.ini")}
    answer = reader_client.request(method, path, json=body)
    assert answer.status_code == 403, answer.text
    assert {path.name: path.read_bytes() for path in server.data.root.glob("config*.ini")} == before
    # and it reads them
    assert reader_client.get("/api/v1/environments/api-reader").status_code == 200
    assert reader_client.get("/api/v1/environments/diff", params={"a": "base", "b": "api-reader"}).status_code == 200
