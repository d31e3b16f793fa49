"""Checking values against the schema, and converting them between JSON and INI text.

Every check returns the problems it finds instead of raising at the first one, so that a write
or `apphub check` reports everything that is wrong at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from apphub.errors import FieldError
from apphub.store.schema import FileSchema, KeySpec
from apphub.store.secrets import MASK

MAX_VALUE_LENGTH = 4096
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
# C0 and C1 controls and the Unicode line and paragraph separators: none belongs in a one-line value.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INT = re.compile(r"^[+-]?\d{1,18}$")
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

JsonValue = str | int | bool | list[str]
# The line of a section (key None) or key in the file, for error messages.
LineLookup = Callable[[str, str | None], int | None]
# The value an error may show for (section, key, value): masked or None when it must not be shown.
MaskFn = Callable[[str, str | None, object], str | None]


@dataclass(frozen=True)
class Problem:
    """A rule a value breaks, before it is placed in a section and key."""

    rule: str
    message: str


def check_name(kind: str, name: str) -> Problem | None:
    """Section and key names must be plain words that INI can hold and a path can carry."""
    if not NAME_PATTERN.match(name):
        return Problem(
            "name",
            f"{kind} name {name!r} is not allowed: use letters, digits, '_', '.' or '-' (at most 128, "
            "not starting with '.' or '-')",
        )
    return None


def check_text(value: str) -> list[Problem]:
    """Rules every stored value follows, whatever its type."""
    problems = []
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return [Problem("encoding", "is not valid Unicode text (it holds a lone surrogate)")]
    if len(value) > MAX_VALUE_LENGTH:
        problems.append(Problem("max_length", f"is {len(value)} characters long; the limit is {MAX_VALUE_LENGTH}"))
    if _CONTROL.search(value):
        problems.append(Problem("control_characters", "contains control characters (line breaks, tabs, NUL...)"))
    elif value != value.strip():
        problems.append(Problem("whitespace", "starts or ends with blanks, which an INI file cannot keep"))
    return problems


# ${section.key} or ${env:NAME}, not the escaped $${ (store/substitution.py resolves them)
_REFERENCE = re.compile(r"(?<!\$)\$\{[^}]*\}")


def check_value(spec: KeySpec | None, value: str, *, resolved: bool = False) -> list[Problem]:
    """Every rule `value` (INI text, secrets in plaintext) breaks for a key with `spec`. A value
    that refers to others is checked for its type as it resolves (rules/references.py calls this
    with `resolved`), not as written."""
    problems = check_text(value)
    if problems or spec is None:
        return problems
    if value == "":
        return [Problem("required", "is required and cannot be empty")] if spec.required else []
    if not resolved and not spec.secret and _REFERENCE.search(value):
        return problems  # refers to other values: the rules check what it resolves to (rules/references.py)
    problems += _check_type(spec, value)
    if spec.min_length is not None and len(value) < spec.min_length:
        problems.append(Problem("min_length", f"must be at least {spec.min_length} characters long"))
    if spec.max_length is not None and len(value) > spec.max_length:
        problems.append(Problem("max_length", f"must be at most {spec.max_length} characters long"))
    if spec.pattern is not None and spec.type != "list" and not re.search(spec.pattern, value):
        problems.append(Problem("pattern", f"does not match the pattern {spec.pattern}"))
    return problems


def _check_type(spec: KeySpec, value: str) -> list[Problem]:
    kind = spec.type
    if kind in ("int", "port"):
        if not _INT.match(value):
            return [Problem("type", "must be a whole number")]
        number = int(value)
        low = spec.min if spec.min is not None else (1 if kind == "port" else None)
        high = spec.max if spec.max is not None else (65535 if kind == "port" else None)
        if low is not None and number < low:
            return [Problem("min", f"must be {low} or more")]
        if high is not None and number > high:
            return [Problem("max", f"must be {high} or less")]
        return []
    if kind == "bool":
        if value.lower() not in _TRUE | _FALSE:
            return [Problem("type", "must be true or false")]
        return []
    if kind == "url":
        return _check_url(value, spec.schemes)
    if kind == "email":
        return [] if _EMAIL.match(value) else [Problem("type", "is not an e-mail address like name@example.com")]
    if kind == "hostname":
        return [] if is_hostname(value) else [Problem("type", "is not a host name or an IP address")]
    if kind == "path":
        if not value.startswith("/"):
            return [Problem("type", "must be an absolute path (starting with /)")]
        return []
    if kind == "enum":
        choices = spec.choices or []
        return [] if value in choices else [Problem("choices", f"must be one of: {', '.join(choices)}")]
    if kind == "list":
        return _check_list(spec, value)
    return []


def _check_url(value: str, schemes: list[str]) -> list[Problem]:
    if " " in value:
        return [Problem("type", "is not a URL: it contains a space")]
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading .port validates it
    except ValueError:  # its message can quote the value, which may be a secret
        return [Problem("type", "is not a URL: its host or port part is malformed")]
    if parts.scheme not in schemes:
        return [Problem("type", f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")]
    if not parts.hostname:
        return [Problem("type", "is not a URL: it has no host")]
    return []


def _check_list(spec: KeySpec, value: str) -> list[Problem]:
    items = split_list(value)
    problems = []
    for number, item in enumerate(items, start=1):
        # Name the item by position for a secret list: a message must never carry a secret.
        shown = f"item {number}" if spec.secret else f"item {item!r}"
        if item == "":
            problems.append(Problem("type", "has an empty item (two commas in a row, or a comma at an end)"))
            break
        if spec.pattern is not None and not re.search(spec.pattern, item):
            problems.append(Problem("pattern", f"{shown} does not match the pattern {spec.pattern}"))
        if spec.choices is not None and item not in spec.choices:
            problems.append(Problem("choices", f"{shown} is not one of: {', '.join(spec.choices)}"))
    return problems


def is_hostname(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")] if value.strip() else []


# -- JSON <-> INI text -------------------------------------------------------------------------


def to_ini_text(spec: KeySpec | None, value: object) -> str | Problem:
    """The INI text for a JSON value sent by a client, or the Problem with its type."""
    if isinstance(value, bool):
        if spec is not None and spec.type != "bool":
            return Problem("type", f"must be a {_json_kind(spec)}, not true/false")
        return "true" if value else "false"
    if isinstance(value, int):
        if spec is not None and spec.type not in ("int", "port", "string"):
            return Problem("type", f"must be a {_json_kind(spec)}, not a number")
        return str(value)
    if isinstance(value, str):
        if spec is not None and spec.type == "bool" and value.lower() in _TRUE | _FALSE:
            return "true" if value.lower() in _TRUE else "false"
        return value
    if isinstance(value, list):
        if spec is None or spec.type != "list":
            kind = _json_kind(spec) if spec is not None else "string"
            return Problem("type", f"must be a {kind}, not a list")
        if not all(isinstance(item, str) for item in value):
            return Problem("type", "must be a list of strings")
        if any("," in item for item in value):
            return Problem("type", "list items cannot contain commas")
        return ",".join(value)
    if value is None:
        return Problem("type", "null is not a value; send \"\" to empty the key, or DELETE it")
    return Problem("type", f"must be a {_json_kind(spec) if spec else 'string'}, not {type(value).__name__}")


def to_json_value(spec: KeySpec | None, text: str) -> JsonValue:
    """The typed JSON value of INI text; text that does not fit its type is returned unchanged.

    An empty list reads as []; other empty values stay "" (which a write accepts back as "unset").
    """
    if spec is not None and spec.type == "list":
        return split_list(text)
    if spec is None or text == "":
        return text
    if spec.type in ("int", "port") and _INT.match(text):
        return int(text)
    if spec.type == "bool" and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    return text


def default_text(default: str | int | bool | list[str]) -> str:
    """A schema default as the INI text a file would hold."""
    if isinstance(default, bool):
        return "true" if default else "false"
    return ",".join(default) if isinstance(default, list) else str(default)


def _json_kind(spec: KeySpec) -> str:
    return {"int": "number", "port": "port number", "bool": "boolean", "list": "list of strings"}.get(
        spec.type, "string"
    )


def shown_value(schema: FileSchema, section: str, key: str | None, value: object) -> str | None:
    """The value an error may show: only that of a key the schema knows, masked if it is secret.

    An unknown key may be a mistyped secret (`user_password`), so its value is not echoed either.
    """
    if value is None or key is None:
        return None
    spec = schema.key(section, key)
    if spec is None:
        return None
    return MASK if spec.secret and value != "" else str(value)


# -- whole files -------------------------------------------------------------------------------


def check_file(
    schema: FileSchema,
    values: Mapping[str, Mapping[str, str]],
    *,
    file: str,
    only: Iterable[tuple[str, str]] | None = None,
    line_of: LineLookup | None = None,
    mask: MaskFn | None = None,
) -> list[FieldError]:
    """Every problem of a whole file's plaintext values against its schema.

    With `only`, checks just those (section, key) pairs, plus the section rules of their
    sections: how a write is checked without blaming it for problems it did not touch.
    """
    wanted = set(only) if only is not None else None
    touched_sections = {section for section, _ in wanted} if wanted is not None else set(values)
    errors: list[FieldError] = []

    def report(section: str, key: str | None, problem: Problem, value: str | None = None) -> None:
        shown = mask(section, key, value) if (mask is not None and key is not None and value is not None) else value
        line = line_of(section, key) if line_of is not None else None
        errors.append(FieldError(section, key, problem.rule, problem.message, shown, file, line))

    for section, keys in values.items():
        if section not in touched_sections:
            continue
        section_spec = schema.sections.get(section)
        if section_spec is None and not schema.extra_sections:
            known = ", ".join(schema.sections) or "none"
            report(section, None, Problem("unknown_section", f"is not a section of {file} (known: {known})"))
            continue
        if (problem := check_name("section", section)) is not None:
            report(section, None, problem)
        for key, value in keys.items():
            if wanted is not None and (section, key) not in wanted:
                continue
            spec = section_spec.keys.get(key) if section_spec is not None else None
            if spec is None and section_spec is not None and not section_spec.extra_keys:
                report(section, key, Problem("unknown_key", f"is not a key of [{section}]"), value)
                continue
            if (problem := check_name("key", key)) is not None:
                report(section, key, problem, value)
                continue
            for problem in check_value(spec, value):
                report(section, key, problem, value)
        if section_spec is not None:
            for key, spec in section_spec.keys.items():
                if spec.required and key not in keys:
                    report(section, key, Problem("required", f"is required in [{section}] but missing"))
    if wanted is None:
        for section, section_spec in schema.sections.items():
            if section not in values and any(spec.required for spec in section_spec.keys.values()):
                report(section, None, Problem("required", "is required but missing (it has required keys)"))
    return errors

