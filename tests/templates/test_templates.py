"""Configuration templates (templates/catalog.py, templates/apply.py) and `apphub template`: the shipped
ones and the operator's (DATA/config-templates), their variables, the sandbox their values render in,
and what applying one writes, refuses and records. The HTTP API and the end-to-end run with a sync
engine are in test_templates_api.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from apphub.audit.log import Actor, AuditQuery
from apphub.core import Core
from apphub.errors import ValidationFailed
from apphub.paths import DataDir
from apphub.rules.strength import estimate_strength
from apphub.store.check import field_errors
from apphub.store.secrets import MASK, Secret
from apphub.store.snapshot import Snapshot
from apphub.templates.apply import apply, preview, render, variables_of
from apphub.templates.catalog import FOLDER, Catalog, Template
from tests.cli.conftest import RunApphub, apphub

__all__ = ["apphub"]  # the CLI's fixture, used here

ACTOR = Actor("templates-test", "test")
SHIPPED = ["hardened-production", "minimal", "websoft9-default"]
# A value of each type the shipped templates require.
SAMPLE = {"hostname": "example.org", "email": "owner@example.org"}
PASSWORDS = [("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("portainer", "user_pwd")]
# Letters no message of apphub's strings four of together (tests/sync/conftest.py SECRET_ALPHABET).
TYPO_SECRET = "QXZJ-Vwy-QXZJ-Vwy-17"


def operator_template(data: DataDir, text: str, filename: str = "mine.yaml") -> Path:
    """An operator's template file in DATA/config-templates."""
    folder = data.root / FOLDER
    folder.mkdir(exist_ok=True)
    path = folder / filename
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def shipped(data: DataDir, name: str) -> Template:
    return Catalog(data.root).get(name)


def required_only(template: Template) -> dict[str, str]:
    return {name: SAMPLE[spec.type] for name, spec in template.variables.items() if spec.required}


