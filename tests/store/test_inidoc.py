"""IniDocument: parsing real-world INI files and editing them without touching any other byte."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphub.errors import IniParseError
from apphub.store.inidoc import DeleteKey, IniDocument, SetValue
from tests.conftest import FIXTURES

GITEA = FIXTURES / "gitea-v1.26.3-app.example.ini"


def iter_values(document: IniDocument) -> Iterator[tuple[str, str, str]]:
    for section in document.sections():
        for key, value in document.items(section):
            yield section, key, value

# What Cockpit's /etc/cockpit/cockpit.conf looks like on a Websoft9 host: `k = v` and `k=v` mixed,
# fnmatch escapes in Origins, a comment between sections.
COCKPIT_CONF = (
    "[WebService]\n"
    "Origins = https://172.17.0.1:9000 http://172.17.0.1:9000 https://\\[::1\\]:9090\n"
    "ProtocolHeader = X-Forwarded-Proto\n"
    "AllowUnencrypted=true\n"
    "\n"
    "# Log out idle sessions after 15 minutes\n"
    "[Session]\n"
    "IdleTimeout=15\n"
    "Banner=/etc/cockpit/issue.cockpit\n"
)

# Websoft9's config.ini as its configparser writes it (reference/websoft9-apphub.md §2.1):
# `key = value`, `key = ` for an empty value, a blank line after every section, ending in "\n\n".
WEBSOFT9_CONFIG = (
    "[nginx_proxy_manager]\n"
    "base_url = http://websoft9-proxy:81/api\n"
    "user_name = admin@mydomain.com\n"
    "user_pwd = hJUGWrlDgqmGglr0\n"
    "nike_name = admin\n"
    "listen_port = 9000\n"
    "docker0_ip = 172.17.0.1\n"
    "ssl_cert = /data/custom_ssl/websoft9-self-signed.cert\n"
    "ssl_key = /data/custom_ssl/websoft9-self-signed.key\n"
    "\n"
    "[gitea]\n"
    "base_url = http://websoft9-git:3000/api/v1\n"
    "user_name = websoft9\n"
    "user_email = admin@mydomain.com\n"
    "user_pwd = JGFceAxAmjrx\n"
    "\n"
    "[portainer]\n"
    "base_url = http://websoft9-deployment:9000/api\n"
    "user_name = admin\n"
    "user_pwd = R@9)qn)t9hJW\n"
    "\n"
    "[api_key]\n"
    "key = 9e66918137d882c6ebdc1eccb0866e25172c5f8fa2101458a8ce9b044e4c7e5e\n"
    "\n"
    "[docker_mirror]\n"
    "url = https://artifact.websoft9.com/release/websoft9/mirrors.json\n"
    "\n"
    "[domain]\n"
    "wildcard_domain = \n"
    "\n"
    "[cockpit]\n"
    "port = 9090\n"
    "\n"
    "[initial_apps]\n"
    "keys = \n"
    "\n"
    "[favorite_apps]\n"
    "keys = \n"
    "\n"
)


def hunks(before: str, after: str) -> list[tuple[list[str], list[str]]]:
    """The changed runs of lines, as (removed, added); line ends (\\r) stay part of the lines."""
    old, new = before.split("\n"), after.split("\n")
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [(old[i1:i2], new[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


@pytest.fixture(scope="module")
def gitea_text() -> str:
    return GITEA.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gitea_with_percent(gitea_text: str) -> str:
    """Gitea's example with two `%` values switched on (they are commented out in the original)."""
    text = gitea_text.replace(
        ";DIFF_RENAME_SIMILARITY_THRESHOLD = 50%", "DIFF_RENAME_SIMILARITY_THRESHOLD = 50%", 1
    ).replace(";ROOT_URL =\n", ";ROOT_URL =\nROOT_URL = %(PROTOCOL)s://%(DOMAIN)s:%(HTTP_PORT)s/\n", 1)
    assert text.count("\n") == gitea_text.count("\n") + 1
    return text


# -- reading -----------------------------------------------------------------------------------


