"""`.env` files exactly as docker compose reads them: compose-go's dotenv grammar.

docker compose reads a project's `.env` and every `env_file` with compose-go's own parser
(`dotenv/parser.go` in github.com/compose-spec/compose-go, `$` substitution by `template/template.go`),
not a shell and not python-dotenv (whose writer turns two backslashes into one on reading back).
dotenv_reader.py ports that parser: `read` is the reference for what compose sees, and `parse`
locates the assignments with the same scanner, so the two agree on where every value ends
(multi-line quoted values, escaped quotes, a statement after a closing quote).

Values are written so that compose reads back exactly the text apphub meant (every text but one
holding a NUL, which no environment variable can hold):
- plain when nothing in them is special to compose or to a reader's eye: no blank, control
  character, `#`, quote, `$` or backtick (a `\\` is literal in an unquoted value);
- else in single quotes (literal: no `$` substitution, no escapes) when they hold no `'`, no line
  break or other control character and do not end in `\\` (which would escape the closing quote);
- else in double quotes, which can say everything: `\\`, `"` and `$` escaped as `\\\\`, `\\"` and `\\$`,
  line breaks, tabs and the other control characters Go knows as `\\n \\r \\t \\a \\b \\f \\v`.

A merge replaces the value of each mapped variable where it stands (every assignment of it, so
no stale earlier one remains; a name alone on its line, which compose fills from the shell,
becomes an assignment), keeps the rest of the line (`export `, blanks around `=`, an inline
comment) and every other byte, and appends the variables the file does not have yet. A value
goes in double quotes where the rest of its line would make a plain one read differently.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from apphub.errors import RenderError
from apphub.sync.render.dotenv_reader import GO_SPACES, Statement, read, statements

__all__ = ["NAME", "Entry", "check", "merge", "parse", "quote", "read", "replace"]

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN = re.compile(r"[^\s\x00-\x1f\x7f-\x9f#'\"$`]*")
_NOT_SINGLE = re.compile(r"['\x00-\x1f\x7f]|\\\Z")  # a `\` at the end would escape the `'`
_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_DOUBLE = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t",
           "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


@dataclass(frozen=True)
class Entry:
    """One assignment: lines [start, end) of the file hold it; `prefix` is its last line up to
    the value, `tail` what follows the value there (an inline comment, blanks, the line end).
    `statement` has the offsets in the text (value_start, value_end) and how it is quoted."""

    name: str
    start: int
    end: int
    prefix: str
    tail: str
    statement: Statement


def quote(name: str, value: str) -> str:
    """`value` written so that compose reads it back unchanged; RenderError (naming `name`, never
    the value) for a NUL, which no environment variable can hold."""
    if "\0" in value:
        raise RenderError(f"{name}: the value holds a NUL character, which an environment variable cannot hold")
    if _PLAIN.fullmatch(value):
        return value
    if not _NOT_SINGLE.search(value):
        return f"'{value}'"
    return _double(value)


def _double(value: str) -> str:
    return '"' + "".join(_DOUBLE.get(char, char) for char in value) + '"'


def double_quoted(value: str) -> str:
    """`value` in double quotes with compose's escapes (how a diff may show a secret: to mask)."""
    return _double(value)


def parse(text: str) -> tuple[list[str], list[Entry]]:
    """The file's lines and its assignments; RenderError naming the line of what compose refuses."""
    lines = _LINE.findall(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    entries = []

    def line_of(position: int) -> int:
        return min(bisect.bisect_right(starts, position), len(lines)) - 1

    for statement in statements(text):
        if not statement.name:
            continue  # `="x"`, or a last line without `=`: compose sets "" (no name apphub maps)
        last = line_of(max(statement.value_end - 1, statement.value_start))
        entries.append(Entry(statement.name, line_of(statement.start), last + 1,
                             text[starts[line_of(statement.value_start)] : statement.value_start],
                             text[statement.value_end : starts[last + 1]], statement))
    return lines, entries


def merge(current: str, assignments: Sequence[tuple[str, str]]) -> str:
    _, entries = parse(current)
    newline = "\r\n" if "\r\n" in current else "\n"
    wanted = dict(assignments)
    for name in wanted:
        _check_name(name)
    text = current
    for entry in reversed(entries):  # from the end, so the offsets before stay valid
        if entry.name in wanted:
            text = _set(text, entry.statement, entry.name, wanted[entry.name])
    present = {entry.name for entry in entries}
    added = [f"{name}={quote(name, value)}{newline}" for name, value in wanted.items() if name not in present]
    if added and text and not text.endswith("\n"):
        text += newline
    return text + "".join(added)


def remove(current: str, names: Iterable[str]) -> str:
    """`current` without the lines that assign these names (each whole line; an assignment that
    shares a line with another statement is left, rather than cut a line in two)."""
    gone = set(names)
    lines, entries = parse(current)
    owners: dict[int, int] = {}
    for entry in entries:
        for line in range(entry.start, entry.end):
            owners[line] = owners.get(line, 0) + 1
    dropped: set[int] = set()
    for entry in entries:
        span = range(entry.start, entry.end)
        if entry.name in gone and all(owners[line] == 1 for line in span):
            dropped.update(span)
    return "".join(line for number, line in enumerate(lines) if number not in dropped)


def _set(text: str, statement: Statement, name: str, value: str) -> str:
    """`text` with the value of `statement` replaced by `value`."""
    begin, end = statement.value_start, statement.value_end
    if statement.inherited:  # `NAME` alone: compose would take the shell's value
        begin = end = statement.name_end
    elif not statement.quote and statement.raw.startswith("#") and text[begin - 1 : begin] in (" ", "\t"):
        # `NAME= # comment`: compose reads the value `# comment`, but it was meant as an empty
        # value and a comment; the comment is kept after the new value.
        begin = end = len(text[:begin].rstrip(" \t"))
    written = quote(name, value)
    if written[:1] not in ("'", '"') and not _plain_fits(written, text[end : _line_end(text, end)]):
        written = _double(value)
    return text[:begin] + ("=" if statement.inherited else "") + written + text[end:]


def _line_end(text: str, position: int) -> int:
    found = text.find("\n", position)
    return len(text) if found < 0 else found


def _plain_fits(written: str, after: str) -> bool:
    """Whether compose reads `written` unquoted and followed by `after` (the rest of its line) as
    `written`: `after` must be blanks, or blanks then ` #` and a comment (and a comment needs
    a value before it: an empty value would take the comment as its value)."""
    comment = after.find(" #")
    if comment >= 0 and not written:
        return False
    return all(char in GO_SPACES for char in (after if comment < 0 else after[:comment]))


def replace(assignments: Sequence[tuple[str, str]]) -> str:
    for name, _ in assignments:
        _check_name(name)
    return "".join(f"{name}={quote(name, value)}\n" for name, value in dict(assignments).items())


def check(text: str) -> None:
    """RenderError naming the line of anything compose refuses, and of a name starting with a
    digit (compose-go's Read drops those without a word: godotenv.go, startsWithDigitRegex).
    Every name counts as set, since what `${NAME:?}` finds depends on compose's environment."""
    read(text, lambda _name: "set")
    for statement in statements(text):
        if re.match("[0-9]", statement.name):
            raise RenderError(f"line {statement.line}: is neither NAME=VALUE, a comment nor blank")


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise RenderError(f"map key {name!r}: an environment variable name is letters, digits and '_', "
                          "not starting with a digit")
