"""YAML merge and replace: comments, order, quoting and indentation survive; values keep their types."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.values import Values
from tests.sync.render.conftest import ADMIN_PASSWORD

PATH = "/srv/web/config.yaml"

CONFIG_YAML = """\
# Demo web service configuration
server:
    # where it listens
    port: 80        # changed by apphub
    title: "Old title"
    hosts:
      - old.example.com
database:
    url: 'sqlite:///var/lib/web.db'  # keep me
"""


def yaml_spec(mapping: dict[str, str], mode: str = "merge") -> FileSpec:
    return FileSpec(path=PATH, mode=mode, map=mapping)  # type: ignore[arg-type]


def test_merge_keeps_comments_order_quoting_and_indentation(values: Values, templates: Path) -> None:
    spec = yaml_spec({"server.port": "${web.port}", "server.title": "${web.title}", "server.hosts": "${web.hosts}",
                      "server.debug": "${web.debug}"})

    rendered = render_file("web", spec, values, CONFIG_YAML.encode(), templates).decode()

    assert rendered == """\
# Demo web service configuration
server:
    # where it listens
    port: 8443      # changed by apphub
    title: "Demo site"
    hosts:
      - web.example.com
      - www.example.com
    debug: true
database:
    url: 'sqlite:///var/lib/web.db'  # keep me
"""


def test_values_keep_their_types_and_strings_that_look_like_other_types_are_quoted(
    values: Values, templates: Path
) -> None:
    spec = yaml_spec({"a.port": "${web.port}", "a.debug": "${web.debug}", "a.hosts": "${web.hosts}",
                      "a.port_text": "${web.port}/tcp", "a.flag_text": "true", "a.secret": "${web.admin_password}"})

    rendered = render_file("web", spec, values, None, templates)

    loaded = YAML(typ="safe", pure=True).load(rendered)
    assert loaded == {"a": {"port": 8443, "debug": True, "hosts": ["web.example.com", "www.example.com"],
                            "port_text": "8443/tcp", "flag_text": "true", "secret": ADMIN_PASSWORD}}


def test_comments_above_the_document_start_marker_are_kept(values: Values, templates: Path) -> None:
    current = "# managed by hand and by apphub\n---\nserver:\n  port: 80\n"

    rendered = render_file("web", yaml_spec({"server.port": "${web.port}"}), values, current.encode(), templates)

    assert rendered == b"# managed by hand and by apphub\n---\nserver:\n  port: 8443\n"


def test_a_file_of_comments_only_keeps_them_above_the_new_keys(values: Values, templates: Path) -> None:
    current = "# nothing set yet\n"

    rendered = render_file("web", yaml_spec({"server.port": "${web.port}"}), values, current.encode(), templates)

    assert rendered == b"# nothing set yet\nserver:\n  port: 8443\n"


def test_crlf_line_ends_are_kept(values: Values, templates: Path) -> None:
    current = b"# c\r\nserver:\r\n  port: 80\r\n"

    rendered = render_file("web", yaml_spec({"server.port": "${web.port}"}), values, current, templates)

    assert rendered == b"# c\r\nserver:\r\n  port: 8443\r\n"


def test_replace_holds_only_the_mapped_keys_in_map_order(values: Values, templates: Path) -> None:
    spec = yaml_spec({"server.port": "${web.port}", "name": "${web.title}", "server.hosts": "${web.hosts}"},
                     mode="replace")

    rendered = render_file("web", spec, values, CONFIG_YAML.encode(), templates)

    assert rendered == (b"server:\n  port: 8443\n  hosts:\n    - web.example.com\n    - www.example.com\n"
                        b"name: Demo site\n")


def test_a_duplicate_key_error_does_not_quote_the_values(values: Values, templates: Path) -> None:
    current = b"admin:\n  password: hunter2-secret\n  password: other-secret\n"

    with pytest.raises(RenderError) as caught:
        render_file("web", yaml_spec({"server.port": "${web.port}"}), values, current, templates)

    assert str(caught.value) == (f"service web, file {PATH}: does not parse as YAML: "
                                 "the key 'password' appears twice in one mapping (line 3, column 3)")
    chain = [caught.value.__cause__, caught.value.__context__]
    assert all(link is None or "hunter2" not in str(link) for link in chain)


def test_a_top_level_list_cannot_take_keys(values: Values, templates: Path) -> None:
    with pytest.raises(RenderError, match="merge needs a mapping at the top level"):
        render_file("web", yaml_spec({"server.port": "${web.port}"}), values, b"- a\n- b\n", templates)


def test_check_accepts_several_documents_and_refuses_broken_yaml() -> None:
    spec = yaml_spec({"a": "b"})
    check_rendered("web", spec, b"a: 1\n---\nb: 2\n")
    check_rendered("web", spec, b"")

    with pytest.raises(RenderError) as caught:
        check_rendered("web", spec, b"password: 'hunter2-secret\n")
    assert str(caught.value) == (f"service web, file {PATH}: yaml: does not parse as YAML: "
                                 "found unexpected end of stream (line 2, column 1)")
