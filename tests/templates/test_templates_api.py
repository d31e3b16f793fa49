"""`/api/v1/templates` on a live server whose lifespan runs the real sync engine over the quickstart's
real services (examples/quickstart/start.sh: supervisord with hello-json, hello-ini and hello-env):
listing, showing, previewing with the engine's plan, applying with `?wait=true`, the roles each
needs, and that the plan a preview shows is what the apply then does.

One quickstart and one server for the module (starting supervisord and the first sync take most
of its time); each test compares config.ini before and after its own requests.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import MASK, Secret
from apphub.templates.catalog import FOLDER
from tests.api.conftest import Keys, assert_problem, websoft9_key_of
from tests.conftest import LiveServer, free_port, serving
from tests.integration.conftest import eventually
from tests.integration.quickstart import PROGRAMS, Quickstart, health, settled, stop_supervisord

PASSWORDS = [("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("portainer", "user_pwd")]
SECRET_DEFAULT = "QXZJ-Vwy-default-QXZJ-Vwy"  # a secret only a template's default gives

# The operator's own templates, for the quickstart's sections (examples/quickstart/schema.d/50-quickstart.yaml).
OPERATOR_TEMPLATES = {
    # greeting: restart (hello-json), color: hot (hello-json), title: reload (hello-ini, SIGHUP)
    "quickstart-look": """\
        name: quickstart-look
        description: The demo pages' look
        variables:
          greeting: {type: string, required: true, max_length: 120}
          color: {type: string, default: orange, pattern: "^[a-z]{3,20}$"}
          title: {type: string, default: "{{ greeting }} (from an INI file)"}
        settings:
          hello_json:
            greeting: "{{ greeting }}"
            color: "{{ color }}"
          hello_ini:
            title: "{{ title }}"
    """,
    "hello-color": """\
        name: hello-color
        description: hello-json's accent color
        variables:
          color: {type: string, required: true}
        settings:
          hello_json: {color: "{{ color }}"}
    """,
    "tls-half": """\
        name: tls-half
        description: a certificate without its key
        settings:
          nginx_proxy_manager: {ssl_cert: /data/custom_ssl/example.org.cert, ssl_key: ""}
    """,
    "rotate-key": """\
        name: rotate-key
        description: a new Websoft9 key
        variables:
          key: {type: string, secret: true, generate: token_hex}
        settings:
          api_key: {key: "{{ key }}"}
    """,
    "ini-token": f"""\
        name: ini-token
        description: hello-ini's token, a fixed one by default
        variables:
          token: {{type: string, secret: true, min_length: 16, default: "{SECRET_DEFAULT}"}}
        settings:
          hello_ini: {{token: "{{{{ token }}}}"}}
    """,
}


@dataclass
class Hub:
    quickstart: Quickstart
    server: LiveServer
    keys: Keys

    @property
    def data(self) -> DataDir:
        return self.quickstart.data

    def config(self) -> bytes:
        return self.data.config_ini.read_bytes()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The quickstart installed and its supervisord running, the operator's templates in place, and
    apphub's API served in this process with the sync engine (real supervisord backends)."""
    root = tmp_path_factory.mktemp("templates")
    ports = free_port(), free_port(), free_port()
    while len(set(ports)) < 3:
        ports = free_port(), free_port(), free_port()
    environment = {k: v for k, v in os.environ.items() if k != "APPHUB_DATA"}
    environment.update(QUICKSTART_JSON_PORT=str(ports[0]), QUICKSTART_INI_PORT=str(ports[1]),
                       QUICKSTART_ENV_PORT=str(ports[2]), XDG_DATA_HOME=str(root / "xdg"))
    quickstart = Quickstart(DataDir(root / "data"), root / "data-quickstart", *ports, environment)
    try:
        started = quickstart.start()
        assert started.returncode == 0, started.stderr
        folder = quickstart.data.root / FOLDER
        folder.mkdir()
        for name, text in OPERATOR_TEMPLATES.items():
            (folder / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        core = Core(quickstart.data)
        try:
            keys = Keys(read=core.keys.create("reader", "read"), write=core.keys.create("deployer", "write"),
                        admin=quickstart.data.admin_key.read_text().strip(), websoft9=websoft9_key_of(core))
        finally:
            core.close()
        with serving(quickstart.data) as server:
            yield Hub(quickstart, server, keys)
    finally:
        stop_supervisord(quickstart)


@pytest.fixture(scope="module")
def reader(hub: Hub) -> Iterator[httpx.Client]:
    with hub.server.client(hub.keys.read) as client:
        yield client


@pytest.fixture(scope="module")
def writer(hub: Hub) -> Iterator[httpx.Client]:
    with hub.server.client(hub.keys.write) as client:
        yield client


@pytest.fixture(scope="module")
def admin(hub: Hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.server.url, headers={"x-api-key": hub.keys.admin}, timeout=60.0) as client:
        yield client


def template_events(admin: httpx.Client) -> list[dict[str, Any]]:
    answer = admin.get("/api/v1/audit", params={"action": "template.apply"})
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


def plaintexts(data: DataDir, pairs: list[tuple[str, str]]) -> list[str]:
    """The plaintext of secret keys, read the way `apphub config get --reveal` would."""
    core = Core(data)
    try:
        snapshot = core.config.snapshot()
        found = []
        for section, key in pairs:
            value = snapshot.plaintext(section, key)
            assert isinstance(value, Secret)
            found.append(value.reveal())
        return found
    finally:
        core.close()


def field_problems(response: httpx.Response, status: int, *mentions: str) -> list[dict[str, Any]]:
    """The problem's `errors` (each a FieldError's dict), once it is checked to be a problem naming `mentions`."""
    errors = assert_problem(response, status, *mentions)["errors"]
    assert isinstance(errors, list)
    return errors


def by_service(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["service"]: entry for entry in entries}


def diff_lines(diff: str, sign: str) -> list[str]:
    """The added (`+`) or removed (`-`) lines of a unified diff, without its header."""
    return [line[1:] for line in diff.splitlines() if line.startswith(sign) and not line.startswith(sign * 3)]


# -- reading ------------------------------------------------------------------------------------


def test_a_read_key_lists_and_shows_the_templates(hub: Hub, reader: httpx.Client) -> None:
    answer = reader.get("/api/v1/templates")
    assert answer.status_code == 200, answer.text
    listed = {template["name"]: template for template in answer.json()["templates"]}
    assert set(listed) == {"hardened-production", "minimal", "websoft9-default", *OPERATOR_TEMPLATES}
    assert listed["hello-color"] == {
        "name": "hello-color", "description": "hello-json's accent color", "kind": "section",
        "sections": ["hello_json"], "source": str(hub.data.root / FOLDER / "hello-color.yaml")}
    assert (listed["hardened-production"]["kind"], listed["hardened-production"]["source"]) == (
        "configuration", "<built-in hardened-production.yaml>")

    shown = reader.get("/api/v1/templates/hardened-production")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["variables"]["domain"] == {"type": "hostname", "required": True,
                                           "description": "The host's public domain (git.DOMAIN serves Gitea)"}
    assert (body["variables"]["npm_password"]["secret"], body["variables"]["npm_password"]["generate"]) == (
        True, "password")
    assert body["variables"]["admin_email"]["default"] == "ops@{{ domain }}"
    assert body["settings"]["domain"] == {"wildcard_domain": "{{ domain }}"}

    missing = reader.get("/api/v1/templates/nosuch")
    assert_problem(missing, 404, "there is no template 'nosuch'", "hardened-production", "quickstart-look")


def test_a_secret_variables_default_is_not_shown(reader: httpx.Client) -> None:
    answer = reader.get("/api/v1/templates/ini-token")
    assert answer.status_code == 200, answer.text
    assert SECRET_DEFAULT not in answer.text


def test_a_broken_operator_file_is_an_error_naming_it(hub: Hub, reader: httpx.Client) -> None:
    broken = hub.data.root / FOLDER / "zz-broken.yaml"
    broken.write_text("name: zz-broken\nsettings: {}\ncolour: red\n", encoding="utf-8")
    try:
        answer = reader.get("/api/v1/templates")
        assert answer.status_code == 200, answer.text
        [problem] = answer.json()["errors"]
        assert problem.startswith(f"{broken}: ")
        assert "colour: Extra inputs are not permitted" in problem
        assert {"minimal", "websoft9-default", "hardened-production"} <= {t["name"] for t in answer.json()["templates"]}
        show = reader.get("/api/v1/templates/zz-broken")
        assert show.status_code == 500
        assert str(broken) in show.text
    finally:
        broken.unlink()
    assert reader.get("/api/v1/templates").status_code == 200


# -- previewing and applying --------------------------------------------------------------------


def test_a_read_key_may_preview_but_not_apply(hub: Hub, reader: httpx.Client, admin: httpx.Client) -> None:
    before, events = hub.config(), len(template_events(admin))
    answer = reader.post("/api/v1/templates/minimal/preview", json={"variables": {"admin_email": "me@example.org"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["template"] == "minimal"
    assert [(c["section"], c["key"], c["new"]) for c in body["changes"]] == [
        ("gitea", "user_email", "me@example.org"), ("nginx_proxy_manager", "user_name", "me@example.org")]
    plan = body["plan"]
    assert plan is not None, "the engine runs: the preview carries its plan"
    assert (plan["version"], plan["refused"]) == (body["version"], False)
    assert sorted(s["service"] for s in plan["services"]) == sorted(PROGRAMS)
    assert not any(s["changed"] for s in plan["services"]), "no service reads [gitea] nor [nginx_proxy_manager]"

    refused = reader.post("/api/v1/templates/minimal/apply", json={"variables": {"admin_email": "me@example.org"}})
    assert_problem(refused, 403, "reader")
    assert hub.config() == before
    assert len(template_events(admin)) == events


def test_a_write_key_applies_with_its_secrets_masked_and_audited(hub: Hub, writer: httpx.Client,
                                                                admin: httpx.Client) -> None:
    answer = writer.post("/api/v1/templates/hardened-production/apply",
                         params={"message": "harden the demo host"}, json={"variables": {"domain": "example.org"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert answer.headers["etag"].strip('"') == body["version"]
    assert "sync" not in body  # not waited for
    changed = {(c["section"], c["key"]): (c["old"], c["new"]) for c in body["changed"]}
    assert len(changed) == 9
    assert changed[("domain", "wildcard_domain")] == ("", "example.org")
    assert all(changed[pair] == (MASK, MASK) for pair in PASSWORDS)
    assert all(body["settings"][section][key] == MASK for section, key in PASSWORDS)

    passwords = plaintexts(hub.data, PASSWORDS)
    on_disk = hub.data.config_ini.read_text(encoding="utf-8")
    event = template_events(admin)[0]
    assert (event["actor"], event["source"], event["action"], event["message"], event["version_after"]) == (
        "deployer", "template", "template.apply", "harden the demo host", body["version"])
    assert [(c["section"], c["key"], c["new"]) for c in event["changes"] if (c["section"], c["key"]) in PASSWORDS] \
        == [(section, key, MASK) for section, key in PASSWORDS]
    for password in passwords:
        assert password not in answer.text
        assert password not in on_disk
        assert password not in json.dumps(event)


def test_what_a_template_cannot_do_is_refused_and_writes_nothing(hub: Hub, writer: httpx.Client,
                                                                admin: httpx.Client) -> None:
    before, events = hub.config(), len(template_events(admin))

    missing = writer.post("/api/v1/templates/hardened-production/apply", json={"variables": {}})
    assert [(e["section"], e["key"], e["rule"], e["file"]) for e in field_problems(missing, 422, "domain")] == [
        ("variables", "domain", "required", "<built-in hardened-production.yaml>")]

    secret = "QXZJ-Vwy-short"
    short = writer.post("/api/v1/templates/hardened-production/apply",
                        json={"variables": {"domain": "example.org", "npm_password": secret}})
    assert [(e["key"], e["rule"], e["value"]) for e in field_problems(short, 422, "npm_password")] == [
        ("npm_password", "min_length", MASK)]
    assert secret not in short.text

    unknown = writer.post("/api/v1/templates/minimal/apply",
                          json={"variables": {"admin_email": "me@example.org", "admin_mail": "x"}})
    assert_problem(unknown, 422, "admin_mail", "is not a variable of the template minimal")

    # the built-in rule npm_tls_pair: a certificate without its key
    half = writer.post("/api/v1/templates/tls-half/apply")
    assert [(e["rule"], e["section"], e["key"]) for e in field_problems(half, 422, "npm_tls_pair")] == [
        ("npm_tls_pair", "nginx_proxy_manager", "ssl_key")]
    assert_problem(writer.post("/api/v1/templates/tls-half/preview"), 422, "npm_tls_pair")

    assert_problem(writer.post("/api/v1/templates/nosuch/apply"), 404, "there is no template 'nosuch'")
    # [api_key] key is an admin credential, whoever sets it
    assert_problem(writer.post("/api/v1/templates/rotate-key/apply"), 403, "[api_key] key", "admin")

    assert hub.config() == before
    assert len(template_events(admin)) == events


def test_the_plan_a_preview_shows_is_what_the_apply_then_does(hub: Hub, admin: httpx.Client) -> None:
    quickstart = hub.quickstart
    eventually(lambda: settled(admin, admin.get("/api/v1/settings").json()["version"]),
               "every service applied at the current version", 30)
    files = {path: path.read_bytes() for path in (quickstart.json_file, quickstart.ini_file,
                                                  quickstart.demo / "hello-env" / "program.conf")}
    pids = {program: quickstart.pid(program) for program in PROGRAMS}
    before, events = hub.config(), len(template_events(admin))
    [token] = plaintexts(hub.data, [("hello_ini", "token")])
    variables = {"variables": {"greeting": "Hello from a template"}}

    previewed = admin.post("/api/v1/templates/quickstart-look/preview", json=variables)
    assert previewed.status_code == 200, previewed.text
    preview = previewed.json()
    plan = preview["plan"]
    assert token not in previewed.text
    assert (hub.config(), len(template_events(admin))) == (before, events)
    assert {path: path.read_bytes() for path in files} == files
    assert {program: quickstart.pid(program) for program in PROGRAMS} == pids
    planned = by_service(plan["services"])
    assert {name: (s["changed"], s["action"]) for name, s in planned.items()} == {
        "hello-json": (True, "supervisor-restart"), "hello-ini": (True, "supervisor-signal"),
        "hello-env": (False, "none")}

    answer = admin.post("/api/v1/templates/quickstart-look/apply", params={"wait": "true", "message": "new look"},
                        json=variables)
    assert answer.status_code == 200, answer.text
    applied = answer.json()
    sync = applied["sync"]
    assert (sync["done"], sync["ok"], sync["refused"]) == (True, True, [])

    # the same version, and the same keys changed the same way
    assert applied["version"] == preview["version"] == plan["version"] == sync["version"]
    key = ("section", "key", "change", "old", "new")
    assert sorted(tuple(c[k] for k in key) for c in applied["changed"]) == \
        sorted(tuple(c[k] for k in key) for c in preview["changes"])
    assert {f"{c['section']}.{c['key']}" for c in applied["changed"]} == {
        because for service in plan["services"] for because in service["because"]}
    # the same services, with the same actions
    done = by_service(sync["services"])
    assert {name: (outcome["result"], outcome["action"]) for name, outcome in done.items()
            if outcome["result"] != "unchanged"} == {
        name: ("applied", service["action"]) for name, service in planned.items() if service["changed"]}
    # the same files: those planned to change hold the planned lines now, the others are untouched
    for service in plan["services"]:
        for file in service["files"]:
            path = next(path for path in files if str(path) == file["path"])
            now = path.read_text(encoding="utf-8").splitlines()
            if not file["changed"]:
                assert path.read_bytes() == files[path], path
                continue
            assert diff_lines(file["diff"], "+"), path
            assert all(line in now for line in diff_lines(file["diff"], "+")), path
            assert not any(line in now for line in diff_lines(file["diff"], "-")), path

    # and the services run it: hello-json restarted, hello-ini re-read its file, hello-env untouched
    assert health(quickstart.json_port)[1]["settings"]["greeting"] == "Hello from a template"
    assert health(quickstart.json_port)[1]["settings"]["color"] == "orange"
    assert health(quickstart.ini_port)[1]["settings"]["title"] == "Hello from a template (from an INI file)"
    assert quickstart.pid("hello-json") != pids["hello-json"]
    assert (quickstart.pid("hello-ini"), quickstart.pid("hello-env")) == (pids["hello-ini"], pids["hello-env"])
    assert template_events(admin)[0]["message"] == "new look"
