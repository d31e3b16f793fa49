"""`.env` files read back exactly by docker compose: the writer (quote, replace, merge) against
the reader that follows compose-go's dotenv parser (dotenv/parser.go, template/template.go in
github.com/compose-spec/compose-go), and that reader against compose-go's own test cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apphub.errors import RenderError
from apphub.sync.render.envfile import check, merge, parse, quote, read, replace

# Any text an environment variable can hold (no NUL), and text made mostly of the characters
# .env quoting trips over, in runs (`\\\\`, `$$`, ` #`, `\r\n`) as well as alone.
AWKWARD = st.sampled_from(["$", "\\", "'", '"', "#", "\n", "\r", "\t", " ", "{", "}", "$$", "\\\\", "${", "${A}",
                           "$A", " #", "\r\n", "\\n", "\\'", '\\"', "\\0123", "\u3000", "\xa0", "\x85", "é", "a", "1"])
any_value = st.text(st.characters(exclude_characters="\0"))
awkward_value = st.lists(st.one_of(AWKWARD, st.characters(exclude_characters="\0")), max_size=24).map("".join)
values = st.one_of(any_value, awkward_value)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)

PROPERTY = settings(max_examples=300, deadline=None, database=None)


def hand_written(value: str) -> str:
    """A double-quoted value as a person writes one: the line breaks in it left as they are."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


@PROPERTY
@given(values)
def test_any_value_replaced_reads_back_exactly_on_one_line(value: str) -> None:
    written = replace([("NAME", value)])

    assert read(written) == {"NAME": value}
    assert written.count("\n") == 1
    assert written.endswith("\n")
    assert "\r" not in written


@PROPERTY
@given(st.dictionaries(names, values, max_size=6))
def test_several_variables_replaced_at_once_read_back(wanted: dict[str, str]) -> None:
    assert read(replace(list(wanted.items()))) == wanted


# The line of the managed variable in the file a merge starts from, in the ways people write it.
MANAGED_LINES = [
    "NAME=old\n",
    "NAME=old # keep this comment\n",
    "export NAME = 'old' # keep this comment\n",
    'NAME="old\nNAME=still old\n" # keep this comment\n',
    "NAME= # keep this comment\n",
    "NAME=old\t#not a comment: compose reads it as part of the value\n",
    'NAME="old"#keep this comment\n',
    "NAME:old\r\n",
    "NAME\n",  # no value: compose takes it from the shell
    "NAME='old' OTHER_ON_LINE=kept\n",
]


@PROPERTY
@given(values, st.sampled_from(MANAGED_LINES), values)
def test_a_merge_sets_the_value_and_keeps_every_unmanaged_byte(value: str, managed: str, unmanaged: str) -> None:
    head = (f"# Demo service\n\nexport COMPOSE_PROJECT_NAME=demo # the project\nUNMANAGED={hand_written(unmanaged)}\n"
            "DECOY=\"a quoted value across lines\nNAME=decoy, not an assignment\n\\\" still quoted\"\n"
            "SINGLE='it\\'s # not a comment'\n   # indented comment\n")
    tail = "\n# footer\nTZ=UTC # zone\nLAST='x'"
    current = head + managed + tail

    merged = merge(current, [("NAME", value)])

    assert merged.startswith(head)
    assert merged.endswith(tail)
    expected = read(current)
    expected["NAME"] = value
    assert read(merged) == expected
    assert expected["UNMANAGED"] == unmanaged
    if "keep this comment" in managed:
        assert "keep this comment\n" in merged[len(head) : -len(tail)]
    if "OTHER_ON_LINE" in managed:
        assert merged[len(head) : -len(tail)].endswith(" OTHER_ON_LINE=kept\n")


