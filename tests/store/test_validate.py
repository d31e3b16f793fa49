"""Validation of values against the schema, JSON <-> INI conversions, and whole-file checks."""

from __future__ import annotations

from typing import Any

import pytest

from apphub.store.inidoc import IniDocument
from apphub.store.schema import FileSchema, KeySpec, KeyType, SectionSpec
from apphub.store.secrets import MASK, mask
from apphub.store.validate import MAX_VALUE_LENGTH, Problem, check_file, check_value, to_ini_text, to_json_value


def rules(spec: KeySpec | None, value: str) -> list[str]:
    return [problem.rule for problem in check_value(spec, value)]


# -- one value, one type at a time -------------------------------------------------------------


CASES: list[tuple[dict[str, Any], str, list[str]]] = [
    # string
    ({"type": "string"}, "anything at all: % ; # = [x]", []),
    ({"type": "string", "min_length": 8}, "short", ["min_length"]),
    ({"type": "string", "min_length": 8}, "long enough", []),
    ({"type": "string", "max_length": 5}, "toolong", ["max_length"]),
    ({"type": "string", "max_length": 5}, "fine!", []),
    ({"type": "string", "pattern": "^[a-z]+$"}, "lower", []),
    ({"type": "string", "pattern": "^[a-z]+$"}, "Upper", ["pattern"]),
    ({"type": "string", "pattern": "^[a-z]+$", "max_length": 3}, "UPPER", ["max_length", "pattern"]),
    # int
    ({"type": "int"}, "42", []),
    ({"type": "int"}, "-3", []),
    ({"type": "int"}, "+7", []),
    ({"type": "int"}, "4.2", ["type"]),
    ({"type": "int"}, "1e3", ["type"]),
    ({"type": "int"}, "forty", ["type"]),
    ({"type": "int"}, "9" * 19, ["type"]),
    ({"type": "int", "min": 0}, "-1", ["min"]),
    ({"type": "int", "min": 0}, "0", []),
    ({"type": "int", "max": 10}, "11", ["max"]),
    ({"type": "int", "min": 1, "max": 10}, "10", []),
    # bool
    *[({"type": "bool"}, text, []) for text in ("true", "false", "yes", "no", "on", "off", "1", "0", "TRUE", "Off")],
    ({"type": "bool"}, "maybe", ["type"]),
    ({"type": "bool"}, "2", ["type"]),
    # port
    ({"type": "port"}, "1", []),
    ({"type": "port"}, "9000", []),
    ({"type": "port"}, "65535", []),
    ({"type": "port"}, "0", ["min"]),
    ({"type": "port"}, "65536", ["max"]),
    ({"type": "port"}, "-80", ["min"]),
    ({"type": "port"}, "http", ["type"]),
    ({"type": "port"}, "80.5", ["type"]),
    ({"type": "port", "min": 1024}, "80", ["min"]),
    ({"type": "port", "max": 9999}, "10000", ["max"]),
    # url
    ({"type": "url"}, "http://websoft9-proxy:81/api", []),
    ({"type": "url"}, "https://artifact.websoft9.com/release/websoft9/mirrors.json", []),
    ({"type": "url"}, "https://[::1]:8443/x?a=b#c", []),
    ({"type": "url"}, "ftp://example.com/", ["type"]),
    ({"type": "url"}, "websoft9-git:3000/api/v1", ["type"]),
    ({"type": "url"}, "http://", ["type"]),
    ({"type": "url"}, "http://exa mple.com/", ["type"]),
    ({"type": "url"}, "http://example.com:99999/", ["type"]),
    ({"type": "url"}, "http://[::1/", ["type"]),
    ({"type": "url", "schemes": ["ws", "wss"]}, "wss://example.com/socket", []),
    ({"type": "url", "schemes": ["ws", "wss"]}, "https://example.com/", ["type"]),
    # email
    ({"type": "email"}, "admin@mydomain.com", []),
    ({"type": "email"}, "first.last+tag@sub.example.org", []),
    ({"type": "email"}, "admin@localhost", ["type"]),
    ({"type": "email"}, "no-at-sign.example.com", ["type"]),
    ({"type": "email"}, "two@@example.com", ["type"]),
    ({"type": "email"}, "a@-bad.example.com", ["type"]),
    ({"type": "email"}, "a b@example.com", ["type"]),
    # hostname
    ({"type": "hostname"}, "websoft9-proxy", []),
    ({"type": "hostname"}, "apps.example.com", []),
    ({"type": "hostname"}, "example.com.", []),
    ({"type": "hostname"}, "172.17.0.1", []),
    ({"type": "hostname"}, "::1", []),
    ({"type": "hostname"}, "-leading-dash", ["type"]),
    ({"type": "hostname"}, "under_score", ["type"]),
    ({"type": "hostname"}, "a..b", ["type"]),
    ({"type": "hostname"}, "x" * 64 + ".com", ["type"]),
    ({"type": "hostname"}, ".".join(["a" * 60] * 5), ["type"]),
    ({"type": "hostname"}, "http://example.com", ["type"]),
    # path
    ({"type": "path"}, "/data/custom_ssl/websoft9-self-signed.cert", []),
    ({"type": "path"}, "/", []),
    ({"type": "path"}, "data/custom_ssl", ["type"]),
    ({"type": "path"}, "~/file", ["type"]),
    # enum
    ({"type": "enum", "choices": ["hot", "reload"]}, "hot", []),
    ({"type": "enum", "choices": ["hot", "reload"]}, "Hot", ["choices"]),
    ({"type": "enum", "choices": ["hot", "reload"]}, "restart", ["choices"]),
    # list
    ({"type": "list"}, "wordpress,wordpresspro", []),
    ({"type": "list"}, "wordpress, wordpresspro", []),
    ({"type": "list"}, "one", []),
    ({"type": "list"}, "a,,b", ["type"]),
    ({"type": "list"}, "a,b,", ["type"]),
    ({"type": "list", "pattern": "^[a-z0-9][a-z0-9_-]*$"}, "wordpress,zentao", []),
    ({"type": "list", "pattern": "^[a-z0-9][a-z0-9_-]*$"}, "wordpress,Zentao,-x", ["pattern", "pattern"]),
    ({"type": "list", "choices": ["users", "files"]}, "users,files", []),
    ({"type": "list", "choices": ["users", "files"]}, "users,logs", ["choices"]),
]


