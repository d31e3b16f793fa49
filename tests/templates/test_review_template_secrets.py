"""Review findings on templates/catalog.py and templates/apply.py, each a regression test:

- shown (GET /api/v1/templates/NAME to a read-only key, `apphub template show`), a template gave
  away the passwords it sets: the default of a variable not marked `secret` that feeds a secret
  key, and a literal (`{{ 'Literal' }}`, or plain text) written as a secret key's value. Now a
  secret key's value is masked whole, and every variable that feeds one (through its text, or
  through the default of another that does) has its default masked; a problem with such a
  variable in a preview or an apply does not show its value either;
- a template's or a variable's name ending in a newline passed the name check (`$`).
"""

from __future__ import annotations

import json
import textwrap

import httpx
import pytest
from pydantic import ValidationError

from apphub.core import Core
from apphub.errors import ValidationFailed
from apphub.paths import DataDir
from apphub.store.secrets import MASK, Secret
from apphub.templates.apply import preview
from apphub.templates.catalog import FOLDER, Catalog, Template
from tests.cli.conftest import RunApphub, apphub
from tests.conftest import LiveServer

__all__ = ["apphub"]  # the CLI's fixture, used here

# Letters no message of apphub's strings four of together (tests/sync/conftest.py SECRET_ALPHABET).
FED = "QXZJ-Team-Otter-83"  # the default of a variable not marked secret, fed into [gitea] user_pwd
STEM = "QXZJ-Stem-Vwy"  # part of it, through the default of another variable
INLINE = "QXZJ-Inline-Fjord-29"  # written in the template as [portainer] user_pwd
PLAIN = "QXZJ-Plain-Maple-47"  # written as plain text for [nginx_proxy_manager] user_pwd
CHOICE = "QXZJ-Choice-Lark-61"  # one of an enum's choices, fed into a secret key
PASSWORDS = [FED, STEM, INLINE, PLAIN, CHOICE]

TEAM = f"""\
    name: team
    description: one password for the team, and two written in
    variables:
      stem: {{type: string, default: "{STEM}"}}
      pw: {{type: string, min_length: 12, default: "{{{{ stem }}}}-{FED}"}}
      flavour: {{type: enum, choices: ["{CHOICE}", "QXZJ-Other-Wren-52"], default: "{CHOICE}"}}
      email: {{type: email, default: "team@example.org"}}
    settings:
      gitea:
        user_pwd: "{{{{ pw }}}}-{{{{ flavour | lower }}}}"
        user_email: "{{{{ email }}}}"
      portainer:
        user_pwd: "{{{{ '{INLINE}' }}}}"
      nginx_proxy_manager:
        user_pwd: "{PLAIN}"
        user_name: "{{{{ email }}}}"
      cockpit:
        port: 9091
"""


def operator_template(data: DataDir, text: str, filename: str) -> None:
    folder = data.root / FOLDER
    folder.mkdir(exist_ok=True)
    (folder / filename).write_text(textwrap.dedent(text), encoding="utf-8")


def team(data: DataDir) -> Template:
    operator_template(data, TEAM, "team.yaml")
    return Catalog(data.root).get("team")


def assert_no_password(text: str) -> None:
    for password in PASSWORDS:
        assert password not in text, f"{password!r} is shown"
    assert "QXZJ" not in text  # nor a part of one


def stored(core: Core, section: str, key: str) -> str:
    value = core.config.snapshot().plaintext(section, key)
    assert isinstance(value, Secret)
    return value.reveal()


# -- shown --------------------------------------------------------------------------------------


def test_shown_a_template_masks_every_secret_keys_value_and_each_variable_feeding_one(core: Core) -> None:
    shown = team(core.data).as_dict(core.config.schema.is_secret)
    assert_no_password(json.dumps(shown))
    assert shown["variables"]["pw"]["default"] == MASK
    assert shown["variables"]["stem"]["default"] == MASK  # part of pw's default
    assert shown["variables"]["flavour"]["choices"] == [MASK, MASK]
    assert shown["variables"]["email"]["default"] == "team@example.org"  # feeds no secret key
    assert shown["settings"]["gitea"] == {"user_pwd": MASK, "user_email": "{{ email }}"}
    assert shown["settings"]["portainer"] == {"user_pwd": MASK}
    assert shown["settings"]["nginx_proxy_manager"]["user_pwd"] == MASK
    assert shown["settings"]["cockpit"] == {"port": 9091}


