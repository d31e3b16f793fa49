"""A new value for a key on one line is spliced in without parsing the file again: the document
that gives must be exactly the one a full parse of the new text gives, for any value and any key
of a real file (Gitea's 3,000-line app.ini) and on every kind of option line."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apphub.store import inidoc
from apphub.store.inidoc import IniDocument, SetValue
from tests.conftest import FIXTURES

GITEA = (FIXTURES / "gitea-v1.26.3-app.example.ini").read_text(encoding="utf-8")

# Values an INI line can hold (no line breaks; blanks at either end are refused by validation
# before an edit, and are among the cases that must not take the fast path silently).
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)


def full_parse(document: IniDocument) -> IniDocument:
    return IniDocument(document.text, document.source, top_level=document.top_level)


def assert_same_document(spliced: IniDocument, parsed: IniDocument) -> None:
    assert spliced.text == parsed.text
    assert spliced.sections() == parsed.sections()
    assert spliced.as_dict() == parsed.as_dict()
    for section in parsed.sections():
        assert spliced.line_of(section) == parsed.line_of(section)
        for key, _ in parsed.items(section):
            assert spliced.line_of(section, key) == parsed.line_of(section, key), (section, key)


def one_line_keys(document: IniDocument) -> list[tuple[str, str]]:
    found = []
    for section in document.sections():
        for key, _ in document.items(section):
            line = document.line_of(section, key)
            assert line is not None
            following = document._lines[line] if line < len(document._lines) else ""
            if not following[:1].isspace() or not following.strip():
                found.append((section, key))
    return found


GITEA_DOCUMENT = IniDocument(GITEA, "app.ini", top_level=True)
GITEA_KEYS = one_line_keys(GITEA_DOCUMENT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GITEA_KEYS), values)
def test_a_value_spliced_into_gitea_app_ini_reads_as_a_full_parse_does(place: tuple[str, str], value: str) -> None:
    section, key = place
    try:
        spliced = GITEA_DOCUMENT.with_edits([SetValue(section, key, value)])
    except ValueError:
        assert value != value.strip(), "only blanks at either end may be refused"
        return
    assert spliced.get(section, key) == value
    assert_same_document(spliced, full_parse(spliced))


@pytest.mark.parametrize("value", ["", "x", "a = b", "[not a section]", "# not a comment", "; nor this",
                                   "key: colon", "ünïcødé ✓", "trailing\\", "%(interpolation)s"])
def test_awkward_values_on_each_kind_of_line(value: str) -> None:
    text = "top = 1\n[s]\nspaced = old\ntight=old\ncolon: old\n  indented = old\nlast = old"
    document = IniDocument(text, "t.ini", top_level=True)
    for section, key in [("", "top"), ("s", "spaced"), ("s", "tight"), ("s", "colon"), ("s", "indented"),
                         ("s", "last")]:
        spliced = document.with_edits([SetValue(section, key, value)])
        assert spliced.get(section, key) == value
        assert_same_document(spliced, full_parse(spliced))


def test_a_key_with_continuation_lines_is_parsed_again_not_spliced() -> None:
    document = IniDocument("[s]\nmulti = one\n  two\nnext = x\n", "t.ini")
    spliced = document.with_edits([SetValue("s", "multi", "single")])
    assert spliced.text == "[s]\nmulti = single\nnext = x\n"
    assert_same_document(spliced, full_parse(spliced))


def test_the_common_edit_does_not_parse_the_text_again(monkeypatch: pytest.MonkeyPatch) -> None:
    document = IniDocument("[s]\nkey = old\nother = x\n", "t.ini")

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(inidoc, "_index", no_parse)
    assert document.with_edits([SetValue("s", "key", "new")]).text == "[s]\nkey = new\nother = x\n"
    with pytest.raises(AssertionError, match="parsed again"):  # a new key is not a splice
        document.with_edits([SetValue("s", "added", "x")])