def test_gitea_example_parses_with_its_sections_keys_and_upper_case(gitea_text: str) -> None:
    document = IniDocument(gitea_text, "app.example.ini")

    assert document.sections() == ["server", "database", "security", "camo", "oauth2", "log", "git", "service"]
    assert document.items("database") == [
        ("DB_TYPE", "mysql"),
        ("HOST", "127.0.0.1:3306 ; can use socket e.g. /var/run/mysqld/mysqld.sock"),
        ("NAME", "gitea"),
        ("USER", "root"),
    ]
    assert document.get("security", "SECRET_KEY") == ""
    assert document.get("database", "host") is None  # keys are case-sensitive
    assert document.line_of("database") == 350
    assert document.line_of("database", "HOST") == 361
    assert GITEA.read_text(encoding="utf-8").splitlines()[360].startswith("HOST = 127.0.0.1:3306")


def test_percent_signs_are_read_as_written_without_interpolation(gitea_with_percent: str) -> None:
    document = IniDocument(gitea_with_percent)

    assert document.get("git", "DIFF_RENAME_SIMILARITY_THRESHOLD") == "50%"
    assert document.get("server", "ROOT_URL") == "%(PROTOCOL)s://%(DOMAIN)s:%(HTTP_PORT)s/"


def test_no_edits_and_same_value_edits_give_the_identical_text(gitea_text: str) -> None:
    document = IniDocument(gitea_text)

    assert document.with_edits([]).text == gitea_text
    same = [SetValue(section, key, value) for section, key, value in iter_values(document)]
    assert len(same) == 10
    assert document.with_edits(same).text == gitea_text


# -- setting existing keys ---------------------------------------------------------------------


def test_setting_each_gitea_key_changes_only_that_line(gitea_text: str) -> None:
    document = IniDocument(gitea_text)
    lines = gitea_text.split("\n")

    for section, key, _ in list(iter_values(document)):
        line = document.line_of(section, key)
        assert line is not None
        edited = document.with_edits([SetValue(section, key, "changed-value")])
        assert hunks(gitea_text, edited.text) == [([lines[line - 1]], [f"{key} = changed-value"])], (section, key)
        assert edited.get(section, key) == "changed-value"


def test_inline_comment_text_is_part_of_the_value_and_kept_when_another_key_changes(gitea_text: str) -> None:
    document = IniDocument(gitea_text)

    other = document.with_edits([SetValue("database", "NAME", "forge")])
    host_line = "HOST = 127.0.0.1:3306 ; can use socket e.g. /var/run/mysqld/mysqld.sock"
    assert host_line in other.text.split("\n")
    assert hunks(gitea_text, other.text) == [(["NAME = gitea"], ["NAME = forge"])]

    host = document.with_edits([SetValue("database", "HOST", "websoft9-mysql:3306")])
    assert hunks(gitea_text, host.text) == [([host_line], ["HOST = websoft9-mysql:3306"])]


def test_percent_values_can_be_changed_and_the_rest_stays(gitea_with_percent: str) -> None:
    document = IniDocument(gitea_with_percent)

    edited = document.with_edits([SetValue("git", "DIFF_RENAME_SIMILARITY_THRESHOLD", "60%")])

    assert hunks(gitea_with_percent, edited.text) == [
        (["DIFF_RENAME_SIMILARITY_THRESHOLD = 50%"], ["DIFF_RENAME_SIMILARITY_THRESHOLD = 60%"])
    ]
    assert edited.get("server", "ROOT_URL") == "%(PROTOCOL)s://%(DOMAIN)s:%(HTTP_PORT)s/"


@pytest.mark.parametrize(
    ("line", "value", "expected"),
    [
        ("k=v", "new", "k=new"),
        ("k = v", "new", "k = new"),
        ("k   =   v", "new", "k   =   new"),
        ("k\t=\tv", "new", "k\t=\tnew"),
        ("k: v", "new", "k: new"),
        ("k=", "new", "k=new"),
        ("k =", "new", "k = new"),
        ("k = ", "new", "k = new"),
        ("k=v", "", "k="),
        ("k = v", "a = b ; c", "k = a = b ; c"),
    ],
)
def test_spacing_around_the_delimiter_is_kept_on_the_changed_line(line: str, value: str, expected: str) -> None:
    text = f"# head\n[s]\n{line}\nother = 1\n"

    edited = IniDocument(text).with_edits([SetValue("s", "k", value)])

    assert edited.text == f"# head\n[s]\n{expected}\nother = 1\n"
    assert edited.get("s", "k") == value