def refusal(template: Template, given: dict[str, str]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        render(template, given)
    return caught.value


def revealed(snapshot: Snapshot, section: str, key: str) -> str:
    value = snapshot.plaintext(section, key)
    assert isinstance(value, Secret), f"[{section}] {key} is not held as a secret"
    return value.reveal()


def template_events(core: Core) -> int:
    return len(core.audit.query(AuditQuery(action="template.apply")))


# -- the shipped templates ----------------------------------------------------------------------


def test_every_shipped_template_loads_and_says_what_it_is_for(data_dir: DataDir) -> None:
    found = Catalog(data_dir.root).all()
    assert sorted(found) == SHIPPED
    for template in found.values():
        assert template.description.strip(), template.name
        assert template.source == f"<built-in {template.name}.yaml>"
        assert template.kind == "configuration"
        assert all(spec.description for spec in template.variables.values()), template.name
        shown = json.loads(json.dumps(template.as_dict()))
        assert (shown["name"], shown["kind"], shown["sections"]) == (template.name, "configuration",
                                                                     list(template.settings))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_template_is_valid_on_a_fresh_folder_with_only_its_required_variables(core: Core,
                                                                                        name: str) -> None:
    template = shipped(core.data, name)
    before = core.data.config_ini.read_bytes()
    proposed, changes = preview(core.config, template, required_only(template))
    assert core.data.config_ini.read_bytes() == before
    assert changes
    # The whole proposed version, every key judged (not only those it touches): the schema, and the
    # rules (credential strength, the cross-key rules such as npm_tls_pair, references, ports).
    files = {"config.ini": proposed, "system.ini": core.system.snapshot()}
    assert field_errors(proposed.document, proposed.schema, core.box, "config.ini", plaintext_secrets=False) == []
    assert core.rules.judge(files) == []
    for section, key in PASSWORDS:
        if key in template.settings.get(section, {}):
            password = revealed(proposed, section, key)
            assert password != revealed(core.config.snapshot(), section, key)
            assert estimate_strength(password, []).score >= 3, f"[{section}] {key}: a weak generated password"
    for change in changes:
        if (change.section, change.key) in PASSWORDS:
            assert (change.old, change.new) == (MASK, MASK)


# -- variables ----------------------------------------------------------------------------------


def test_a_missing_required_variable_is_named_with_how_to_give_it(data_dir: DataDir) -> None:
    refused = refusal(shipped(data_dir, "hardened-production"), {})
    assert [(e.section, e.key, e.rule) for e in refused.errors] == [("variables", "domain", "required")]
    assert "--set domain=VALUE" in refused.errors[0].message
    assert refused.errors[0].file == "<built-in hardened-production.yaml>"
    # the defaults built on it (admin_email, ssl_cert, ssl_key) are not blamed for its absence


def test_an_unknown_variable_is_refused_naming_the_known_ones_never_its_value(data_dir: DataDir) -> None:
    refused = refusal(shipped(data_dir, "hardened-production"),
                      {"domain": "example.org", "npm_pasword": TYPO_SECRET})
    assert [(e.key, e.rule, e.value) for e in refused.errors] == [("npm_pasword", "unknown_variable", None)]
    assert "npm_password" in refused.errors[0].message  # the one the operator meant is listed
    assert "QXZJ" not in str(refused)


def test_a_value_its_type_refuses_is_named(data_dir: DataDir) -> None:
    refused = refusal(shipped(data_dir, "minimal"), {"admin_email": "owner-at-example.org"})
    assert [(e.key, e.rule, e.value) for e in refused.errors] == [("admin_email", "type", "owner-at-example.org")]
    assert "e-mail" in refused.errors[0].message


def test_a_secret_variables_bad_value_is_never_shown(core: Core) -> None:
    template = shipped(core.data, "hardened-production")
    refused = refusal(template, {"domain": "example.org", "npm_password": "QXZJ-short"})  # min_length 16
    assert [(e.key, e.rule, e.value) for e in refused.errors] == [("npm_password", "min_length", MASK)]
    assert "QXZJ" not in str(refused)
    # Long enough for the variable, too weak for the schema's strength rule: the write refuses it, masked.
    weak = "aaaaaaaaaaaaaaaaaaaa"
    with pytest.raises(ValidationFailed) as caught:
        preview(core.config, template, {"domain": "example.org", "npm_password": weak})
    assert [(e.section, e.key, e.rule, e.value) for e in caught.value.errors] == [
        ("nginx_proxy_manager", "user_pwd", "credential_strength", MASK)]
    assert weak not in str(caught.value)


def test_a_default_is_built_from_the_variables_before_it(data_dir: DataDir) -> None:
    template = shipped(data_dir, "hardened-production")
    values = variables_of(template, {"domain": "example.org"})
    assert values["admin_email"] == "ops@example.org"
    assert values["ssl_cert"] == "/data/custom_ssl/example.org.cert"
    changes = render(template, {"domain": "example.org"})
    assert changes["gitea"]["user_email"] == changes["nginx_proxy_manager"]["user_name"] == "ops@example.org"
    assert changes["gitea"]["base_url"] == "https://git.example.org/api/v1"
    # given, it wins over its default
    given = render(template, {"domain": "example.org", "admin_email": "root@example.net"})
    assert given["gitea"]["user_email"] == "root@example.net"
    assert given["nginx_proxy_manager"]["ssl_key"] == "/data/custom_ssl/example.org.key"


def test_a_default_built_from_a_later_variable_is_an_error_naming_both(data_dir: DataDir) -> None:
    operator_template(data_dir, """\
        name: late
        variables:
          nick: {type: string, default: "nick-{{ suffix }}"}
          suffix: {type: string, default: "one"}
        settings:
          nginx_proxy_manager: {nike_name: "{{ nick }}"}
    """)
    refused = refusal(shipped(data_dir, "late"), {})
    assert [(e.key, e.rule) for e in refused.errors] == [("nick", "default")]
    assert "'suffix' is undefined" in refused.errors[0].message
    # given, the default is not rendered at all
    assert render(shipped(data_dir, "late"), {"nick": "nick-two"}) == {"nginx_proxy_manager": {"nike_name": "nick-two"}}


def test_every_variable_problem_is_reported_at_once(data_dir: DataDir) -> None:
    operator_template(data_dir, """\
        name: late
        variables:
          nick: {type: string, default: "nick-{{ suffix }}"}
          suffix: {type: string, default: "one"}
        settings:
          nginx_proxy_manager: {nike_name: "{{ nick }}"}
    """)
    refused = refusal(shipped(data_dir, "late"), {"sufix": "two"})
    assert sorted((e.key, e.rule) for e in refused.errors) == [("nick", "default"), ("sufix", "unknown_variable")]


def test_generated_passwords_differ_between_two_applies_and_are_strong(core: Core) -> None:
    template = shipped(core.data, "websoft9-default")
    seen: list[dict[tuple[str, str], str]] = []
    for _ in range(2):
        result = apply(core.config, template, {}, ACTOR)
        assert result.warnings == []  # admin_passwords_differ: each product gets its own
        seen.append({pair: revealed(result.snapshot, *pair) for pair in PASSWORDS})
    first, second = seen
    assert all(first[pair] != second[pair] for pair in PASSWORDS)
    assert len(set(first.values())) == len(PASSWORDS)
    for password in [*first.values(), *second.values()]:
        assert len(password) >= 12
        assert estimate_strength(password, []).score >= 3


# -- rendering: the sandbox ---------------------------------------------------------------------


def test_a_variables_value_is_data_never_rendered(data_dir: DataDir) -> None:
    operator_template(data_dir, """\
        name: nick
        variables:
          nick: {type: string, required: true}
        settings:
          nginx_proxy_manager: {nike_name: "{{ nick }}"}
    """)
    assert render(shipped(data_dir, "nick"), {"nick": "{{ 7 * 7 }}"}) == {
        "nginx_proxy_manager": {"nike_name": "{{ 7 * 7 }}"}}


@pytest.mark.parametrize(("value", "mentions"), [
    ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ("{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}", "unsafe"),
    ("{{ lipsum.__globals__['os'].system('touch {marker}') }}", "unsafe"),
    ("{{ domian }}", "'domian' is undefined"),
    ("{{ domain ", "unexpected end of template"),
    ("{{ 1 / 0 }}", "division by zero"),
    ("{% include 'x.j2' %}", "loader"),
    ("{{ range(200000) | length }}", "range"),
])
def test_an_unsafe_or_broken_expression_is_refused_not_run(core: Core, tmp_path: Path, value: str,
                                                          mentions: str) -> None:
    marker = tmp_path / "executed"
    text = value.replace("{marker}", str(marker))
    operator_template(core.data, f"""\
        name: sneaky
        variables:
          domain: {{type: hostname, default: example.org}}
        settings:
          domain: {{wildcard_domain: {json.dumps(text)}}}
    """)
    before = core.data.config_ini.read_bytes()
    with pytest.raises(ValidationFailed) as caught:
        apply(core.config, shipped(core.data, "sneaky"), {}, ACTOR)
    assert [(e.section, e.key, e.rule) for e in caught.value.errors] == [("domain", "wildcard_domain", "template")]
    error = caught.value.errors[0]
    assert error.file.endswith(f"{FOLDER}/mine.yaml")
    assert "cannot be rendered" in error.message
    assert mentions in error.message
    assert not marker.exists(), "the expression ran"
    assert core.data.config_ini.read_bytes() == before
    assert template_events(core) == 0


# -- the operator's templates -------------------------------------------------------------------


def test_an_operator_template_replaces_the_shipped_one_of_its_name(data_dir: DataDir) -> None:
    path = operator_template(data_dir, """\
        name: minimal
        description: Ours - the admins' e-mail on Gitea only
        variables:
          admin_email: {type: email, default: "git@example.org"}
        settings:
          gitea: {user_email: "{{ admin_email }}"}
    """, filename="our-minimal.yaml")
    found = Catalog(data_dir.root).all()
    assert sorted(found) == SHIPPED
    ours = found["minimal"]
    assert (ours.source, ours.description, ours.kind) == (str(path), "Ours - the admins' e-mail on Gitea only",
                                                          "section")
    assert render(ours, {}) == {"gitea": {"user_email": "git@example.org"}}
    assert found["hardened-production"].source == "<built-in hardened-production.yaml>"


@pytest.mark.parametrize(("text", "mentions"), [
    ("name: [unclosed\n", "is not valid YAML"),
    ("- name: listed\n", "a template is a mapping"),
    ("", "a template is a mapping"),
    ("name: odd\nsettings: {}\ncolour: red\n", "colour: Extra inputs are not permitted"),
    ("name: Not A Name\nsettings: {}\n", "a template's name is"),
    ("name: odd\nvariables: {v: {type: colour}}\nsettings: {}\n", "variables.v.type"),
    ("name: odd\nvariables: {2fast: {type: string}}\nsettings: {}\n", "cannot name a variable"),
    ("name: odd\nvariables:\n  pw: {secret: true, generate: password, default: x}\nsettings: {}\n",
     "either a 'default' or a 'generate'"),
    ("name: odd\n", "settings"),
])
def test_an_invalid_operator_template_is_an_error_naming_its_file(data_dir: DataDir, text: str,
                                                                 mentions: str) -> None:
    path = operator_template(data_dir, text, filename="broken.yaml")
    catalog = Catalog(data_dir.root)
    assert sorted(catalog.all()) == SHIPPED  # the others still serve
    [problem] = catalog.problems
    assert problem.startswith(f"{path}: ")
    assert mentions in problem


# -- applying -----------------------------------------------------------------------------------


def test_apply_is_one_audited_write_with_its_secrets_encrypted_and_masked(core: Core) -> None:
    template = shipped(core.data, "hardened-production")
    before = core.config.snapshot().version
    result = apply(core.config, template, {"domain": "example.org"}, ACTOR, "harden the new host")
    assert result.previous_version == before
    assert {(c.section, c.key) for c in result.changes} == {
        (section, key) for section, keys in template.settings.items() for key in keys}
    passwords = {pair: revealed(result.snapshot, *pair) for pair in PASSWORDS}
    on_disk = core.data.config_ini.read_text(encoding="utf-8")
    for (section, key), password in passwords.items():
        assert password not in on_disk
        stored = result.snapshot.document.get(section, key)
        assert stored is not None
        assert stored.startswith("enc:"), f"[{section}] {key} is stored in plaintext"
        assert revealed(core.config.snapshot(), section, key) == password
    assert [(c.old, c.new) for c in result.changes if (c.section, c.key) in PASSWORDS] == [(MASK, MASK)] * 3

    [event] = core.audit.query(AuditQuery(action="template.apply"))
    assert (event.actor, event.source, event.action, event.message) == (
        "templates-test", "template", "template.apply", "harden the new host")
    assert (event.version_before, event.version_after) == (before, result.snapshot.version)
    assert event.changes == result.changes
    logged = json.dumps(event.as_dict())
    assert all(password not in logged for password in passwords.values())


def test_apply_without_a_message_says_which_template(core: Core) -> None:
    apply(core.config, shipped(core.data, "minimal"), {"admin_email": "owner@example.org"}, ACTOR)
    [event] = core.audit.query(AuditQuery(action="template.apply"))
    assert event.message == "template minimal applied"


def test_a_template_the_rules_refuse_writes_nothing(core: Core) -> None:
    operator_template(core.data, """\
        name: tls-half
        description: a certificate without its key
        settings:
          nginx_proxy_manager:
            ssl_cert: /data/custom_ssl/example.org.cert
            ssl_key: ""
    """)
    before = core.data.config_ini.read_bytes()
    with pytest.raises(ValidationFailed) as caught:
        apply(core.config, shipped(core.data, "tls-half"), {}, ACTOR)
    assert [(e.rule, e.section, e.key) for e in caught.value.errors] == [
        ("npm_tls_pair", "nginx_proxy_manager", "ssl_key")]
    assert core.data.config_ini.read_bytes() == before
    assert template_events(core) == 0


def test_preview_writes_nothing(core: Core) -> None:
    before = core.data.config_ini.read_bytes()
    events = len(core.audit.query(AuditQuery(limit=500)))
    proposed, changes = preview(core.config, shipped(core.data, "hardened-production"), {"domain": "example.org"})
    assert len(changes) == 9
    assert proposed.version != core.config.snapshot().version
    assert core.data.config_ini.read_bytes() == before
    assert len(core.audit.query(AuditQuery(limit=500))) == events


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_lists_and_shows_the_templates(apphub: RunApphub, data_dir: DataDir) -> None:
    operator_template(data_dir, """\
        name: gitea-mail
        description: Gitea's admin e-mail
        variables:
          email: {type: email, required: true}
        settings:
          gitea: {user_email: "{{ email }}"}
    """)
    listed = apphub("template", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["hardened-production", "minimal", "websoft9-default",
                                                   "gitea-mail"]
    assert "(section: gitea)  Gitea's admin e-mail" in lines[3]
    assert "(configuration: nginx_proxy_manager, gitea, portainer, domain)" in lines[0]

    shown = apphub("template", "show", "hardened-production")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["variables"]["domain"]["required"] is True
    assert body["variables"]["npm_password"]["generate"] == "password"
    assert body["settings"]["gitea"]["user_pwd"] == "{{ gitea_password }}"

    missing = apphub("template", "show", "nosuch")
    assert missing.returncode == 1
    assert "there is no template 'nosuch' (known: gitea-mail, hardened-production, minimal, websoft9-default)" \
        in missing.stderr


def test_cli_apply_previews_applies_and_never_prints_a_secret(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    previewed = apphub("template", "apply", "hardened-production", "--set", "domain=example.org", "--preview")
    assert previewed.returncode == 0, previewed.stderr
    assert "[nginx_proxy_manager] user_pwd: '********' -> '********'" in previewed.stdout
    assert "[domain] wildcard_domain: '' -> 'example.org'" in previewed.stdout
    assert "9 change(s); config.ini would be at version" in previewed.stdout
    assert "(nothing written)" in previewed.stdout
    assert data_dir.config_ini.read_bytes() == before

    applied = apphub("template", "apply", "hardened-production", "--set", "domain=example.org",
                     "--message", "from the CLI")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("template hardened-production applied: 9 change(s)  (version ")
    core = Core(data_dir)
    try:
        snapshot = core.config.snapshot()
        [event] = core.audit.query(AuditQuery(action="template.apply"))
    finally:
        core.close()
    assert (event.actor, event.source, event.message) == ("cli", "template", "from the CLI")
    assert snapshot.plaintext("domain", "wildcard_domain") == "example.org"
    for pair in PASSWORDS:
        password = revealed(snapshot, *pair)
        assert password not in previewed.stdout + previewed.stderr + applied.stdout + applied.stderr

    again = apphub("template", "apply", "minimal", "--set", "admin_email=ops@example.org")
    assert (again.returncode, again.stdout.strip()) == (0, "template minimal changes nothing")


def test_cli_apply_refusals_exit_1_naming_the_problem(apphub: RunApphub, data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    missing = apphub("template", "apply", "hardened-production")
    assert missing.returncode == 1
    assert "[variables] domain: is required: give it with --set domain=VALUE" in missing.stderr
    secret = "QXZJ-short"
    weak = apphub("template", "apply", "hardened-production", "--set", "domain=example.org",
                  "--set", f"npm_password={secret}")
    assert weak.returncode == 1
    assert "[variables] npm_password = '********': must be at least 16 characters long" in weak.stderr
    assert secret not in weak.stdout + weak.stderr
    unknown = apphub("template", "apply", "nosuch")
    assert unknown.returncode == 1
    assert "there is no template 'nosuch'" in unknown.stderr
    assert data_dir.config_ini.read_bytes() == before


def test_cli_a_set_without_a_value_is_a_usage_error(apphub: RunApphub) -> None:
    result = apphub("template", "apply", "minimal", "--set", "admin_email")
    assert result.returncode == 2, result.stderr
    assert "VAR=VALUE" in result.stderr
