"""YAML files: mapped keys set by dotted path, with ruamel.yaml's round trip so that comments,
key order, quoting style and the file's indentation survive a merge.

What the round trip cannot keep is handled around it: comments above a `---` line are kept as
the file's preamble, and a file of comments only keeps them above the new keys.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import ScalarString

from apphub.errors import RenderError
from apphub.store.validate import JsonValue
from apphub.sync.render.jsonfile import set_path

# Comment and blank lines, then a bare `---`: what the round trip would drop.
_PREAMBLE = re.compile(r"\A((?:[ \t]*(?:#[^\n]*)?\r?\n)*---[ \t]*(?:#[^\n]*)?\r?\n)")
_DUPLICATE = re.compile(r'found duplicate key "(.*?)" with value')
_ONLY_COMMENTS = re.compile(r"\A(?:[ \t]*(?:#[^\n]*)?(?:\r?\n|\Z))*\Z")


@dataclass(frozen=True)
class Indent:
    """ruamel's three numbers: mapping indent, sequence item indent, dash offset."""

    mapping: int = 2
    sequence: int = 4
    offset: int = 2


def guess_indent(text: str) -> Indent:
    """The indentation a file uses, from its first nested mapping and its first block sequence."""
    mapping: int | None = None
    sequence: tuple[int, int] | None = None
    parent: int | None = None  # indentation of the previous line when it was `key:` alone
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lead = len(line) - len(line.lstrip(" "))
        if parent is not None and lead >= parent:
            if stripped.startswith("- ") and sequence is None:
                dash_width = 1 + len(stripped[1:]) - len(stripped[1:].lstrip(" "))
                sequence = (lead - parent + dash_width, lead - parent)
            elif not stripped.startswith("-") and mapping is None and lead > parent:
                mapping = lead - parent
        parent = lead if stripped.endswith(":") and not stripped.startswith("-") else None
        if mapping is not None and sequence is not None:
            break
    found_mapping = mapping or 2
    items, offset = sequence if sequence is not None else (found_mapping + 2, found_mapping)
    return Indent(found_mapping, max(items, offset + 2), offset)


def _round_trip(indent: Indent) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the file had on one line
    yaml.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    return yaml


def _problem(exc: YAMLError) -> str:
    # str(exc) quotes the offending line, which may hold a secret: say only what and where.
    if isinstance(exc, MarkedYAMLError):
        what = exc.problem or exc.context or "invalid YAML"
        duplicate = _DUPLICATE.match(what)
        if duplicate:  # ruamel's message quotes both values of the key
            what = f"the key {duplicate.group(1)!r} appears twice in one mapping"
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"does not parse as YAML: {what}{where}"
    return f"does not parse as YAML: {type(exc).__name__}"


def merge(current: str, assignments: Sequence[tuple[str, JsonValue]]) -> str:
    newline = "\r\n" if "\r\n" in current else "\n"
    current = current.replace("\r\n", "\n")  # ruamel keeps a "\r" in comments; the dump puts them back
    preamble = ""
    found = _PREAMBLE.match(current)
    if found:
        preamble, current = found.group(1), current[found.end() :]
    if _ONLY_COMMENTS.match(current):
        # Nothing for the round trip to hold on to: keep the comments above the new keys.
        head = current if not current or current.endswith("\n") else current + newline
        return _to_newline(preamble + head + replace(assignments), newline)
    yaml = _round_trip(guess_indent(current))
    try:
        document = yaml.load(current)
    except YAMLError as exc:
        raise RenderError(_problem(exc)) from None
    if not isinstance(document, dict):
        raise RenderError(f"merge needs a mapping at the top level, and the file holds a {type(document).__name__}")
    for target, value in assignments:
        set_path(document, target, _styled(document, target, value), new_object=CommentedMap)
    return _to_newline(preamble + _dump(yaml, document), newline)


def replace(assignments: Sequence[tuple[str, JsonValue]]) -> str:
    document = CommentedMap()
    for target, value in assignments:
        set_path(document, target, value, new_object=CommentedMap)
    return _dump(_round_trip(Indent()), document)


def check(text: str) -> None:
    try:
        for _ in YAML(typ="safe", pure=True).load_all(text):
            pass
    except YAMLError as exc:
        raise RenderError(_problem(exc)) from None


def _styled(document: Any, target: str, value: JsonValue) -> Any:
    """A new string keeps the quoting style of the string it replaces (`"..."` stays `"..."`)."""
    node = document
    parts = target.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    old = node.get(parts[-1]) if isinstance(node, dict) else None
    if isinstance(old, ScalarString) and isinstance(value, str):
        return type(old)(value)
    return value


def _dump(yaml: YAML, document: Any) -> str:
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def _to_newline(text: str, newline: str) -> str:
    return text.replace("\n", newline) if newline != "\n" else text
