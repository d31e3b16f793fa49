"""`.env` merge and replace: comments and other lines kept, values quoted the way docker compose reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.render.envfile import quote, read
from apphub.sync.values import Values

PATH = "/srv/web/.env"

# A compose project's .env as people write them: comments, blank lines, `export`, an inline
# comment, a quoted value, a multi-line double-quoted value, a variable apphub does not map.
DOT_ENV = """\
# Demo web service
COMPOSE_PROJECT_NAME=demo

# ports
APP_PORT=80 # the host port
export APP_TITLE="Old title"
APP_CERT="-----BEGIN CERTIFICATE-----
MIIB...
-----END CERTIFICATE-----"
TZ=UTC
"""


def env_spec(mapping: dict[str, str], mode: str = "merge") -> FileSpec:
    # The format is given: `.env` has no suffix to PurePosixPath, so the manifest cannot infer it.
    return FileSpec(path=PATH, format="env", mode=mode, map=mapping)  # type: ignore[arg-type]


def test_merge_replaces_values_in_place_and_keeps_every_other_line(values: Values, templates: Path) -> None:
    spec = env_spec({"APP_PORT": "${web.port}", "APP_TITLE": "${web.title}", "APP_CERT": "none",
                     "APP_DEBUG": "${web.debug}", "APP_HOSTS": "${web.hosts}"})

    rendered = render_file("web", spec, values, DOT_ENV.encode(), templates).decode()

    assert rendered == """\
# Demo web service
COMPOSE_PROJECT_NAME=demo

# ports
APP_PORT=8443 # the host port
export APP_TITLE='Demo site'
APP_CERT=none
TZ=UTC
APP_DEBUG=true
APP_HOSTS=web.example.com,www.example.com
"""


def test_every_assignment_of_a_variable_is_replaced(values: Values, templates: Path) -> None:
    current = b"APP_PORT=80\nOTHER=1\nAPP_PORT = 81\n"

    rendered = render_file("web", env_spec({"APP_PORT": "${web.port}"}), values, current, templates)

    assert rendered == b"APP_PORT=8443\nOTHER=1\nAPP_PORT = 8443\n"


def test_an_empty_value_with_an_inline_comment_keeps_the_comment(values: Values, templates: Path) -> None:
    rendered = render_file("web", env_spec({"APP_PORT": "${web.port}"}), values, b"APP_PORT= # set me\n", templates)

    assert rendered == b"APP_PORT=8443 # set me\n"


def test_crlf_and_a_missing_final_newline(values: Values, templates: Path) -> None:
    rendered = render_file("web", env_spec({"APP_PORT": "${web.port}", "NEW": "x"}), values,
                           b"# c\r\nAPP_PORT=80\r\nTZ=UTC", templates)

    assert rendered == b"# c\r\nAPP_PORT=8443\r\nTZ=UTC\r\nNEW=x\r\n"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("", ""),
        ("https://example.com/a?b=c&d=e", "https://example.com/a?b=c&d=e"),
        ("C:\\path\\", "C:\\path\\"),  # a backslash is literal in an unquoted value
        ("two words", "'two words'"),
        ("a#b", "'a#b'"),  # an unquoted `#` after a blank starts a comment; quote any `#`
        ("pa$word", "'pa$word'"),  # single quotes: no interpolation
        ("${HOME}", "'${HOME}'"),
        ('say "hi"', "'say \"hi\"'"),
        ("let's go", '"let\'s go"'),
        ("it's $5 \\ \"ok\" now", '"it\'s \\$5 \\\\ \\"ok\\" now"'),
        ("line one\nline two", '"line one\\nline two"'),
    ],
)
def test_values_are_quoted_only_when_compose_needs_it(value: str, written: str) -> None:
    assert quote("NAME", value) == written


@pytest.mark.parametrize("value", ["it's a\\", "it's \"a\"", "line\nends \\", "two words\\"])
def test_a_value_ending_in_a_backslash_or_a_quote_reads_back_exactly(value: str) -> None:
    # compose-go's double quotes take \\ and \" escapes (dotenv/parser.go): such values were refused once.
    assert read(f"NAME={quote('NAME', value)}\n") == {"NAME": value}


def test_only_a_nul_is_refused_naming_the_variable_only() -> None:
    with pytest.raises(RenderError) as caught:
        quote("NAME", "se\x00cret")
    assert "NAME" in str(caught.value)
    assert "cret" not in str(caught.value)


def test_a_secret_is_written_quoted(values: Values, templates: Path) -> None:
    rendered = render_file("web", env_spec({"ADMIN_PASSWORD": "${web.admin_password}"}), values, None, templates)

    # pa$$ w0rd #'q"-Zx81: a `'` calls for double quotes, in which `$`, `"` and `\` are escaped.
    assert rendered == b'ADMIN_PASSWORD="pa\\$\\$ w0rd #\'q\\"-Zx81"\n'


def test_replace_holds_only_the_mapped_variables_in_map_order(values: Values, templates: Path) -> None:
    spec = env_spec({"B": "${web.port}", "A": "${web.title}"}, mode="replace")

    assert render_file("web", spec, values, DOT_ENV.encode(), templates) == b"B=8443\nA='Demo site'\n"


@pytest.mark.parametrize("name", ["1ST", "APP-PORT", "app.port", "A B"])
def test_a_map_key_that_is_not_a_variable_name_is_refused(values: Values, templates: Path, name: str) -> None:
    with pytest.raises(RenderError, match="an environment variable name is letters, digits and '_'"):
        render_file("web", env_spec({name: "x"}), values, None, templates)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A=1\nthis is not an assignment hunter2\n", "line 2: is neither NAME=VALUE, a comment nor blank"),
        ("A=1\n9X=2\n", "line 2: is neither NAME=VALUE, a comment nor blank"),
        ("A=1\nB=\"hunter2\nC=3\n", "line 2: the quoted value is never closed"),
    ],
)
def test_check_names_the_line_that_is_not_an_assignment(text: str, problem: str) -> None:
    with pytest.raises(RenderError) as caught:
        check_rendered("web", env_spec({"A": "x"}), text.encode())

    assert str(caught.value) == f"service web, file {PATH}: env: {problem}"


def test_check_accepts_comments_export_quotes_and_multi_line_values() -> None:
    check_rendered("web", env_spec({"A": "x"}), DOT_ENV.encode())
    check_rendered("web", env_spec({"A": "x"}), b"A='it\\'s' # comment\nB=\"a\\\"b\"\n\n  # indented comment\n")