@pytest.mark.parametrize(("spec", "value", "expected"), CASES, ids=[f"{c[0]['type']}-{c[1][:30]!r}" for c in CASES])
def test_check_value_by_type(spec: dict[str, Any], value: str, expected: list[str]) -> None:
    assert rules(KeySpec(**spec), value) == expected


def test_problems_explain_what_is_wrong() -> None:
    [port] = check_value(KeySpec(type="port"), "70000")
    assert port == Problem("max", "must be 65535 or less")
    [url] = check_value(KeySpec(type="url"), "ftp://x")
    assert "http://" in url.message
    assert "https://" in url.message
    [choice] = check_value(KeySpec(type="enum", choices=["a", "b"]), "c")
    assert choice.message == "must be one of: a, b"
    [item] = check_value(KeySpec(type="list", pattern="^[a-z]+$"), "ok,NOT")
    assert "'NOT'" in item.message


@pytest.mark.parametrize("kind", ["string", "int", "bool", "port", "url", "email", "hostname", "path", "list"])
def test_empty_is_allowed_unless_required(kind: KeyType) -> None:
    assert rules(KeySpec(type=kind), "") == []
    assert rules(KeySpec(type=kind, required=True), "") == ["required"]


def test_empty_required_enum_is_reported_as_required() -> None:
    assert rules(KeySpec(type="enum", choices=["a"], required=True), "") == ["required"]


@pytest.mark.parametrize("spec", [None, KeySpec(), KeySpec(type="list"), KeySpec(type="url")])
@pytest.mark.parametrize(
    "value",
    ["tab\there", "nul\x00", "new\nline", "carriage\rreturn", "escape\x1b[31m", "del\x7f", "\x0cform feed"],
)
def test_control_characters_are_refused_for_every_key(spec: KeySpec | None, value: str) -> None:
    assert rules(spec, value) == ["control_characters"]


@pytest.mark.parametrize("value", ["next\x85line", "line\u2028separator", "paragraph\u2029separator"])
def test_unicode_line_breaks_are_refused_like_control_characters(value: str) -> None:
    # Python's str.splitlines() (and so the INI line index) breaks lines at these too.
    assert rules(KeySpec(), value) == ["control_characters"]


def test_non_ascii_text_is_fine() -> None:
    assert rules(KeySpec(type="string", max_length=10), "café ☕ 日本") == []


@pytest.mark.parametrize("spec", [None, KeySpec(), KeySpec(type="int")])
def test_values_longer_than_the_limit_are_refused(spec: KeySpec | None) -> None:
    assert rules(None, "x" * MAX_VALUE_LENGTH) == []
    assert rules(spec, "1" * (MAX_VALUE_LENGTH + 1)) == ["max_length"]


