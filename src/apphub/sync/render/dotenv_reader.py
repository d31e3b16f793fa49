"""compose-go's `.env` reader, ported to read exactly what docker compose reads.

The grammar is compose-go's, not a dotenv standard (there is none): `dotenv/parser.go` for the
statements and quoting, `dotenv/godotenv.go` (`expandVariables`) and `template/template.go` for
the `$` substitution, in github.com/compose-spec/compose-go (v2). In short:

- a statement starts at the first non-blank character; `#` there starts a comment line; an
  optional `export` and blanks, then a name of letters, digits, `_ . - [ ]`, then `=` or `:`
  (a name alone on its line takes its value from the lookup, if it has one);
- an unquoted value runs to the end of the line, is cut at the first ` #` (a blank then `#`),
  trailing blanks trimmed, then substituted;
- in single quotes nothing is expanded: `\\'` is the only escape, any other `\\` stays as it is
  (`\\\\` stays two backslashes);
- in double quotes `\\\\ \\" \\$ \\a \\b \\f \\n \\r \\t \\v \\0NNN` are expanded, then substituted;
- quoted values may span lines; after the closing quote the line goes on as a new statement
  (blanks and a `#` comment usually);
- substitution: `$$` is a literal `$`; `$NAME`, `${NAME}`, `${NAME:-default}` (`-`, `:+`, `+`,
  `:?`, `?`) take NAME from the lookup, else from the variables the file set above it, else the
  empty string; a `${` that is not one of those is an error.

Where compose-go reports a line, this reader reports the line the statement starts on, and no
message ever holds the text of a value (values can be secrets).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from apphub.errors import RenderError

Lookup = Callable[[str], str | None]

# parser.go isSpace: the blanks skipped around names and after `=` (not the line break).
_BLANKS = frozenset("\t\v\f\r \x85\xa0")
# Go's unicode.IsSpace: the blanks between statements and trimmed off unquoted values and names.
GO_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(code) for code in range(0x2000, 0x200B))
_EXPORT = re.compile(r"export[\t\n\f\r ]+")  # Go's \s is [\t\n\f\r ]
_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_ESCAPED = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}
# template.go's pattern; its (?i) makes [a-z] Go's case folds of a-z: A-Z, U+017F (long s), U+212A (Kelvin sign).
_FIRST, _NEXT = "[_A-Za-z\u017f\u212a]", "[_A-Za-z0-9\u017f\u212a]"
_TEMPLATE = re.compile(rf"\$(?:(?P<escaped>\$)|(?P<named>{_FIRST}{_NEXT}*)|"
                       rf"\{{(?:(?P<braced>{_FIRST}{_NEXT}*(?::?[-+?](.*))?)\}}|(?P<invalid>)))")
_NOT_A_STATEMENT = "is neither NAME=VALUE, a comment nor blank"


@dataclass(frozen=True)
class Statement:
    """One assignment as compose-go scans it. Offsets are into the text read: `start` where the
    statement starts (its `export` or name), `name_end` after the name, [value_start, value_end)
    the value as written (quotes included; an unquoted value without the inline comment and the
    trailing blanks). `quote` is `'`, `"` or "" (unquoted); `raw` is the value before expansion."""

    name: str
    line: int
    start: int
    name_end: int
    value_start: int
    value_end: int
    quote: str
    raw: str
    inherited: bool  # a name alone on its line: no value in the file


def statements(text: str) -> Iterator[Statement]:
    """The statements of `text` in order; RenderError naming the line of what compose-go refuses."""
    position = counted = 1 if text.startswith("\ufeff") else 0  # compose-go drops a byte order mark
    line = 1
    while True:
        position = _statement_start(text, position)
        if position == len(text):
            return
        line, counted = line + text.count("\n", counted, position), position
        start, position = position, _after_export(text, position)
        if position == len(text):  # compose-go: `export ` at the very end is a "zero length string"
            raise RenderError(f"line {line}: {_NOT_A_STATEMENT}")
        index, delimiter = position, ""
        while index < len(text):
            char = text[index]
            if char in "=:\n":
                delimiter = char
                break
            if not (char in _BLANKS or char in "_.-[]" or unicodedata.category(char)[0] in "LN"):
                raise RenderError(f"line {line}: {_NOT_A_STATEMENT}")
            index += 1
        if delimiter:
            name = _rstrip(text[position:index])
            value_start = _skip(text, index + 1, _BLANKS)
        else:  # compose-go: no `=`, `:` or line break before the end: the rest is the value of ""
            name, value_start = "", position
        if " " in name:
            raise RenderError(f"line {line}: {_NOT_A_STATEMENT}")
        name_end = position + len(name)
        if delimiter == "\n":
            yield Statement(name, line, start, name_end, name_end, name_end, "", "", True)
            position = value_start
            continue
        statement, position = _value(text, value_start, line)
        yield Statement(name, line, start, name_end, value_start, statement[0], statement[1], statement[2], False)


def read(text: str, lookup: Lookup | None = None) -> dict[str, str]:
    """The variables docker compose reads from `text`, as compose-go's parser does.

    `lookup` stands for the environment compose looks names up in first (the shell's, for a
    project's `.env`); without it a `$NAME` is the value the file gave NAME above, else ""."""
    env: dict[str, str] = {}

    def mapping(name: str) -> str | None:
        found = lookup(name) if lookup is not None else None
        return found if found is not None else env.get(name)

    for statement in statements(text):
        if statement.inherited:
            found = lookup(statement.name) if lookup is not None else None
            if found is not None:
                env[statement.name] = found
            continue
        raw = statement.raw
        try:
            if statement.quote != "'":
                env[statement.name] = substitute(expand_escapes(raw) if statement.quote else raw, mapping)
            else:
                env[statement.name] = raw
        except _TemplateError as exc:
            raise RenderError(f"line {statement.line}: {exc}") from None
    return env


def _statement_start(text: str, position: int) -> int:
    """getStatementStart: past blanks, line breaks and `#` comment lines (len(text) at the end)."""
    while True:
        position = _skip(text, position, GO_SPACES)
        if position == len(text) or text[position] != "#":
            return position
        found = text.find("\n", position)
        if found < 0:
            return len(text)
        position = found


def _after_export(text: str, position: int) -> int:
    match = _EXPORT.match(text, position)
    return _skip(text, position + len("export"), _BLANKS) if match else position


def _value(text: str, position: int, line: int) -> tuple[tuple[int, str, str], int]:
    """extractVarValue: ((value_end, quote, raw), where the next statement is looked for)."""
    quote = text[position : position + 1]
    if quote not in ("'", '"'):
        found = text.find("\n", position)
        end = len(text) if found < 0 else found
        value = text[position:end]
        comment = value.find(" #")
        value = _rstrip(value if comment < 0 else value[:comment])
        return (position + len(value), "", value), (end if found < 0 else end + 1)
    chars: list[str] = []
    escape = False
    for index in range(position + 1, len(text)):
        char = text[index]
        if char == quote and not escape:
            return (index + 1, quote, "".join(chars)), index + 1
        if char == "\\" and not escape:
            escape = True
            continue
        if escape and char != quote:
            chars.append("\\")
        escape = False
        chars.append(char)
    raise RenderError(f"line {line}: the quoted value is never closed")


def _skip(text: str, position: int, chars: frozenset[str]) -> int:
    while position < len(text) and text[position] in chars:
        position += 1
    return position


def _rstrip(value: str) -> str:
    end = len(value)
    while end and value[end - 1] in GO_SPACES:
        end -= 1
    return value[:end]


def expand_escapes(value: str) -> str:
    """parser.go expandEscapes: a double-quoted value's escapes (`\\$` becomes `$$`)."""

    def one(match: re.Match[str]) -> str:
        escape = match[0]
        if escape == "\\$":
            return "$$"
        if escape.startswith("\\0"):  # `\0NNN`: octal NNN, three digits, at most 255
            digits = escape[2:]
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
                return chr(int(digits, 8))
            return "\\" + digits  # compose-go returns the rewritten `\NNN`: its 0 is lost
        return _ESCAPED.get(escape[1], escape)  # `\c` is matched but is no Go escape: kept

    return _ESCAPE.sub(one, value)


class _TemplateError(Exception):
    pass


def substitute(template: str, mapping: Lookup) -> str:
    """template.go Substitute with its default pattern, mapping returning None for unset."""
    return _TEMPLATE.sub(lambda match: _replacement(match[0], mapping), template)


def _replacement(substring: str, mapping: Lookup) -> str:
    """DefaultReplacementAppliedFunc: one `$...` match, cut at its first balanced `}`."""
    separator = _separator(substring)
    closing = _closing_brace(substring)
    rest = ""
    if closing > -1:
        substring, rest = substring[: closing + 1], substring[closing + 1 :]
    match = _TEMPLATE.search(substring)
    if match is not None and match["escaped"]:
        return "$"
    name = (match["named"] or match["braced"] or "") if match is not None else ""
    if not name:
        raise _TemplateError("an invalid ${...} substitution (a literal $ is written $$)")
    if match is not None and not match["named"] and separator and separator in name:
        variable, default = name.split(separator, 1)
        value = mapping(variable)
        if separator in (":?", "?"):
            if value is None or (separator == ":?" and value == ""):
                raise _TemplateError(f"required variable {variable} is missing a value")
        elif separator in (":-", "-"):
            if value is None or (separator == ":-" and value == ""):
                value = substitute(default, mapping)
        elif value is not None and (separator == "+" or value != ""):
            value = substitute(default, mapping)
        return (value or "") + substitute(rest, mapping)
    return mapping(name) or ""


def _separator(substring: str) -> str:
    """getSubstitutionFunctionForTemplate: the modifier found first in the match."""
    found = [(substring.find(separator), separator) for separator in (":?", "?", ":-", "-", ":+", "+")]
    present = sorted((index, separator) for index, separator in found if index >= 0)
    return present[0][1] if present else ""


def _closing_brace(substring: str) -> int:
    """getFirstBraceClosingIndex: the `}` closing the first `{` (the character after a `{` skipped)."""
    depth, index = 0, 0
    while index < len(substring):
        if substring[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        if substring[index] == "{":
            depth += 1
            index += 1
        index += 1
    return -1
