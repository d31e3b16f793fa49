"""What changed between two versions of an INI file: per key, and as a unified diff, secrets masked.

A line reader, not the store's parser: history reads thousands of versions that are already valid
(each was accepted before it was committed), and a diff of a 5,000-key file must take milliseconds
(each file is read once; git's own diff, through libgit2, makes the unified diff).
It reads what configparser reads: `[section]` headers, `key = value` or `key: value` lines,
indented continuation lines, `#` and `;` comments.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from apphub.history.gitrepo import unified_diff
from apphub.store.secrets import MASK, is_encrypted

_SECTION = re.compile(r"\[(?P<header>.+)\]")

CHANGED_MARK = " (changed)"  # after a masked secret on the new side of a diff
# Whether (section, key) is a secret by the schema (a value stored encrypted is one whatever it says).
SecretRule = Callable[[str, str], bool]


@dataclass(frozen=True)
class KeyChange:
    """One key between two versions: `added`, `removed` or `changed`; values masked if secret."""

    section: str
    key: str
    change: str
    old: str | None
    new: str | None
    secret: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


class _Line(NamedTuple):  # a tuple: a 5,000-key file makes 5,000 of them, twice per diff
    text: str
    section: str | None
    key: str | None  # the option this line is (or continues)
    first: bool  # the option's own line, not a continuation
    prefix: str = ""  # of an option's own line: `key = `, its value, and what ends the line
    value: str = ""
    end: str = ""


def _lines(text: str) -> list[_Line]:
    """The lines of an INI text, each with the section and the option it belongs to, by
    configparser's rules: a line indented deeper than its option's continues its value (blank and
    comment lines between do not end it), any other `key = value` line is an option, indented or not."""
    found: list[_Line] = []
    section: str | None = None
    key: str | None = None
    indent = 0  # of the current option's line
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            found.append(_Line(line, section, None, False))
            continue
        depth = len(line) - len(line.lstrip(" \t"))
        if key is not None and depth > indent:
            found.append(_Line(line, section, key, False))
            continue
        header = _SECTION.match(line) if line[0] == "[" else None
        if header is not None:
            section, key = header.group("header"), None
            found.append(_Line(line, section, None, False))
            continue
        option = _option(line) if section is not None else None
        if option is None:
            key = None
            found.append(_Line(line, section, None, False))
        else:
            key, indent = option[0], depth
            found.append(_Line(line, section, key, True, *option[1:]))
    return found


def _option(line: str) -> tuple[str, str, str, str] | None:
    """`key = value` (or `key: value`) split as configparser's OPTCRE does, at the first delimiter:
    (key, what precedes the value, the value, what ends the line). By hand, not by a regular
    expression: a 5,000-key file has 5,000 of them, read twice per diff."""
    equals, colon = line.find("="), line.find(":")
    cut = equals if colon < 0 or 0 <= equals < colon else colon
    if cut <= 0 or not line[:cut].strip():
        return None
    after = line[cut + 1:]
    start = cut + 1 + len(after) - len(after.lstrip(" \t"))
    body = line[start:]
    value = body.rstrip()
    return line[:cut].strip(), line[:start], value, body[len(value):]


def _read(raw: bytes) -> list[_Line]:
    return _lines(raw.decode("utf-8", errors="replace").lstrip("\ufeff"))


def _values(lines: list[_Line]) -> dict[tuple[str, str], str]:
    values: dict[tuple[str, str], str] = {}
    for line in lines:
        if line.key is None or line.section is None:
            continue
        where = (line.section, line.key)
        if line.first:
            values[where] = line.value.strip()
        else:
            values[where] = (values.get(where, "") + "\n" + line.text.strip()).strip("\n")
    return values


def values_of(raw: bytes) -> dict[tuple[str, str], str]:
    """Every key's value as stored (continuation lines joined by newlines, as configparser does)."""
    return _values(_read(raw))


def key_changes(old: bytes | None, new: bytes, is_secret: SecretRule,
                parsed: dict[bytes, dict[tuple[str, str], str]] | None = None) -> list[KeyChange]:
    """Per key, added / removed / changed from `old` to `new` (None: everything is added), in the
    order of the new file, then removed keys. A secret that changed shows as changed, masked: two
    ciphertexts of one plaintext would differ anyway, so no value of a secret says anything.
    `parsed`: the values of files read before, by their bytes (a caller going through versions in
    order reads each once); it keeps the last few."""
    cache = parsed if parsed is not None else {}

    def values(raw: bytes) -> dict[tuple[str, str], str]:
        found = cache.get(raw)
        if found is None:
            found = cache[raw] = _values(_read(raw))
            while len(cache) > 4:
                del cache[next(iter(cache))]
        return found

    return _changes(values(old) if old is not None else {}, values(new), is_secret)


def _changes(before: dict[tuple[str, str], str], after: dict[tuple[str, str], str],
             is_secret: SecretRule) -> list[KeyChange]:
    found: list[KeyChange] = []
    for where, value in after.items():
        previous = before.get(where)
        if previous == value:
            continue
        secret = is_secret(*where) or is_encrypted(value) or (previous is not None and is_encrypted(previous))
        found.append(KeyChange(*where, "added" if previous is None else "changed",
                               _shown(previous, secret), _shown(value, secret), secret))
    for where, value in before.items():
        if where not in after:
            secret = is_secret(*where) or is_encrypted(value)
            found.append(KeyChange(*where, "removed", _shown(value, secret), None, secret))
    return found


def _shown(value: str | None, secret: bool) -> str | None:
    if value is None or not secret:
        return value
    return MASK if value else ""


def _masked(lines: list[_Line], is_secret: SecretRule, changed: frozenset[tuple[str, str]] = frozenset()) -> str:
    """The file's text with the value of every secret masked (its continuation lines dropped); a
    secret in `changed` shows as such, so that a diff has a line to show for it."""
    shown: list[str] = []
    secrets: dict[tuple[str, str], bool] = {}
    for line in lines:
        if line.key is None or line.section is None:
            shown.append(line.text)
            continue
        where = (line.section, line.key)
        secret = secrets.get(where)
        if secret is None or (line.first and not secret):
            secret = secrets[where] = is_secret(*where) or is_encrypted(line.value)
        if not secret:
            shown.append(line.text)
        elif line.first:
            mark = CHANGED_MARK if where in changed and line.value else ""
            shown.append(line.prefix + (_shown(line.value, True) or "") + mark + line.end)
    return "".join(shown)


def masked_text(raw: bytes, is_secret: SecretRule) -> str:
    """The file's text with the value of every secret masked."""
    return _masked(_read(raw), is_secret)


def file_diff(old: bytes | None, new: bytes, is_secret: SecretRule, name: str, old_label: str,
              new_label: str) -> tuple[list[KeyChange], str]:
    """The per-key changes and the unified diff of two versions of `name`, secrets masked on both
    sides (a changed one marked on the new side)."""
    rule = functools.cache(is_secret)
    before, after = (_read(old) if old is not None else []), _read(new)
    changes = _changes(_values(before), _values(after), rule)
    changed = frozenset((change.section, change.key) for change in changes
                        if change.secret and change.change == "changed")
    return changes, unified_diff(_masked(before, rule), _masked(after, rule, changed),
                                 f"{name}@{old_label}", f"{name}@{new_label}")
