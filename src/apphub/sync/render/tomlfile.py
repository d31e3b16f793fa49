"""TOML files: mapped keys set by dotted path into tables, with tomlkit so that comments,
order and the layout of untouched lines survive a merge. The render is checked with the
standard library's tomllib, the reader most Python services use.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import AoT

from apphub.errors import RenderError
from apphub.store.validate import JsonValue
from apphub.sync.render.jsonfile import kind_of, split_path


def merge(current: str, assignments: Sequence[tuple[str, JsonValue]]) -> str:
    try:
        document = tomlkit.parse(current)
    except ParseError as exc:
        # tomlkit's message can quote a character of the file; line and column say enough.
        raise RenderError(f"does not parse as TOML (line {exc.line}, column {exc.col})") from None
    _set_all(document, assignments)
    return tomlkit.dumps(document)


def replace(assignments: Sequence[tuple[str, JsonValue]]) -> str:
    document = tomlkit.document()
    _set_all(document, assignments)
    return tomlkit.dumps(document)


def check(text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line and column, and does not quote the text.
        raise RenderError(f"does not parse as TOML: {exc}") from exc


def _set_all(document: tomlkit.TOMLDocument, assignments: Sequence[tuple[str, JsonValue]]) -> None:
    for target, value in assignments:
        try:
            _set(document, target, value)
        except TOMLKitError as exc:
            raise RenderError(f"map key {target!r}: cannot be written as TOML: {type(exc).__name__}") from None


def _set(document: tomlkit.TOMLDocument, target: str, value: JsonValue) -> None:
    parts = split_path(target)
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        if part not in node:
            node[part] = tomlkit.table()
        child = node[part]
        if isinstance(child, AoT) or not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            kind = "an array of tables" if isinstance(child, AoT) else kind_of(child)
            raise RenderError(f"map key {target!r}: {where} holds {kind}, not a table")
        node = child
    node[parts[-1]] = value

