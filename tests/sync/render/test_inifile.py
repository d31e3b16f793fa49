"""INI merge and replace: Gitea's app.ini and Cockpit's cockpit.conf keep every byte apphub does not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from apphub.errors import RenderError
from apphub.sync.manifest import FileSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.values import Values
from tests.sync.render.conftest import ADMIN_PASSWORD, GITEA_TEMPLATE

APP_INI = "/data/gitea/conf/app.ini"

# Cockpit's /etc/cockpit/cockpit.conf as a Websoft9 host has it: mixed `k = v` and `k=v`, fnmatch
# escapes in Origins, a comment between sections (cockpit.conf(5), shared/reference).
COCKPIT_CONF = (
    "[WebService]\n"
    "Origins = https://172.17.0.1:9000 http://172.17.0.1:9000 https://\\[::1\\]:9090\n"
    "ProtocolHeader = X-Forwarded-Proto\n"
    "AllowUnencrypted=true\n"
    "\n"
    "# Log out idle sessions after 15 minutes\n"
    "[Session]\n"
    "IdleTimeout=15\n"
)


def ini(mapping: dict[str, str], mode: str = "merge", path: str = APP_INI) -> FileSpec:
    return FileSpec(path=path, format="ini", mode=mode, map=mapping)  # type: ignore[arg-type]


def swap_line(text: str, old: str, new: str) -> str:
    """`text` with the one whole line `old` replaced by `new` (fails the test if it is not there once)."""
    lines = text.splitlines(keepends=True)
    matches = [index for index, line in enumerate(lines) if line.rstrip("\r\n") == old]
    assert len(matches) == 1, f"{old!r} found {len(matches)} times"
    ending = lines[matches[0]][len(old):]
    lines[matches[0]] = new + ending
    return "".join(lines)


def test_gitea_root_url_and_domain_change_and_every_other_byte_stays(values: Values, templates: Path) -> None:
    original = GITEA_TEMPLATE.read_bytes()
    spec = ini({"server.ROOT_URL": "${web.root_url}", "server.DOMAIN": "${web.domain}"})

    rendered = render_file("gitea", spec, values, original, templates).decode()

    expected = swap_line(original.decode(), "ROOT_URL         = $ROOT_URL", "ROOT_URL         = https://git.example.com/")
    expected = swap_line(expected, "DOMAIN           = $DOMAIN", "DOMAIN           = git.example.com")
    assert rendered == expected
    assert ("web", "root_url") in values.read
    assert ("web", "domain") in values.read


def test_gitea_top_level_and_dotted_section_keys(values: Values, templates: Path) -> None:
    original = GITEA_TEMPLATE.read_text()
    spec = ini({"APP_NAME": "${web.title}", "repository.local.LOCAL_COPY_PATH": "/srv/${web.domain}/tmp"})

    rendered = render_file("gitea", spec, values, original.encode(), templates).decode()

    expected = swap_line(original, "APP_NAME = $APP_NAME", "APP_NAME = Demo site")
    expected = swap_line(expected, "LOCAL_COPY_PATH = /data/gitea/tmp/local-repo",
                         "LOCAL_COPY_PATH = /srv/git.example.com/tmp")
    assert rendered == expected


def test_new_keys_join_their_section_or_the_top_and_a_new_section_goes_last(values: Values, templates: Path) -> None:
    original = GITEA_TEMPLATE.read_text()
    spec = ini({"server.HTTP_ADDR": "0.0.0.0", "WORK_PATH": "/data/gitea", "cron.ENABLED": "${web.debug}"})

    rendered = render_file("gitea", spec, values, original.encode(), templates).decode()

    expected = original.replace("RUN_MODE = $RUN_MODE\n", "RUN_MODE = $RUN_MODE\nWORK_PATH = /data/gitea\n")
    expected = expected.replace("LFS_START_SERVER = $LFS_START_SERVER\n",
                                "LFS_START_SERVER = $LFS_START_SERVER\nHTTP_ADDR = 0.0.0.0\n")
    expected += "\n[cron]\nENABLED = true\n"
    assert rendered == expected


def test_cockpit_origins_change_keeps_case_escapes_spacing_and_comments(values: Values, templates: Path) -> None:
    spec = ini({"WebService.Origins": "${web.origins} https://\\[::1\\]:9090"}, path="/etc/cockpit/cockpit.conf")

    rendered = render_file("cockpit", spec, values, COCKPIT_CONF.encode(), templates).decode()

    assert rendered == swap_line(
        COCKPIT_CONF,
        "Origins = https://172.17.0.1:9000 http://172.17.0.1:9000 https://\\[::1\\]:9090",
        "Origins = https://172.17.0.1:9000 https://\\[::1\\]:9090",
    )


def test_cockpit_conf_that_does_not_exist_yet_is_created_with_the_names_as_written(
    values: Values, templates: Path
) -> None:
    spec = ini({"WebService.Origins": "${web.origins}", "WebService.ProtocolHeader": "X-Forwarded-Proto"},
               path="/etc/cockpit/cockpit.conf")

    rendered = render_file("cockpit", spec, values, None, templates)

    assert rendered == b"[WebService]\nOrigins = https://172.17.0.1:9000\nProtocolHeader = X-Forwarded-Proto\n"


def test_names_match_case_exactly_so_a_lower_case_key_is_a_different_key(values: Values, templates: Path) -> None:
    # Gitea's go-ini is case-sensitive: `root_url` is not `ROOT_URL` and must not be edited for it.
    current = b"[server]\nroot_url = http://old/\n"

    rendered = render_file("gitea", ini({"server.ROOT_URL": "${web.root_url}"}), values, current, templates)

    assert rendered == b"[server]\nroot_url = http://old/\nROOT_URL = https://git.example.com/\n"


def test_crlf_line_ends_are_kept_and_used_for_added_lines(values: Values, templates: Path) -> None:
    current = b"APP_NAME = Gitea\r\n\r\n[server]\r\nDOMAIN = old.example.com\r\n"
    spec = ini({"server.DOMAIN": "${web.domain}", "server.HTTP_PORT": "${web.port}"})

    rendered = render_file("gitea", spec, values, current, templates)

    assert rendered == b"APP_NAME = Gitea\r\n\r\n[server]\r\nDOMAIN = git.example.com\r\nHTTP_PORT = 8443\r\n"


def test_replace_writes_only_the_mapped_keys_top_level_first_then_sections_in_map_order(
    values: Values, templates: Path
) -> None:
    spec = ini({"server.HTTP_PORT": "${web.port}", "RUN_MODE": "prod", "server.DOMAIN": "${web.domain}",
                "ui.THEMES": "${web.hosts}"}, mode="replace")

    rendered = render_file("gitea", spec, values, GITEA_TEMPLATE.read_bytes(), templates)

    assert rendered.decode() == (
        "RUN_MODE = prod\n"
        "\n"
        "[server]\n"
        "HTTP_PORT = 8443\n"
        "DOMAIN = git.example.com\n"
        "\n"
        "[ui]\n"
        "THEMES = web.example.com,www.example.com\n"
    )


def test_a_secret_is_written_in_plaintext(values: Values, templates: Path) -> None:
    spec = ini({"security.SECRET_KEY": "${web.admin_password}"})

    rendered = render_file("gitea", spec, values, GITEA_TEMPLATE.read_bytes(), templates).decode()

    assert f"SECRET_KEY   = {ADMIN_PASSWORD}\n" in rendered
    check_rendered("gitea", spec, rendered.encode())


def test_a_current_file_that_does_not_parse_is_refused_without_quoting_the_line(
    values: Values, templates: Path
) -> None:
    current = b"[security]\nINSTALL_LOCK = true\nthis line holds hunter2-secret and no equals sign\n"

    with pytest.raises(RenderError) as caught:
        render_file("gitea", ini({"server.DOMAIN": "${web.domain}"}), values, current, templates)

    message = str(caught.value)
    assert message.startswith(f"service gitea, file {APP_INI}: ")
    assert ":3:" in message
    assert "hunter2" not in message


def test_a_value_with_a_line_break_cannot_be_written_and_the_error_names_the_key_not_the_value(
    core_values_with_env: Values, templates: Path
) -> None:
    spec = ini({"server.DOMAIN": "${env:MULTILINE}"})

    with pytest.raises(RenderError) as caught:
        render_file("gitea", spec, core_values_with_env, GITEA_TEMPLATE.read_bytes(), templates)

    assert "'server.DOMAIN'" in str(caught.value)
    assert "line break" in str(caught.value)
    assert "first" not in str(caught.value)


@pytest.mark.parametrize("target", ["server.", ".KEY", "a..b."])
def test_a_map_key_that_names_no_key_is_refused(values: Values, templates: Path, target: str) -> None:
    with pytest.raises(RenderError, match=r"an INI target is `section\.KEY`"):
        render_file("gitea", ini({target: "x"}), values, None, templates)


def test_check_accepts_top_level_keys_and_refuses_broken_ini() -> None:
    spec = ini({"server.DOMAIN": "x"})
    check_rendered("gitea", spec, GITEA_TEMPLATE.read_bytes())

    with pytest.raises(RenderError) as caught:
        check_rendered("gitea", spec, b"[server]\nDOMAIN = a\nDOMAIN = b\n")
    assert str(caught.value) == (f"service gitea, file {APP_INI}: ini: does not parse as INI: "
                                 f"{APP_INI}:3: key 'DOMAIN' appears twice in section [server]")


@pytest.fixture
def core_values_with_env(values: Values) -> Values:
    return Values(values.snapshot, environ={"MULTILINE": "first\nsecond"})
