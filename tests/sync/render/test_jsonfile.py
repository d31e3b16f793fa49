"""JSON merge and replace: typed values, nested objects, key order, indentation, final newline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.values import Values
from tests.sync.render.conftest import ADMIN_PASSWORD

PATH = "/srv/web/app.json"

# A service's own config file: nested objects, keys in the author's order (not sorted), 4 spaces.
APP_JSON = """\
{
    "name": "demo",
    "server": {
        "title": "Old title",
        "port": 80,
        "tls": {"enabled": false}
    },
    "features": ["search", "upload"],
    "logging": {
        "level": "info"
    }
}
"""


def json_spec(mapping: dict[str, str], mode: str = "merge") -> FileSpec:
    return FileSpec(path=PATH, mode=mode, map=mapping)  # type: ignore[arg-type]


def test_merge_changes_the_mapped_keys_with_their_types_and_keeps_order_and_indentation(
    values: Values, templates: Path
) -> None:
    spec = json_spec({"server.port": "${web.port}", "server.title": "${web.title}",
                      "server.tls.enabled": "${web.debug}", "features": "${web.hosts}"})

    rendered = render_file("web", spec, values, APP_JSON.encode(), templates).decode()

    assert rendered == """\
{
    "name": "demo",
    "server": {
        "title": "Demo site",
        "port": 8443,
        "tls": {
            "enabled": true
        }
    },
    "features": [
        "web.example.com",
        "www.example.com"
    ],
    "logging": {
        "level": "info"
    }
}
"""


def test_missing_objects_are_created_and_new_keys_go_last(values: Values, templates: Path) -> None:
    spec = json_spec({"auth.admin.password": "${web.admin_password}", "server.url": "http://0.0.0.0:${web.port}/"})

    document = json.loads(render_file("web", spec, values, APP_JSON.encode(), templates))

    assert list(document) == ["name", "server", "features", "logging", "auth"]
    assert document["auth"] == {"admin": {"password": ADMIN_PASSWORD}}
    assert document["server"]["url"] == "http://0.0.0.0:8443/"  # a reference inside a string is text
    assert list(document["server"]) == ["title", "port", "tls", "url"]


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param('{\n\t"a": {\n\t\t"port": 1\n\t}\n}\n', '{\n\t"a": {\n\t\t"port": 8443\n\t}\n}\n', id="tabs"),
        pytest.param('{\n  "a": {\n    "port": 1\n  }\n}', '{\n  "a": {\n    "port": 8443\n  }\n}',
                     id="no-final-newline"),
        pytest.param('{"a": {"port": 1}}\n', '{"a": {"port": 8443}}\n', id="one-line"),
        pytest.param('{"a":{"port":1}}', '{"a":{"port":8443}}', id="minified"),
        pytest.param('{\r\n  "a": {\r\n    "port": 1\r\n  }\r\n}\r\n',
                     '{\r\n  "a": {\r\n    "port": 8443\r\n  }\r\n}\r\n', id="crlf"),
        pytest.param('{"a": {"port": 1}, "b": "caf\\u00e9"}', '{"a": {"port": 8443}, "b": "caf\\u00e9"}',
                     id="ascii-escapes"),
        pytest.param('{"a": {"port": 1}, "b": "café"}', '{"a": {"port": 8443}, "b": "café"}', id="utf-8"),
        pytest.param("", '{\n  "a": {\n    "port": 8443\n  }\n}\n', id="empty-file"),
    ],
)
def test_the_layout_of_the_file_is_kept(values: Values, templates: Path, current: str, expected: str) -> None:
    rendered = render_file("web", json_spec({"a.port": "${web.port}"}), values, current.encode(), templates)

    assert rendered.decode() == expected


def test_a_missing_file_gets_two_space_indentation_and_a_final_newline(values: Values, templates: Path) -> None:
    rendered = render_file("web", json_spec({"server.port": "${web.port}"}), values, None, templates)

    assert rendered == b'{\n  "server": {\n    "port": 8443\n  }\n}\n'


def test_replace_holds_only_the_mapped_keys_in_map_order(values: Values, templates: Path) -> None:
    spec = json_spec({"z.debug": "${web.debug}", "a": "${web.title}", "z.port": "${web.port}"}, mode="replace")

    rendered = render_file("web", spec, values, APP_JSON.encode(), templates)

    assert rendered == b'{\n  "z": {\n    "debug": true,\n    "port": 8443\n  },\n  "a": "Demo site"\n}\n'


def test_a_path_through_a_value_that_is_not_an_object_is_refused(values: Values, templates: Path) -> None:
    with pytest.raises(RenderError) as caught:
        render_file("web", json_spec({"features.first": "${web.title}"}), values, APP_JSON.encode(), templates)

    assert str(caught.value) == (f"service web, file {PATH}: map key 'features.first': "
                                 "features holds a list, not an object")


@pytest.mark.parametrize(("current", "problem"), [
    ("[1, 2]\n", "merge needs a JSON object at the top level, and the file holds a list"),
    ('{"password": "hunter2-secret",\n', "does not parse as JSON: Expecting property name enclosed in double quotes"),
])
def test_a_current_file_that_cannot_take_keys_is_refused(values: Values, templates: Path, current: str,
                                                         problem: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_file("web", json_spec({"server.port": "${web.port}"}), values, current.encode(), templates)

    assert str(caught.value).startswith(f"service web, file {PATH}: {problem}")
    assert "hunter2" not in str(caught.value)


def test_check_parses_json() -> None:
    spec = json_spec({"a": "b"})
    check_rendered("web", spec, APP_JSON.encode())

    with pytest.raises(RenderError, match=r"^service web, file \S+: json: does not parse as JSON: .*line 2"):
        check_rendered("web", spec, b'{"a": 1,\n}')
    with pytest.raises(RenderError, match="does not parse as JSON"):
        check_rendered("web", spec, b"")