@PROPERTY
@given(st.dictionaries(names, values, min_size=1, max_size=5), st.dictionaries(names, values, max_size=3))
def test_a_merge_of_several_variables_sets_every_assignment_and_appends_the_new(
        wanted: dict[str, str], present: dict[str, str]) -> None:
    lines = ["# managed twice, other variables in between\n"]
    for name, old in present.items():
        lines += [f"{name}={hand_written(old)}\n", "KEEP_ME=1 # between\n", f"export {name}='x' # again\n"]
    current = "".join(lines) + "KEEP_ME_TOO=2"

    merged = merge(current, list(wanted.items()))

    expected = {**read(current), **wanted}
    assert read(merged) == expected
    assert "KEEP_ME=1 # between\n" in merged or not present
    assert merged.startswith(current) if not set(wanted) & set(present) else "\nKEEP_ME_TOO=2" in merged


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("abc", "abc"),
        ("8080", "8080"),
        ("http://x/y", "http://x/y"),
        ("", ""),
        ("é-ü", "é-ü"),
        ("C:\\dir\\", "C:\\dir\\"),  # unquoted, a backslash is a backslash
        ("$2y$10$abcdefghijklmnopqrstuv", "'$2y$10$abcdefghijklmnopqrstuv'"),  # bcrypt: single quotes, no `$`
        ("two words", "'two words'"),
        (" leading", "' leading'"),
        ("trailing ", "'trailing '"),
        ("a # b", "'a # b'"),
        ('say "hi"', "'say \"hi\"'"),
        ("a\\\\b", "a\\\\b"),  # two backslashes in a row stay two
        ("two words\\", '"two words\\\\"'),  # a `\` before a closing `'` would escape it
        ("it's a\\", '"it\'s a\\\\"'),
        ("it's \"a\"", '"it\'s \\"a\\""'),
        ('ends in "', "'ends in \"'"),
        ("line\nends \\", '"line\\nends \\\\"'),
        ("crlf\r\n", '"crlf\\r\\n"'),
        ("tab\there", '"tab\\there"'),
        ("it's $HOME", '"it\'s \\$HOME"'),
        ("\\", "\\"),
        ("\\ x", "'\\ x'"),
    ],
)
def test_hand_picked_values_are_written_readably_and_read_back(value: str, written: str) -> None:
    assert quote("NAME", value) == written
    assert read(f"NAME={written}\n") == {"NAME": value}


def test_only_a_nul_is_refused_naming_the_variable_not_the_value() -> None:
    with pytest.raises(RenderError) as caught:
        quote("DB_PASSWORD", "hunter2\0")

    assert "DB_PASSWORD" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_merge_quotes_a_value_the_rest_of_its_line_would_change() -> None:
    # `NAME=\t#c` read plain would keep `\t#c` (only ` #` starts a comment); `NAME= # c` with an
    # empty value would read `# c`; `'q' B=1` goes on with another statement on the same line.
    merged = merge("A=\t#c\nB= # c\nC='q' D=1\n", [("A", "x"), ("B", ""), ("C", "y")])

    assert merged == 'A="x"\t#c\nB="" # c\nC="y" D=1\n'
    assert read(merged) == {"A": "x", "B": "", "C": "y", "D": "1"}


def test_parse_finds_where_each_value_ends_as_read_does() -> None:
    text = 'A="one\nB=not a statement\n\\" still A" # c\nexport C = \'it\\\'s\'\r\nD\nE=x" y # z\n'

    lines, entries = parse(text)

    assert [(entry.name, entry.start, entry.end, entry.prefix, entry.tail) for entry in entries] == [
        ("A", 0, 3, "A=", " # c\n"), ("C", 3, 4, "export C = ", "\r\n"), ("D", 4, 5, "D", "\n"),
        ("E", 5, 6, "E=", " # z\n")]
    assert "".join(lines) == text
    assert read(text) == {"A": 'one\nB=not a statement\n" still A', "C": "it's", "E": 'x" y'}


