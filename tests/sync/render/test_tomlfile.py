"""TOML merge and replace: comments and layout survive; values keep their types."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.values import Values
from tests.sync.render.conftest import ADMIN_PASSWORD

PATH = "/srv/web/config.toml"

CONFIG_TOML = """\
# Demo web service
title = "Old title"  # shown in the header

[server]
# where it listens
port = 80 # changed by apphub
hosts = ["old.example.com"]

[[users]]
name = "admin"
"""


def toml_spec(mapping: dict[str, str], mode: str = "merge") -> FileSpec:
    return FileSpec(path=PATH, mode=mode, map=mapping)  # type: ignore[arg-type]


def test_merge_keeps_comments_and_layout_and_values_keep_their_types(values: Values, templates: Path) -> None:
    spec = toml_spec({"title": "${web.title}", "server.port": "${web.port}", "server.hosts": "${web.hosts}",
                      "server.debug": "${web.debug}"})

    rendered = render_file("web", spec, values, CONFIG_TOML.encode(), templates).decode()

    assert rendered == """\
# Demo web service
title = "Demo site"  # shown in the header

[server]
# where it listens
port = 8443 # changed by apphub
hosts = ["web.example.com", "www.example.com"]
debug = true

[[users]]
name = "admin"
"""


def test_missing_tables_are_created_and_a_secret_is_escaped_as_toml_wants(values: Values, templates: Path) -> None:
    spec = toml_spec({"auth.admin.password": "${web.admin_password}", "server.url": "http://0.0.0.0:${web.port}/"})

    rendered = render_file("web", spec, values, CONFIG_TOML.encode(), templates)

    document = tomllib.loads(rendered.decode())
    assert document["auth"] == {"admin": {"password": ADMIN_PASSWORD}}
    assert document["server"]["url"] == "http://0.0.0.0:8443/"
    assert document["users"] == [{"name": "admin"}]
    assert rendered.decode().startswith("# Demo web service\ntitle = \"Old title\"  # shown in the header\n")


def test_replace_puts_top_level_keys_before_tables(values: Values, templates: Path) -> None:
    spec = toml_spec({"server.port": "${web.port}", "title": "${web.title}", "server.debug": "${web.debug}"},
                     mode="replace")

    rendered = render_file("web", spec, values, CONFIG_TOML.encode(), templates)

    assert rendered == b'title = "Demo site"\n\n[server]\nport = 8443\ndebug = true\n'


@pytest.mark.parametrize(("target", "problem"), [
    ("users.name", "users holds an array of tables, not a table"),
    ("title.text", "title holds a string, not a table"),
])
def test_a_path_through_something_that_is_not_a_table_is_refused(values: Values, templates: Path, target: str,
                                                                 problem: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_file("web", toml_spec({target: "${web.title}"}), values, CONFIG_TOML.encode(), templates)

    assert str(caught.value) == f"service web, file {PATH}: map key {target!r}: {problem}"


def test_a_current_file_that_does_not_parse_is_refused_without_quoting_it(values: Values, templates: Path) -> None:
    current = b'[admin]\npassword = "hunter2-secret\n'

    with pytest.raises(RenderError) as caught:
        render_file("web", toml_spec({"server.port": "${web.port}"}), values, current, templates)

    assert str(caught.value).startswith(f"service web, file {PATH}: does not parse as TOML (line 2")
    assert "hunter2" not in str(caught.value)


def test_check_parses_toml_with_the_standard_library() -> None:
    spec = toml_spec({"a": "b"})
    check_rendered("web", spec, CONFIG_TOML.encode())

    with pytest.raises(RenderError, match=r"^service web, file \S+: toml: does not parse as TOML: .*line 2"):
        check_rendered("web", spec, b"a = 1\na = 2\n")