def test_setting_a_value_and_back_restores_the_websoft9_file_byte_for_byte() -> None:
    document = IniDocument(WEBSOFT9_CONFIG)

    changed = document.with_edits([SetValue("domain", "wildcard_domain", "apps.example.com")])
    assert hunks(WEBSOFT9_CONFIG, changed.text) == [(["wildcard_domain = "], ["wildcard_domain = apps.example.com"])]

    restored = changed.with_edits([SetValue("domain", "wildcard_domain", "")])
    assert restored.text == WEBSOFT9_CONFIG


def test_cockpit_origins_change_keeps_the_escapes_and_the_other_lines() -> None:
    document = IniDocument(COCKPIT_CONF, "cockpit.conf")
    origins = "https://10.0.0.1:9000 http://10.0.0.1:9000 https://\\[::1\\]:9090"

    edited = document.with_edits([SetValue("WebService", "Origins", origins)])

    assert edited.get("WebService", "Origins") == origins
    assert hunks(COCKPIT_CONF, edited.text) == [
        (
            ["Origins = https://172.17.0.1:9000 http://172.17.0.1:9000 https://\\[::1\\]:9090"],
            [f"Origins = {origins}"],
        )
    ]


# -- adding keys and sections ------------------------------------------------------------------


def test_a_new_key_goes_right_after_the_last_key_of_its_section(gitea_text: str) -> None:
    document = IniDocument(gitea_text)

    edited = document.with_edits([SetValue("database", "PASSWD", "s3cret")])

    assert hunks(gitea_text, edited.text) == [([], ["PASSWD = s3cret"])]
    assert edited.line_of("database", "PASSWD") == 364
    assert edited.text.split("\n")[362:365] == ["USER = root", "PASSWD = s3cret", gitea_text.split("\n")[363]]
    assert gitea_text.split("\n")[363].startswith(";PASSWD =")
    assert [key for key, _ in edited.items("database")] == ["DB_TYPE", "HOST", "NAME", "USER", "PASSWD"]


def test_a_new_key_follows_the_spacing_of_the_last_key_and_precedes_a_comment_block() -> None:
    document = IniDocument(COCKPIT_CONF)

    edited = document.with_edits([SetValue("WebService", "LoginTitle", "Websoft9")])

    expected = COCKPIT_CONF.replace("AllowUnencrypted=true\n", "AllowUnencrypted=true\nLoginTitle=Websoft9\n")
    assert edited.text == expected


def test_a_new_key_in_a_section_without_keys_goes_under_its_header() -> None:
    text = "[a]\n# nothing here yet\n\n[b]\nx = 1\n"

    edited = IniDocument(text).with_edits([SetValue("a", "k", "v")])

    assert edited.text == "[a]\nk = v\n# nothing here yet\n\n[b]\nx = 1\n"


def test_a_new_section_is_appended_after_a_blank_line(gitea_text: str) -> None:
    edited = IniDocument(gitea_text).with_edits([SetValue("mailer", "ENABLED", "true")])

    assert edited.text.startswith(gitea_text)
    tail = edited.text[len(gitea_text) :]
    expected_tail = "[mailer]\nENABLED = true\n" if gitea_text.endswith("\n\n") else "\n[mailer]\nENABLED = true\n"
    assert tail == expected_tail
    assert edited.sections()[-1] == "mailer"


def test_a_new_section_after_the_websoft9_trailing_blank_line_adds_no_second_blank() -> None:
    edited = IniDocument(WEBSOFT9_CONFIG).with_edits([SetValue("platform_brand", "title", "Websoft9")])

    assert edited.text == WEBSOFT9_CONFIG + "[platform_brand]\ntitle = Websoft9\n"


# -- deleting ----------------------------------------------------------------------------------


def test_deleting_a_key_removes_only_its_line(gitea_text: str) -> None:
    edited = IniDocument(gitea_text).with_edits([DeleteKey("database", "HOST")])

    assert hunks(gitea_text, edited.text) == [
        (["HOST = 127.0.0.1:3306 ; can use socket e.g. /var/run/mysqld/mysqld.sock"], [])
    ]
    assert not edited.has_key("database", "HOST")


def test_deleting_a_missing_key_or_section_changes_nothing() -> None:
    document = IniDocument(COCKPIT_CONF)

    assert document.with_edits([DeleteKey("Session", "Nope")]).text == COCKPIT_CONF
    assert document.with_edits([DeleteKey("Nope", "Nope")]).text == COCKPIT_CONF


