"""`.env` files as docker compose reads them: `NAME=value` lines, `#` comments, quoted values.

A merge replaces the value of each mapped variable where it stands (every assignment of it, so
no stale earlier one remains), keeps the rest of the line (`export `, blanks around `=`, an
inline comment) and every other line, and appends the variables the file does not have yet.

Values are written so that compose reads back exactly the text apphub meant
(https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/#env-file):
plain when nothing in them is special (a `\\` is literal there); in single quotes (literal: no
`$` interpolation, no escapes) when they hold blanks, `#`, quotes or `$`; in double quotes, with
`\\`, `"`, `$` and line breaks escaped, when they hold a `'` or a line break. compose-go's dotenv
parser takes the first quote not preceded by a backslash as the closing one and trims quote
characters off both ends of a quoted value, so a value that needs quotes and ends in `\\` (or needs
double quotes and ends in `"`) has no quoting that reads back: it is refused, not written to be misread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from apphub.errors import RenderError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `export NAME =` up to the value; compose also accepts `.` in names and `:` as the delimiter.
_ASSIGNMENT = re.compile(r"(?P<prefix>[ \t]*(?:export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_.]*)[ \t]*[=:][ \t]*)")
_PLAIN = re.compile(r"[^\s#'\"$`]*")
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


@dataclass(frozen=True)
class Entry:
    """One assignment: lines [start, end) of the file; `tail` is what follows the value on its
    last line (an inline comment, blanks), line end included."""

    name: str
    start: int
    end: int
    prefix: str
    tail: str


def quote(name: str, value: str) -> str:
    """`value` as compose reads it back unchanged."""
    if _PLAIN.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value and not value.endswith("\\"):
        return f"'{value}'"
    if value.endswith(("\\", '"')):
        raise RenderError(f"{name}: the value needs quotes in a .env file but ends in \\ or \", "
                          "which docker compose would not read back unchanged")
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("\n", "\\n").replace("\r", "\\r"))
    return f'"{escaped}"'


def parse(text: str) -> tuple[list[str], list[Entry]]:
    """The file's lines and its assignments; RenderError naming the line of anything else."""
    lines = _LINE.findall(text)
    entries: list[Entry] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            raise RenderError(f"line {index + 1}: is neither NAME=VALUE, a comment nor blank")
        prefix, rest = match["prefix"], line[match.end() :]
        if rest.startswith("#") and prefix[-1] in " \t":
            # `NAME= # comment`: an empty value, and the blank before `#` belongs to the comment.
            kept = prefix.rstrip(" \t")
            prefix, rest = kept, prefix[len(kept) :] + rest
        end, tail = _value_end(lines, index, rest)
        entries.append(Entry(match["name"], index, end, prefix, tail))
        index = end
    return lines, entries


def _value_end(lines: list[str], index: int, rest: str) -> tuple[int, str]:
    """Where the value starting with `rest` on line `index` ends: (next line, tail)."""
    if rest[:1] in ("'", '"'):
        quote_char = rest[0]
        text, line, position = rest, index, 1
        while True:
            found = _closing_quote(text, quote_char, position)
            if found is not None:
                return line + 1, text[found + 1 :]
            line += 1
            if line >= len(lines):  # compose: "unterminated quoted value"
                raise RenderError(f"line {index + 1}: the quoted value is never closed")
            text, position = lines[line], 0
    comment = re.search(r"[ \t]+#", rest)
    eol = re.search(r"\r?\n\Z", rest)
    start = comment.start() if comment else (eol.start() if eol else len(rest))
    stripped_end = len(rest[:start].rstrip(" \t"))
    return index + 1, rest[stripped_end:]


def _closing_quote(text: str, quote_char: str, position: int) -> int | None:
    while True:
        found = text.find(quote_char, position)
        if found < 0:
            return None
        backslashes = len(text[:found]) - len(text[:found].rstrip("\\"))
        if backslashes % 2 == 0:
            return found
        position = found + 1


def merge(current: str, assignments: Sequence[tuple[str, str]]) -> str:
    lines, entries = parse(current)
    newline = "\r\n" if "\r\n" in current else "\n"
    wanted = dict(assignments)
    for name in wanted:
        _check_name(name)
    present = {entry.name for entry in entries}
    for entry in reversed(entries):  # from the end, so earlier indexes stay valid
        if entry.name in wanted:
            lines[entry.start : entry.end] = [entry.prefix + quote(entry.name, wanted[entry.name]) + entry.tail]
    added = [f"{name}={quote(name, value)}{newline}" for name, value in wanted.items() if name not in present]
    if added and lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    return "".join(lines + added)


def replace(assignments: Sequence[tuple[str, str]]) -> str:
    for name, _ in assignments:
        _check_name(name)
    return "".join(f"{name}={quote(name, value)}\n" for name, value in dict(assignments).items())


def check(text: str) -> None:
    parse(text)


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise RenderError(f"map key {name!r}: an environment variable name is letters, digits and '_', "
                          "not starting with a digit")