@pytest.mark.parametrize(("text", "shown"), [
    ("{{ pw }}", "{{ pw }}"),  # which variable sets it, nothing of its value (pw's default is masked)
    ("{{pw}}", "{{pw}}"),
    ("{{ pw }}-QXZJ", MASK),
    (" {{ pw }}", MASK),
    ("{{ pw ~ 'QXZJ' }}", MASK),
    ("{{ pw | upper }}", MASK),
    ("{{ 'QXZJ' }}", MASK),
    ("{{ nosuch }}", MASK),
    ("QXZJ", MASK),
    ("", ""),
])
def test_a_secret_keys_text_is_shown_only_when_it_is_a_bare_variable(core: Core, text: str, shown: str) -> None:
    template = Template.model_validate({"name": "one", "variables": {"pw": {"type": "string", "default": "QXZJ"}},
                                       "settings": {"gitea": {"user_pwd": text}}})
    body = template.as_dict(core.config.schema.is_secret)
    assert body["settings"]["gitea"]["user_pwd"] == shown
    assert body["variables"]["pw"]["default"] == (MASK if "pw" in text else "QXZJ")


def test_the_variables_feeding_a_secret_key_are_found_by_the_names_its_text_uses(core: Core) -> None:
    template = team(core.data)
    # pw and flavour in [gitea] user_pwd's text, stem in pw's default; email only in plain keys
    assert template.secret_variables(core.config.schema.is_secret) == {"pw", "stem", "flavour"}
    operator_template(core.data, """\
        name: broken
        variables:
          pw: {type: string, default: "QXZJ-Broken-Owl-19"}
        settings:
          gitea:
            user_pwd: "{{ pw "
        """, "broken.yaml")
    is_secret = core.config.schema.is_secret
    catalog = Catalog(core.data.root)
    # a text that does not parse: every variable named in it is taken to feed the key
    assert catalog.get("broken").secret_variables(is_secret) == {"pw"}
    assert catalog.get("broken").as_dict(is_secret)["variables"]["pw"]["default"] == MASK


def test_a_read_only_key_is_shown_no_password_the_template_sets(core: Core, live_server: LiveServer,
                                                                 admin: httpx.Client) -> None:
    team(core.data)
    applied = admin.post("/api/v1/templates/team/apply")
    assert applied.status_code == 200, applied.text
    reader = core.keys.create("reader", "read")
    with live_server.client(reader) as client:
        shown = client.get("/api/v1/templates/team")
    assert shown.status_code == 200, shown.text
    assert_no_password(shown.text)
    for section in ("gitea", "portainer", "nginx_proxy_manager"):
        assert stored(core, section, "user_pwd") not in shown.text


def test_template_show_prints_no_password(apphub: RunApphub, core: Core) -> None:
    team(core.data)
    done = apphub("template", "show", "team")
    assert done.returncode == 0, done.stderr
    assert_no_password(done.stdout + done.stderr)
    assert json.loads(done.stdout)["settings"]["portainer"]["user_pwd"] == MASK


# -- previews -----------------------------------------------------------------------------------


def test_a_preview_shows_no_password(apphub: RunApphub, core: Core) -> None:
    template = team(core.data)
    _, changes = preview(core.config, template, {})
    assert_no_password(json.dumps([change.__dict__ for change in changes]))
    done = apphub("template", "apply", "team", "--preview")
    assert done.returncode == 0, done.stderr
    assert_no_password(done.stdout + done.stderr)


def test_a_refused_default_feeding_a_secret_key_is_not_shown(core: Core) -> None:
    short = "QXZJ-Short"
    operator_template(core.data, f"""\
        name: short
        variables:
          pw: {{type: string, min_length: 30, default: "{short}"}}
        settings:
          gitea:
            user_pwd: "{{{{ pw }}}}"
        """, "short.yaml")
    with pytest.raises(ValidationFailed) as caught:
        preview(core.config, Catalog(core.data.root).get("short"), {})
    [problem] = caught.value.errors
    assert (problem.key, problem.rule, problem.value) == ("pw", "min_length", MASK)
    assert short not in str(caught.value)


# -- names --------------------------------------------------------------------------------------


def test_a_template_name_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(ValidationError, match="a template's name"):
        Template.model_validate({"name": "team\n", "settings": {"gitea": {"user_email": "a@example.org"}}})


def test_a_variable_name_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot name a variable"):
        Template.model_validate({"name": "team", "variables": {"pw\n": {"type": "string"}},
                                 "settings": {"gitea": {"user_email": "{{ pw }}"}}})