def test_edits_apply_in_order_and_leave_the_original_document_unchanged() -> None:
    document = IniDocument(COCKPIT_CONF)

    edited = document.with_edits(
        [SetValue("Session", "IdleTimeout", "30"), DeleteKey("Session", "Banner"), SetValue("Session", "Banner", "/x")]
    )

    assert document.text == COCKPIT_CONF
    assert document.get("Session", "IdleTimeout") == "15"
    assert edited.text.endswith("[Session]\nIdleTimeout=30\nBanner=/x\n")


# -- line ends ---------------------------------------------------------------------------------


def test_crlf_line_ends_are_kept_on_set_add_delete_and_new_section() -> None:
    text = COCKPIT_CONF.replace("\n", "\r\n")
    document = IniDocument(text)

    edited = document.with_edits(
        [
            SetValue("WebService", "ProtocolHeader", "X-Real-Proto"),
            SetValue("WebService", "LoginTitle", "Websoft9"),
            DeleteKey("Session", "Banner"),
            SetValue("Log", "Fatal", "criticals"),
        ]
    )

    assert "\n" not in edited.text.replace("\r\n", "")
    assert edited.text == (
        "[WebService]\r\n"
        "Origins = https://172.17.0.1:9000 http://172.17.0.1:9000 https://\\[::1\\]:9090\r\n"
        "ProtocolHeader = X-Real-Proto\r\n"
        "AllowUnencrypted=true\r\n"
        "LoginTitle=Websoft9\r\n"
        "\r\n"
        "# Log out idle sessions after 15 minutes\r\n"
        "[Session]\r\n"
        "IdleTimeout=15\r\n"
        "\r\n"
        "[Log]\r\n"
        "Fatal = criticals\r\n"
    )
    assert edited.get("WebService", "ProtocolHeader") == "X-Real-Proto"


def test_a_file_without_a_final_newline() -> None:
    text = "[a]\nx = 1\n\n[b]\ny = 2"
    document = IniDocument(text)

    assert document.get("b", "y") == "2"
    assert document.with_edits([SetValue("b", "y", "3")]).text == "[a]\nx = 1\n\n[b]\ny = 3"
    assert document.with_edits([SetValue("a", "x", "9")]).text == "[a]\nx = 9\n\n[b]\ny = 2"
    assert document.with_edits([SetValue("b", "z", "4")]).text == "[a]\nx = 1\n\n[b]\ny = 2\nz = 4\n"
    assert document.with_edits([SetValue("c", "z", "4")]).text == "[a]\nx = 1\n\n[b]\ny = 2\n\n[c]\nz = 4\n"
    assert document.with_edits([DeleteKey("b", "y")]).text == "[a]\nx = 1\n\n[b]\n"


# -- key case ----------------------------------------------------------------------------------


def test_key_case_is_kept_and_keys_differing_in_case_are_different_keys() -> None:
    text = "[s]\nPort = 1\nport = 2\n"
    document = IniDocument(text)

    assert document.items("s") == [("Port", "1"), ("port", "2")]
    assert document.with_edits([SetValue("s", "Port", "10")]).text == "[s]\nPort = 10\nport = 2\n"
    assert document.with_edits([DeleteKey("s", "port")]).text == "[s]\nPort = 1\n"
    added = IniDocument("[s]\nPort = 1\n").with_edits([SetValue("s", "PORT", "3")])
    assert added.text == "[s]\nPort = 1\nPORT = 3\n"


# -- continuation values -----------------------------------------------------------------------


MULTILINE = "[s]\nbanner = first line\n  second line\n  third line\nafter = 1\n\n[t]\nx = 1\n"


def test_a_continuation_value_reads_as_lines_joined_by_newlines() -> None:
    document = IniDocument(MULTILINE)

    assert document.get("s", "banner") == "first line\nsecond line\nthird line"
    assert document.line_of("s", "after") == 5


def test_setting_a_continuation_value_replaces_all_its_lines() -> None:
    edited = IniDocument(MULTILINE).with_edits([SetValue("s", "banner", "one line")])

    assert edited.text == "[s]\nbanner = one line\nafter = 1\n\n[t]\nx = 1\n"


def test_deleting_a_continuation_value_removes_all_its_lines() -> None:
    edited = IniDocument(MULTILINE).with_edits([DeleteKey("s", "banner")])

    assert edited.text == "[s]\nafter = 1\n\n[t]\nx = 1\n"


