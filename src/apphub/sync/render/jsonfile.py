"""JSON files: mapped keys set by dotted path (`server.port`), missing objects created.

JSON has no comments to keep, so a merge re-serialises the document; what it keeps is what a
reader of the file notices: the order of the keys, the indentation (detected, two spaces by
default), one-line files staying on one line, CRLF line ends and the final newline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apphub.errors import RenderError
from apphub.store.validate import JsonValue

_INDENTED_LINE = re.compile(r"^([ \t]+)\S", re.MULTILINE)


@dataclass(frozen=True)
class Layout:
    """How a JSON file is written out."""

    indent: str | None = "  "
    compact: bool = False  # one-line files written without blanks after ',' and ':'
    ensure_ascii: bool = False
    newline: str = "\n"
    final_newline: bool = True

    def dump(self, document: Any) -> str:
        separators = (",", ":") if self.compact else ((",", ": ") if self.indent is not None else (", ", ": "))
        text = json.dumps(document, indent=self.indent, separators=separators, ensure_ascii=self.ensure_ascii)
        if self.final_newline:
            text += "\n"
        return text.replace("\n", self.newline) if self.newline != "\n" else text


def detect_layout(text: str) -> Layout:
    body = text.strip()
    newline = "\r\n" if "\r\n" in text else "\n"
    final_newline = text.endswith("\n")
    # Escapes only where the file shows no raw non-ASCII and already uses \u escapes.
    ensure_ascii = text.isascii() and "\\u" in text
    if "\n" not in body:
        return Layout(None, compact=bool(body) and not re.search(r"[,:] ", body), ensure_ascii=ensure_ascii,
                      newline=newline, final_newline=final_newline)
    found = _INDENTED_LINE.search(body)
    indent = found.group(1) if found else ""
    return Layout(indent, ensure_ascii=ensure_ascii, newline=newline, final_newline=final_newline)


def split_path(target: str) -> list[str]:
    parts = target.split(".")
    if not all(parts):
        raise RenderError(f"map key {target!r}: a target is a dotted path of names (`server.port`)")
    return parts


def set_path(document: dict[str, Any], target: str, value: Any, *, new_object: type[dict[str, Any]] = dict) -> None:
    """Set `document[a][b][c] = value` for target `a.b.c`, creating missing objects."""
    parts = split_path(target)
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            child = node[part] = new_object()
        elif not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise RenderError(f"map key {target!r}: {where} holds {kind_of(child)}, not an object")
        node = child
    node[parts[-1]] = value


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The message names line and column only; the document is not quoted.
        raise RenderError(f"does not parse as JSON: {exc}") from exc


def merge(current: str, assignments: Sequence[tuple[str, JsonValue]]) -> str:
    if not current.strip():
        return replace(assignments)
    document = load(current)
    if not isinstance(document, dict):
        raise RenderError(f"merge needs a JSON object at the top level, and the file holds {kind_of(document)}")
    for target, value in assignments:
        set_path(document, target, value)
    return detect_layout(current).dump(document)


def replace(assignments: Sequence[tuple[str, JsonValue]]) -> str:
    document: dict[str, Any] = {}
    for target, value in assignments:
        set_path(document, target, value)
    return Layout().dump(document)


def check(text: str) -> None:
    load(text)
