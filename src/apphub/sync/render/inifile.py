"""INI files (Gitea's `app.ini`, Cockpit's `cockpit.conf`): mapped keys set by splicing lines.

A map key is `section.KEY`, split at the last dot (`repository.local.PATH` is section
`repository.local`, key `PATH`); a key without a dot lives before the first section, where
Gitea keeps `APP_NAME` and `RUN_MODE`. Merge edits go through IniDocument.with_edits, so every
byte of a line apphub does not change stays as it was: comments, spacing, order, CRLF.

Names are matched exactly as written, case included. Cockpit reads section and key names
case-insensitively but Gitea does not, so folding case here would edit the wrong key of one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from apphub.errors import IniParseError, RenderError
from apphub.store.inidoc import TOP_LEVEL, IniDocument, SetValue
from apphub.store.validate import JsonValue


def as_text(value: JsonValue) -> str:
    """A typed value as text, for formats that only hold text (INI, env, template output): the
    same rule as `${...}` inside a longer string. Booleans are true/false, lists comma-joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def split_key(target: str) -> tuple[str, str]:
    """`section.KEY` at the last dot; a key without a dot is top-level (section "")."""
    section, _, key = target.rpartition(".")
    if not key or target.startswith(".") or (section and not section.strip()):
        raise RenderError(f"map key {target!r}: an INI target is `section.KEY`, or `KEY` before any section")
    return section if section else TOP_LEVEL, key


def parse(text: str, source: str) -> IniDocument:
    try:
        return IniDocument(text, source, top_level=True)
    except IniParseError as exc:
        # `public` leaves out the quoted line, which may be a password. The cause quotes it too.
        raise RenderError(f"does not parse as INI: {exc.public}") from None


def merge(current: str, assignments: Sequence[tuple[str, str]], source: str) -> str:
    """`current` with each (target, text) set; a missing key or section is added."""
    return _apply(parse(current, source), assignments)


def replace(assignments: Sequence[tuple[str, str]], source: str) -> str:
    """A file holding only the mapped keys, top-level ones first, sections in map order."""
    return _apply(IniDocument("", source, top_level=True), assignments)


def check(text: str, source: str) -> None:
    parse(text, source)


def _apply(document: IniDocument, assignments: Sequence[tuple[str, str]]) -> str:
    for target, value in assignments:
        section, key = split_key(target)
        if document.get(section, key) == value:
            continue  # each edit parses the file again; most renders change nothing
        try:
            document = document.with_edits([SetValue(section, key, value)])
        except IniParseError as exc:  # a key name that breaks the line it is written on
            raise RenderError(f"map key {target!r}: cannot be written as INI: {exc.public}") from None
        except ValueError as exc:
            # IniDocument's messages name the section and key, never the value.
            raise RenderError(f"map key {target!r}: cannot be written as INI: {exc}") from exc
    return document.text
