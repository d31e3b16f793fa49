"""render_file and check_rendered, the engine's entry points: references, errors, secrets, encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apphub.core import Core
from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, envfile, render_file
from apphub.sync.values import MissingValue, Values
from tests.sync.render.conftest import make_values


def json_spec(mapping: dict[str, str], mode: str = "merge") -> FileSpec:
    return FileSpec(path="/srv/web/app.json", mode=mode, map=mapping)  # type: ignore[arg-type]


def test_env_references_and_literal_dollar_braces(values: Values, templates: Path) -> None:
    spec = json_spec({"home": "${env:HOME}", "literal": "$${web.port} stays", "mixed": "${web.port}:$${PORT}"})

    rendered = render_file("web", spec, values, None, templates)

    assert rendered == b'{\n  "home": "/root",\n  "literal": "${web.port} stays",\n  "mixed": "8443:${PORT}"\n}\n'
    assert values.env_read == {"HOME"}
    assert values.read == {("web", "port")}  # the literal one is not a read


def test_a_missing_env_var_is_a_missing_value_naming_service_file_and_map_key(values: Values, templates: Path) -> None:
    with pytest.raises(MissingValue) as caught:
        render_file("web", json_spec({"server.token": "${env:WEB_TOKEN}"}), values, None, templates, number=2)

    assert str(caught.value) == ("service web, file 2 (/srv/web/app.json): map key 'server.token': "
                                 "${env:WEB_TOKEN}: the environment variable WEB_TOKEN is not set")
    assert values.env_read == {"WEB_TOKEN"}


def test_a_missing_key_is_a_missing_value(values: Values, templates: Path) -> None:
    with pytest.raises(MissingValue) as caught:
        render_file("web", json_spec({"listen": "${web.listen}"}), values, None, templates)

    assert str(caught.value) == ("service web, file /srv/web/app.json: map key 'listen': ${web.listen}: "
                                 "config.ini has no key 'listen' in [web], and the schema gives no default")


def test_a_reference_that_is_not_section_dot_key_is_refused(values: Values, templates: Path) -> None:
    with pytest.raises(RenderError, match=r"map key 'a': \$\{port\}: a reference is \$\{section.key\}"):
        render_file("web", json_spec({"a": "${port}"}), values, None, templates)


def test_a_secret_goes_into_the_file_in_plaintext_read_back_exactly(core: Core, templates: Path) -> None:
    # A `'` and a final `"`: compose-go's double quotes carry it (once refused, issue 10).
    awkward = "it's a \"secret\""
    values = make_values(core, {"admin_password": awkward})  # stored encrypted, as a secret is
    assert core.config.snapshot().document.get("web", "admin_password") != awkward

    rendered = render_file("web", json_spec({"password": "${web.admin_password}"}), values, None, templates)
    assert json.loads(rendered) == {"password": awkward}

    env = FileSpec(path="/srv/web/.env", format="env", map={"ADMIN_PASSWORD": "${web.admin_password}"})
    rendered = render_file("web", env, values, None, templates)
    assert envfile.read(rendered.decode()) == {"ADMIN_PASSWORD": awkward}


def test_a_byte_order_mark_is_kept_and_a_file_that_is_not_utf8_is_refused(values: Values, templates: Path) -> None:
    spec = FileSpec(path="/etc/cockpit/cockpit.conf", format="ini", mode="merge", map={"WebService.Origins": "x"})

    rendered = render_file("cockpit", spec, values, b"\xef\xbb\xbf[WebService]\nOrigins = y\n", templates)
    assert rendered == b"\xef\xbb\xbf[WebService]\nOrigins = x\n"

    with pytest.raises(RenderError) as caught:
        render_file("cockpit", spec, values, b"[WebService]\nTitle = caf\xe9\n", templates)
    assert str(caught.value) == ("service cockpit, file /etc/cockpit/cockpit.conf: "
                                 "the current file is not UTF-8 text (line 2, byte 24)")


def test_replace_ignores_what_the_file_holds_even_if_it_is_broken(values: Values, templates: Path) -> None:
    rendered = render_file("web", json_spec({"port": "${web.port}"}, mode="replace"), values, b"{not json", templates)

    assert rendered == b'{\n  "port": 8443\n}\n'


def test_check_rendered_names_service_file_number_and_format() -> None:
    with pytest.raises(RenderError) as caught:
        check_rendered("web", json_spec({"a": "b"}), b"\xff", number=3)

    assert str(caught.value) == ("service web, file 3 (/srv/web/app.json): json: "
                                 "the render is not UTF-8 text (line 1, byte 0)")