def test_a_key_added_after_a_continuation_value_goes_below_its_last_line() -> None:
    text = "[s]\nbanner = first\n  second\n\n[t]\nx = 1\n"

    edited = IniDocument(text).with_edits([SetValue("s", "k", "v")])

    assert edited.text == "[s]\nbanner = first\n  second\nk = v\n\n[t]\nx = 1\n"


# -- values INI cannot hold --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["two\nlines", "carriage\rreturn", "new\r\nline"])
def test_a_line_break_in_a_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        IniDocument(COCKPIT_CONF).with_edits([SetValue("Session", "Banner", value)])


@pytest.mark.parametrize("value", [" leading", "trailing "])
def test_a_value_that_would_not_read_back_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="read back"):
        IniDocument(COCKPIT_CONF).with_edits([SetValue("Session", "Banner", value)])


# -- characters that Python counts as line breaks but INI parsing does not ----------------------


def test_a_form_feed_in_a_comment_does_not_shift_edits_to_the_wrong_line() -> None:
    # Page breaks (^L) in comments are common in hand-maintained files; configparser reads them as
    # part of the comment line.
    text = "[a]\n# ---- page two \x0c\nz = 2\nw = 3\n"
    document = IniDocument(text)
    assert document.as_dict() == {"a": {"z": "2", "w": "3"}}

    assert document.with_edits([SetValue("a", "z", "20")]).text == "[a]\n# ---- page two \x0c\nz = 20\nw = 3\n"
    assert document.with_edits([DeleteKey("a", "z")]).text == "[a]\n# ---- page two \x0c\nw = 3\n"
    assert document.with_edits([SetValue("a", "n", "1")]).text == "[a]\n# ---- page two \x0c\nz = 2\nw = 3\nn = 1\n"


def test_a_unicode_line_separator_in_a_value_does_not_break_edits_of_later_keys() -> None:
    text = "[a]\nmotto = one\u2028two\nz = 2\n"
    document = IniDocument(text)
    assert document.get("a", "motto") == "one\u2028two"

    assert document.with_edits([SetValue("a", "z", "3")]).text == "[a]\nmotto = one\u2028two\nz = 3\n"
    assert document.with_edits([DeleteKey("a", "z")]).text == "[a]\nmotto = one\u2028two\n"


# -- parse errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[a]\nk = 1\n\n[b]\nx = 1\n[a]\ny = 2\n", 6, ["[a]", "twice"]),
        ("[a]\nk = 1\nother = 2\nk = 3\n", 4, ["'k'", "twice", "[a]"]),
        ("# header comment\nk = 1\n[a]\n", 2, ["before any [section]", "k = 1"]),
        ("[a]\nk = 1\nthis is not a setting\n", 3, ["neither", "this is not a setting"]),
    ],
    ids=["duplicate-section", "duplicate-key", "key-before-section", "junk-line"],
)
def test_parse_errors_name_the_source_and_the_line(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(IniParseError) as caught:
        IniDocument(text, "config.ini")

    error = caught.value
    assert error.source == "config.ini"
    assert error.line == line
    assert str(error).startswith(f"config.ini:{line}: ")
    for word in words:  # the quoted line is in the full message, never in what the API shows
        assert word in str(error)


def test_a_junk_line_is_quoted_once_without_escapes() -> None:
    with pytest.raises(IniParseError) as caught:
        IniDocument("[a]\nk = 1\njunk line\n", "config.ini")

    assert str(caught.value).endswith(": 'junk line'"), str(caught.value)
    assert caught.value.excerpt == "junk line"
    assert "junk" not in caught.value.public  # what the API shows never quotes the line


def test_parse_errors_in_a_crlf_file_name_the_right_line() -> None:
    with pytest.raises(IniParseError) as caught:
        IniDocument("[a]\r\nk = 1\r\n\r\nk = 2\r\n", "x.ini")

    assert caught.value.line == 4


def test_a_gitea_file_with_a_duplicated_section_fails_at_the_second_header(tmp_path: Path, gitea_text: str) -> None:
    broken = gitea_text + "\n[database]\nDB_TYPE = sqlite3\n"
    line = broken.count("\n", 0, broken.index("\n[database]\nDB_TYPE = sqlite3")) + 2

    with pytest.raises(IniParseError) as caught:
        IniDocument(broken, "app.ini")

    assert caught.value.line == line