@pytest.mark.parametrize("value", [" leading", "trailing ", "  both  ", " "])
def test_leading_or_trailing_blanks_are_refused(value: str) -> None:
    [problem] = check_value(KeySpec(), value)
    assert problem.rule == "whitespace"
    assert rules(None, value) == ["whitespace"]


def test_unknown_keys_only_get_the_global_rules() -> None:
    assert rules(None, "anything, even ftp://x") == []


# -- JSON -> INI text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (KeySpec(type="bool"), True, "true"),
        (KeySpec(type="bool"), False, "false"),
        (KeySpec(type="bool"), "yes", "true"),
        (KeySpec(type="bool"), "OFF", "false"),
        (KeySpec(type="bool"), "maybe", "maybe"),  # left for check_value to refuse
        (None, True, "true"),
        (KeySpec(type="int"), 42, "42"),
        (KeySpec(type="int"), -7, "-7"),
        (KeySpec(type="port"), 9000, "9000"),
        (KeySpec(type="string"), 8080, "8080"),
        (None, 8080, "8080"),
        (KeySpec(type="port"), "9000", "9000"),
        (KeySpec(type="list"), ["wordpress", "zentao"], "wordpress,zentao"),
        (KeySpec(type="list"), [], ""),
        (KeySpec(type="string"), "as is ; % #", "as is ; % #"),
    ],
)
def test_to_ini_text_converts(spec: KeySpec | None, value: object, expected: str) -> None:
    assert to_ini_text(spec, value) == expected


@pytest.mark.parametrize(
    ("spec", "value", "words"),
    [
        (KeySpec(type="string"), None, "null"),
        (KeySpec(type="port"), None, "null"),
        (None, None, "null"),
        (KeySpec(type="port"), True, "true/false"),
        (KeySpec(type="string"), False, "true/false"),
        (KeySpec(type="url"), 80, "number"),
        (KeySpec(type="bool"), 1, "number"),
        (KeySpec(type="string"), ["a"], "list"),
        (KeySpec(type="port"), [9000], "list"),
        (None, ["a", "b"], "list"),
        (KeySpec(type="list"), [1, 2], "list of strings"),
        (KeySpec(type="list"), ["a,b"], "commas"),
        (KeySpec(type="port"), 80.5, "float"),
        (KeySpec(type="string"), {"nested": "object"}, "dict"),
    ],
)
def test_to_ini_text_refuses_values_of_the_wrong_json_type(spec: KeySpec | None, value: object, words: str) -> None:
    problem = to_ini_text(spec, value)

    assert isinstance(problem, Problem)
    assert problem.rule == "type"
    assert words in problem.message


@pytest.mark.parametrize(
    ("spec", "text", "expected"),
    [
        (KeySpec(type="int"), "42", 42),
        (KeySpec(type="int"), "-3", -3),
        (KeySpec(type="port"), "9000", 9000),
        (KeySpec(type="port"), "not a port", "not a port"),
        (KeySpec(type="bool"), "yes", True),
        (KeySpec(type="bool"), "False", False),
        (KeySpec(type="bool"), "perhaps", "perhaps"),
        (KeySpec(type="list"), "wordpress, zentao", ["wordpress", "zentao"]),
        (KeySpec(type="list"), "one", ["one"]),
        (KeySpec(type="string"), "42", "42"),
        (KeySpec(type="url"), "http://x", "http://x"),
        (None, "42", "42"),
        (KeySpec(type="int"), "", ""),
    ],
)
def test_to_json_value_converts(spec: KeySpec | None, text: str, expected: object) -> None:
    value = to_json_value(spec, text)

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (KeySpec(type="int"), 42),
        (KeySpec(type="port"), 9000),
        (KeySpec(type="bool"), True),
        (KeySpec(type="bool"), False),
        (KeySpec(type="list"), ["wordpress", "zentao"]),
        (KeySpec(type="string"), "text"),
    ],
)
def test_json_values_survive_a_round_trip_through_ini_text(spec: KeySpec, value: object) -> None:
    text = to_ini_text(spec, value)

    assert isinstance(text, str)
    assert check_value(spec, text) == []
    assert to_json_value(spec, text) == value


# -- whole files -------------------------------------------------------------------------------


