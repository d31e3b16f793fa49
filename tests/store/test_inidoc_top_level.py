"""IniDocument(top_level=True): keys before the first [section], as Gitea's app.ini has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from apphub.errors import IniParseError
from apphub.store.inidoc import TOP_LEVEL, DeleteKey, IniDocument, SetValue

# Gitea's Docker app.ini template (tests/sync/render/fixtures/README.md says where it is from).
FIXTURES = Path(__file__).resolve().parents[1] / "sync" / "render" / "fixtures"
GITEA_TEMPLATE = FIXTURES / "gitea-v1.26.3-docker-rootful-app.ini.template"


@pytest.fixture
def gitea_text() -> str:
    return GITEA_TEMPLATE.read_text(encoding="utf-8")


def test_keys_before_any_section_read_as_the_top_level_section(gitea_text: str) -> None:
    document = IniDocument(gitea_text, "app.ini", top_level=True)

    assert document.sections()[:3] == [TOP_LEVEL, "repository", "repository.local"]
    assert document.items(TOP_LEVEL) == [("APP_NAME", "$APP_NAME"), ("RUN_MODE", "$RUN_MODE")]
    assert document.get("server", "DOMAIN") == "$DOMAIN"
    assert document.line_of(TOP_LEVEL, "RUN_MODE") == 2
    assert document.line_of("server", "DOMAIN") == 15  # lines count from the file's first, not the hidden header
    assert document.line_of(TOP_LEVEL) is None  # the top level has no header line


def test_without_the_flag_the_same_file_is_refused_as_before(gitea_text: str) -> None:
    with pytest.raises(IniParseError) as caught:
        IniDocument(gitea_text, "app.ini")

    assert caught.value.line == 1
    assert "before any [section] header" in caught.value.message


def test_a_file_without_top_level_keys_has_an_empty_top_level_and_reads_as_without_the_flag() -> None:
    text = "; comment\n[server]\nDOMAIN = a\n"

    document = IniDocument(text, top_level=True)

    assert document.items(TOP_LEVEL) == []
    assert document.as_dict() == {TOP_LEVEL: {}, **IniDocument(text).as_dict()}
    assert document.line_of("server", "DOMAIN") == IniDocument(text).line_of("server", "DOMAIN") == 3


def test_setting_top_level_and_section_keys_changes_only_their_lines(gitea_text: str) -> None:
    document = IniDocument(gitea_text, "app.ini", top_level=True)

    edited = document.with_edits([SetValue(TOP_LEVEL, "APP_NAME", "Git for all"),
                                  SetValue("server", "DOMAIN", "git.example.com")])

    assert edited.text == gitea_text.replace("APP_NAME = $APP_NAME\n", "APP_NAME = Git for all\n").replace(
        "\nDOMAIN           = $DOMAIN\n", "\nDOMAIN           = git.example.com\n")
    assert edited.top_level
    assert edited.get(TOP_LEVEL, "APP_NAME") == "Git for all"
    assert document.text == gitea_text  # the original document is unchanged


def test_a_new_top_level_key_follows_the_last_one(gitea_text: str) -> None:
    edited = IniDocument(gitea_text, top_level=True).with_edits([SetValue(TOP_LEVEL, "WORK_PATH", "/data/gitea")])

    expected = gitea_text.replace("RUN_MODE = $RUN_MODE\n", "RUN_MODE = $RUN_MODE\nWORK_PATH = /data/gitea\n")
    assert edited.text == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "K = v\n", id="empty"),
        pytest.param("[s]\na=1\n", "K = v\n\n[s]\na=1\n", id="before-the-first-header"),
        pytest.param("; managed file\n\n[s]\na=1\n", "; managed file\n\nK = v\n\n[s]\na=1\n",
                     id="after-a-leading-comment"),
        pytest.param("A=1", "A=1\nK=v\n", id="no-final-newline-and-k=v-spacing"),
        pytest.param("A = 1\r\n[s]\r\nb = 2\r\n", "A = 1\r\nK = v\r\n[s]\r\nb = 2\r\n", id="crlf"),
        pytest.param("[s]\r\nb = 2\r\n", "K = v\r\n\r\n[s]\r\nb = 2\r\n", id="crlf-first-key"),
    ],
)
def test_where_a_new_top_level_key_goes(text: str, expected: str) -> None:
    edited = IniDocument(text, top_level=True).with_edits([SetValue(TOP_LEVEL, "K", "v")])

    assert edited.text == expected
    assert edited.get(TOP_LEVEL, "K") == "v"


def test_deleting_a_top_level_key_removes_only_its_line(gitea_text: str) -> None:
    edited = IniDocument(gitea_text, top_level=True).with_edits([DeleteKey(TOP_LEVEL, "RUN_MODE")])

    assert edited.text == gitea_text.replace("RUN_MODE = $RUN_MODE\n", "")


def test_a_top_level_key_without_the_flag_is_refused_rather_than_written_as_an_empty_header() -> None:
    with pytest.raises(ValueError, match="top_level=True"):
        IniDocument("[s]\na = 1\n").with_edits([SetValue(TOP_LEVEL, "K", "v")])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("A = 1\nA = 2\n[s]\n", 2, "key 'A' appears twice in the top level"),
        ("A = 1\n[s]\nb = 1\nb = 2\n", 4, "key 'b' appears twice in section [s]"),
        ("A = 1\n[s]\n[s]\n", 3, "section [s] appears twice"),
        ("A = 1\nnot a key line\n", 2, "this line is neither a [section], a key = value, nor a comment"),
    ],
)
def test_errors_name_the_line_of_the_file(text: str, line: int, message: str) -> None:
    with pytest.raises(IniParseError) as caught:
        IniDocument(text, "app.ini", top_level=True)

    assert (caught.value.line, caught.value.message) == (line, message)
    assert caught.value.public == f"app.ini:{line}: {message}"