# compose-go's own cases (dotenv/godotenv_test.go, parser_test.go, fixtures/), each quoted from upstream.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # TestParsing: parseAndCompare(t, "FOO= bar", "FOO", "bar"), and `FOO =bar`
        ("FOO= bar", {"FOO": "bar"}),
        ("FOO =bar", {"FOO": "bar"}),
        # `FOO="escaped\"bar"` -> `escaped"bar`; `FOO="'d'"` -> `'d'`
        ('FOO="escaped\\"bar"', {"FOO": 'escaped"bar'}),
        ("FOO=\"'d'\"", {"FOO": "'d'"}),
        # "OPTION_A: Foo=bar" -> "Foo=bar"; "OPTION_A=1:B" -> "1:B"
        ("OPTION_A: Foo=bar", {"OPTION_A": "Foo=bar"}),
        ("OPTION_A=1:B", {"OPTION_A": "1:B"}),
        # `export OPTION_B='\n'` -> "\\n"; "export exportFoo=2"; "export.FOO= 2"; "\texport OPTION_A=2"
        ("export OPTION_B='\\n'", {"OPTION_B": "\\n"}),
        ("export exportFoo=2", {"exportFoo": "2"}),
        ("export.FOO= 2", {"export.FOO": "2"}),
        ("\texport OPTION_A=2", {"OPTION_A": "2"}),
        # `FOO=a\tb` -> `a\tb` (no escapes unquoted); `FOO="a\tb"` -> "a\tb"
        ("FOO=a\\tb", {"FOO": "a\\tb"}),
        ('FOO="a\\tb"', {"FOO": "a\tb"}),
        # `KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z"` -> "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"
        ('KEY="Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z"', {"KEY": "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"}),
        # "FOO=bar " -> "bar"; "FOO=bar #this is foo" -> "bar"; "FOO=123#not-an-inline-comment"
        ("FOO=bar ", {"FOO": "bar"}),
        ("FOO=bar #this is foo", {"FOO": "bar"}),
        ("FOO=123#not-an-inline-comment", {"FOO": "123#not-an-inline-comment"}),
        # `FOO="bar#baz"#` -> "bar#baz"; "FOO='bar#baz' # comment"
        ('FOO="bar#baz"#', {"FOO": "bar#baz"}),
        ("FOO='bar#baz' # comment", {"FOO": "bar#baz"}),
        # `FOO="bar\n\ b\az"` -> "bar\n\\ b\az"; `FOO="bar\\r\ b\az"` -> "bar\\r\\ b\az"
        ('FOO="bar\\n\\ b\\az"', {"FOO": "bar\n\\ b\az"}),
        ('FOO="bar\\\\r\\ b\\az"', {"FOO": "bar\\r\\ b\az"}),
        # `FOO="bar\nbaz\\"` -> "bar\nbaz\\"; `="value"` -> "" = "value"
        ('FOO="bar\\nbaz\\\\"', {"FOO": "bar\nbaz\\"}),
        ('="value"', {"": "value"}),
        # `KEY="\0123"` -> "S"; `KEY="\x07"` and `KEY="\u12e4"` kept as written
        ('KEY="\\0123"', {"KEY": "S"}),
        ('KEY="\\x07"', {"KEY": "\\x07"}),
        ('KEY="\\u12e4"', {"KEY": "\\u12e4"}),
        # TestExpanding: "FOO=test\nBAR=${FOO}bar"; "BAR=$FOO" -> ""; "BAR='quote $FOO'"
        ("FOO=test\nBAR=${FOO}bar", {"FOO": "test", "BAR": "testbar"}),
        ("BAR=$FOO", {"BAR": ""}),
        ("BAR='quote $FOO'", {"BAR": "quote $FOO"}),
        # `FOO="foo\${BAR}"` -> "foo${BAR}"; "FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"" -> "foo${FOO} test"
        ('FOO="foo\\${BAR}"', {"FOO": "foo${BAR}"}),
        ('FOO=test\nBAR="foo\\${FOO} ${FOO}"', {"FOO": "test", "BAR": "foo${FOO} test"}),
        # TestVariableStringValueSeparator: a double-quoted value over two lines
        ('TEST_URLS="stratum+tcp://a:3333\nstratum+tcp://a:443"', {"TEST_URLS": "stratum+tcp://a:3333\nstratum+tcp://a:443"}),
        # parser_test.go TestParseBytes: "a[1]=c", "a.propertyKey=d", "árvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép"
        ("a[1]=c\na.propertyKey=d\nárvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép\n",
         {"a[1]": "c", "a.propertyKey": "d", "árvíztűrő-TÜKÖRFÚRÓGÉP": "ÁRVÍZTŰRŐ-tükörfúrógép"}),
        # godotenv_var_expansion_test.go: "RESULT=${EMPTY_VAR:-Default Value}" -> "Default Value",
        # "RESULT=${EMPTY_VAR-Default Value}" -> "", "RESULT=${EMPTY_VAR?Test error}" -> ""
        ("EMPTY_VAR=\nA=${EMPTY_VAR:-Default Value}\nB=${EMPTY_VAR-Default Value}\nC=${EMPTY_VAR?Test error}",
         {"EMPTY_VAR": "", "A": "Default Value", "B": "", "C": ""}),
        ("TEST_VAR=Test Value\nA=${TEST_VAR:?Default Value}\nB=${UNSET_VAR:-Default Value}",
         {"TEST_VAR": "Test Value", "A": "Test Value", "B": "Default Value"}),
    ],
)
def test_the_reader_follows_compose_go_test_cases(text: str, expected: dict[str, str]) -> None:
    assert read(text) == expected