SCHEMA = FileSchema(
    extra_sections=False,
    sections={
        "web": SectionSpec(
            keys={
                "port": KeySpec(type="port", required=True),
                "url": KeySpec(type="url"),
                "admin_password": KeySpec(type="string", secret=True, min_length=12),
            }
        ),
        "mail": SectionSpec(
            keys={
                "from": KeySpec(type="email", required=True),
                "tls": KeySpec(type="bool"),
            }
        ),
        "open": SectionSpec(extra_keys=True, keys={"level": KeySpec(type="enum", choices=["low", "high"])}),
    },
)

FILE_TEXT = (
    "# demo\n"
    "[web]\n"
    "port = 99999\n"
    "url = ftp://example.com\n"
    "admin_password = short\n"
    "colour = blue\n"
    "\n"
    "[mail]\n"
    "tls = perhaps\n"
    "\n"
    "[open]\n"
    "level = medium\n"
    "anything = goes\n"
    "\n"
    "[stray]\n"
    "x = 1\n"
)


def masked(section: str, key: str, value: str) -> str:
    return mask(value) if SCHEMA.is_secret(section, key) else value


def test_check_file_reports_every_problem_at_once_with_section_key_rule_and_line() -> None:
    document = IniDocument(FILE_TEXT, "demo.ini")

    errors = check_file(SCHEMA, document.as_dict(), file="demo.ini", line_of=document.line_of, mask=masked)

    found = {(e.section, e.key, e.rule, e.line, e.value) for e in errors}
    assert found == {
        ("web", "port", "max", 3, "99999"),
        ("web", "url", "type", 4, "ftp://example.com"),
        ("web", "admin_password", "min_length", 5, MASK),
        ("web", "colour", "unknown_key", 6, "blue"),
        ("mail", "tls", "type", 9, "perhaps"),
        ("mail", "from", "required", None, None),
        ("open", "level", "choices", 12, "medium"),
        ("stray", None, "unknown_section", 15, None),
    }
    assert all(error.file == "demo.ini" for error in errors)
    assert all("short" not in str(error) for error in errors)
    port = next(error for error in errors if error.key == "port")
    assert str(port) == "demo.ini:3: [web] port = '99999': must be 65535 or less (rule: max)"


def test_check_file_on_a_good_file_finds_nothing() -> None:
    values = {"web": {"port": "8081", "admin_password": "long enough password"}, "mail": {"from": "a@example.com"}}

    assert check_file(SCHEMA, values, file="demo.ini") == []


def test_check_file_reports_a_missing_section_that_has_required_keys() -> None:
    errors = check_file(SCHEMA, {"web": {"port": "8081"}}, file="demo.ini")

    assert [(e.section, e.key, e.rule) for e in errors] == [("mail", None, "required")]


def test_check_file_accepts_extra_sections_when_the_schema_allows_them() -> None:
    open_schema = SCHEMA.model_copy(update={"extra_sections": True})
    values = {"web": {"port": "8081"}, "mail": {"from": "a@example.com"}, "custom": {"x": "1", "y": " blank"}}

    errors = check_file(open_schema, values, file="demo.ini")

    assert [(e.section, e.key, e.rule) for e in errors] == [("custom", "y", "whitespace")]


def test_check_file_refuses_names_an_ini_file_or_an_url_cannot_carry() -> None:
    open_schema = SCHEMA.model_copy(update={"extra_sections": True})
    values = {"web": {"port": "8081"}, "mail": {"from": "a@example.com"}, "bad section": {"ok": "1"},
              "open": {"bad/key": "1"}}

    errors = check_file(open_schema, values, file="demo.ini")

    assert {(e.section, e.key, e.rule) for e in errors} == {("bad section", None, "name"), ("open", "bad/key", "name")}


def test_check_file_only_checks_the_touched_keys_and_their_sections() -> None:
    document = IniDocument(FILE_TEXT, "demo.ini")

    errors = check_file(
        SCHEMA, document.as_dict(), file="demo.ini", only=[("web", "url"), ("open", "anything")],
        line_of=document.line_of,
    )

    # The untouched bad port, password, colour, tls, level and the stray section are not this write's fault.
    assert [(e.section, e.key, e.rule, e.line) for e in errors] == [("web", "url", "type", 4)]


def test_check_file_only_still_reports_a_missing_required_key_of_a_touched_section() -> None:
    errors = check_file(SCHEMA, {"mail": {"tls": "true"}}, file="demo.ini", only=[("mail", "tls")])

    assert [(e.section, e.key, e.rule) for e in errors] == [("mail", "from", "required")]


def test_check_file_only_with_nothing_touched_reports_nothing() -> None:
    document = IniDocument(FILE_TEXT, "demo.ini")

    assert check_file(SCHEMA, document.as_dict(), file="demo.ini", only=[]) == []