# fixtures/quoted.env, plain.env (456 = ABC included: only compose-go's Read drops it) and
# substitutions.env, as upstream has them.
QUOTED_ENV = """OPTION_A='1'
OPTION_B='2'
OPTION_C=''
OPTION_D='\\n'
OPTION_E="1"
OPTION_F="2"
OPTION_G=""
OPTION_H="\\n"
OPTION_I = "echo 'asd'" # Inline comment
OPTION_J = 'first line
second line
third line
and so on'
OPTION_K='Let\\'s go!'
OPTION_Z = "last value"
"""
PLAIN_ENV = ("\ufeffOPTION_A=1\nOPTION_B=2\nOPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\n456 = ABC\nOPTION_F = \n"
             "OPTION_G=\nOPTION_H = my string # Inline comment\n")
SUBSTITUTIONS_ENV = "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\nOPTION_D=${OPTION_A}_${OPTION_B}\n" \
                    "OPTION_E=${OPTION_NOT_DEFINED}\n"


def test_the_reader_reads_compose_go_fixtures() -> None:
    assert read(QUOTED_ENV) == {
        "OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "", "OPTION_D": "\\n", "OPTION_E": "1", "OPTION_F": "2",
        "OPTION_G": "", "OPTION_H": "\n", "OPTION_I": "echo 'asd'",
        "OPTION_J": "first line\nsecond line\nthird line\nand so on", "OPTION_K": "Let's go!", "OPTION_Z": "last value"}
    assert read(PLAIN_ENV) == {"OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "3", "OPTION_D": "4", "OPTION_E": "5",
                               "456": "ABC", "OPTION_F": "", "OPTION_G": "", "OPTION_H": "my string"}
    assert read(SUBSTITUTIONS_ENV) == {"OPTION_A": "1", "OPTION_B": "1", "OPTION_C": "1", "OPTION_D": "1_1",
                                       "OPTION_E": ""}
    # TestSubstitutionsWithEnvFilePrecedence: the environment (OPTION_A=5) is looked up first.
    assert read(SUBSTITUTIONS_ENV, {"OPTION_A": "5"}.get)["OPTION_D"] == "5_5"
    # fixtures/inherited-multi-var.env: a name alone takes the environment's value, or none.
    inherited = "foo=bar\nVAR_TO_BE_LOADED_FROM_OS_ENV\nbar=baz\n"
    assert read(inherited, {"VAR_TO_BE_LOADED_FROM_OS_ENV": "v"}.get) == {
        "foo": "bar", "VAR_TO_BE_LOADED_FROM_OS_ENV": "v", "bar": "baz"}
    assert read(inherited) == {"foo": "bar", "bar": "baz"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # TestUnterminatedQuotes: `KEY="`, `KEY="value\"`, `KEY='value\'`, `KEY='value"`
        ('KEY="', 1), ('KEY="value\\"', 1), ("KEY='value\\'", 1), ("KEY='value\"", 1),
        # TestParseVariable: "%!(EXTRA string)=foo" -> unexpected character "%"
        ("%!(EXTRA string)=foo", 1),
        # TestErrorParsing, fixtures/invalid1.env: "line 7: key cannot contain a space"
        ('# some comments\nfoo="\n  a\n  multine\n  value\n"\nINVALID LINE\nzot=qix', 7),
        # TestParsing: "lol$wut" is an error
        ("lol$wut", 1),
        # TestErrorIfEmptyOrUnset: "RESULT=${UNSET_VAR:?Test error}" is a MissingRequiredError
        ("A=1\nRESULT=${UNSET_VAR:?Test error}", 2),
    ],
)
def test_the_reader_refuses_what_compose_go_refuses_naming_the_line(text: str, line: int) -> None:
    with pytest.raises(RenderError, match=rf"^line {line}: "):
        read(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # parser.go trims the blanks after `=` before it looks for ` #`: this is a value, not a comment.
        ("FOO= # comment", {"FOO": "# comment"}),
        # Only a space before `#` starts a comment (strings.Cut(value, " #")).
        ("FOO=a\t#b", {"FOO": "a\t#b"}),
        # No escapes unquoted: `\` stays and `$bar` is substituted (empty).
        ("FOO=\\$bar", {"FOO": "\\"}),
        ("FOO=$$bar", {"FOO": "$bar"}),
        # In single quotes `\\` stays two backslashes.
        ("FOO='a\\\\'", {"FOO": "a\\\\"}),
        # After a closing quote the line goes on as a new statement.
        ("FOO=\"a\" BAR=2", {"FOO": "a", "BAR": "2"}),
        # expandEscapes: `\0` not followed by three octal digits loses its 0.
        ('FOO="\\08"', {"FOO": "\\8"}),
        # A last line without `=` is the value of the empty name; with a line break it is a name alone.
        ("A=1\nFOO", {"A": "1", "": "FOO"}),
        ("A=1\nFOO\n", {"A": "1"}),
        # `$` not followed by a name, `$` or `{` is literal; a `${...}` default is substituted in turn.
        ("FOO=1$ $-", {"FOO": "1$ $-"}),
        ("A=x\nFOO=${B:-${A}}}", {"A": "x", "FOO": "x}"}),
    ],
)
def test_compose_go_behaviour_that_surprises(text: str, expected: dict[str, str]) -> None:
    assert read(text) == expected


def test_an_invalid_substitution_is_refused_without_quoting_the_value() -> None:
    with pytest.raises(RenderError, match=r"^line 2: an invalid \$\{\.\.\.\} substitution") as caught:
        read("A=1\nSECRET=hunter2${\n")

    assert "hunter2" not in str(caught.value)


def test_check_accepts_what_compose_accepts_whatever_the_environment_holds() -> None:
    check('A=${UNSET:?set it in the shell}\nB="${X:-d}"\nC\n="x"\nexport D.E-F[1]: v\n')
    for text, line in [("A=1\nB=${\n", 2), ("A=1\n1ST=x\n", 2), ("A=1\nB='x\n", 2)]:
        with pytest.raises(RenderError, match=rf"^line {line}: "):
            check(text)


def test_two_backslashes_stay_two_where_python_dotenv_would_read_one() -> None:
    for value in ("a\\\\b", "two words \\\\", "it's \\\\"):
        assert read(replace([("A", value)])) == {"A": value}
