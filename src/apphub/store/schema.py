"""The schema: what sections and keys `config.ini` and `system.ini` may hold, and their rules.

A schema file is YAML with two parts, `config` and `system`, one per INI file:

    config:
      extra_sections: false          # may a write add a section the schema does not name?
      sections:
        gitea:
          description: Gitea admin account apphub uses
          extra_keys: false          # may a write add a key the schema does not name?
          keys:
            base_url: {type: url, required: true, default: "http://websoft9-git:3000/api/v1"}
            user_pwd: {type: string, secret: true, min_length: 8, generate: password}

The built-in schema (Websoft9's sections) loads first, then every `DATA/schema.d/*.yaml` in name
order. A later file adds sections, adds or replaces keys, and overrides the flags it sets.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from apphub.errors import SchemaError

logger = logging.getLogger("apphub.schema")

KeyType = Literal["string", "int", "bool", "port", "url", "email", "hostname", "path", "enum", "list"]
ApplyMode = Literal["hot", "reload", "restart"]
Generator = Literal["password", "token_hex"]
FileName = Literal["config", "system"]

# How strong each `apply` is, so a plan can take the strongest one the changed keys need.
APPLY_STRENGTH: dict[str, int] = {"hot": 0, "reload": 1, "restart": 2}


def compiling(pattern: str | None) -> str | None:
    """`pattern` if it is a valid regular expression; else ValueError naming it."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    return pattern


class KeySpec(BaseModel):
    """The rules for one key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: KeyType = "string"
    description: str = ""
    secret: bool = False
    required: bool = False
    default: str | int | bool | list[str] | None = None
    min: int | None = None
    max: int | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    pattern: str | None = None
    choices: list[str] | None = None
    schemes: list[str] = Field(default_factory=lambda: ["http", "https"])
    apply: ApplyMode = "restart"
    generate: Generator | None = None
    # A password: its strength estimate (zxcvbn's 0-4) must reach this (see rules/strength.py).
    min_score: int | None = Field(default=None, ge=0, le=4)
    # A port key: a port the service binds on this host (checked against the others and what holds
    # it now, see rules/ports.py); false for a port inside a container's own network.
    host_port: bool = True

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        return compiling(pattern)

    @model_validator(mode="after")
    def _consistent(self) -> KeySpec:
        if self.type == "enum" and not self.choices:
            raise ValueError("type enum needs a non-empty 'choices' list")
        if self.choices and self.type not in ("enum", "list"):
            raise ValueError(f"'choices' only applies to enum and list keys, not {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "port"):
            raise ValueError(f"'min' and 'max' only apply to int and port keys, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.generate is not None and self.default is not None:
            raise ValueError("a key has either a 'default' or a 'generate', not both")
        if self.min_score is not None and not (self.secret and self.type == "string"):
            raise ValueError("'min_score' applies to secret string keys (passwords) only")
        return self


class SectionSpec(BaseModel):
    """The rules for one section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    extra_keys: bool = False
    keys: dict[str, KeySpec] = Field(default_factory=dict)


class Condition(BaseModel):
    """What a key's value must be: set (non-empty) or empty, equal to a value, one of some, or
    matching a pattern. With no test given, the key must be set."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    key: str
    set: bool | None = None
    equals: str | None = None
    one_of: list[str] | None = Field(default=None, alias="in")
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        return compiling(pattern)

    @field_validator("key")
    @classmethod
    def _key_reference(cls, key: str) -> str:
        return check_reference(key)


class CrossRule(BaseModel):
    """A rule about several keys of one file, declared in the schema (see rules/crosskey.py):

        - id: npm_ssl_pair
          when: {key: nginx_proxy_manager.ssl_cert}        # only while the cert is set...
          require: [nginx_proxy_manager.ssl_key]          # ...the key must be set too
        - id: admin_passwords_differ
          severity: warning
          distinct: [gitea.user_pwd, portainer.user_pwd]  # no two of them equal ("*.port" globs)
        - id: https_when_tls
          when: {key: gitea.tls, equals: "true"}
          then: {key: gitea.base_url, pattern: "^https://"}

    A key is `section.key`; `[a.b].c` names a section whose name holds a dot.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    severity: Literal["error", "warning"] = "error"
    message: str | None = None
    when: Condition | None = None
    require: list[str] | None = None
    forbid: list[str] | None = None
    distinct: list[str] | None = None
    then: Condition | None = None

    @field_validator("require", "forbid")
    @classmethod
    def _references(cls, keys: list[str] | None) -> list[str] | None:
        return [check_reference(key) for key in keys] if keys is not None else None

    @field_validator("distinct")
    @classmethod
    def _patterns(cls, keys: list[str] | None) -> list[str] | None:
        return [check_reference(key, globs=True) for key in keys] if keys is not None else None

    @model_validator(mode="after")
    def _one_check(self) -> CrossRule:
        checks = [name for name in ("require", "forbid", "distinct", "then") if getattr(self, name) is not None]
        if len(checks) != 1:
            raise ValueError(f"rule {self.id!r} needs exactly one of require, forbid, distinct, then "
                             f"(it has {', '.join(checks) or 'none'})")
        if self.distinct is not None and self.when is not None:
            raise ValueError(f"rule {self.id!r}: a distinct rule holds always; it takes no 'when'")
        return self


_REFERENCE = re.compile(r"^(?:\[(?P<bracketed>[^\]]+)\]|(?P<section>[^.\[\]]+))\.(?P<key>[^\[\]]+)$")


def check_reference(text: str, *, globs: bool = False) -> str:
    """`text` if it names a key as `section.key` (or `[sec.tion].key`); else ValueError."""
    if parse_reference(text) is None or (not globs and any(c in text for c in "*?")):
        raise ValueError(f"{text!r} does not name a key as section.key" + (" (globs * and ? allowed)" if globs
                                                                             else ""))
    return text


def parse_reference(text: str) -> tuple[str, str] | None:
    """(section, key) of `section.key` or `[sec.tion].key`, or None."""
    found = _REFERENCE.match(text)
    if found is None:
        return None
    return found["bracketed"] or found["section"], found["key"]


class FileSchema(BaseModel):
    """The rules for one INI file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extra_sections: bool = False
    sections: dict[str, SectionSpec] = Field(default_factory=dict)
    rules: list[CrossRule] = Field(default_factory=list)

    def key(self, section: str, key: str) -> KeySpec | None:
        spec = self.sections.get(section)
        return spec.keys.get(key) if spec is not None else None

    def is_secret(self, section: str, key: str) -> bool:
        spec = self.key(section, key)
        return spec is not None and spec.secret

    @cached_property
    def secret_keys(self) -> frozenset[tuple[str, str]]:
        """Every (section, key) the schema calls a secret: one set lookup per key where thousands
        are read (the schema is frozen, so this is worked out once)."""
        return frozenset((section, key) for section, spec in self.sections.items()
                         for key, key_spec in spec.keys.items() if key_spec.secret)

    @cached_property
    def keys_with_defaults(self) -> dict[tuple[str, str], KeySpec]:
        """Every key the schema gives a default, by (section, key)."""
        return {(section, key): key_spec for section, spec in self.sections.items()
                for key, key_spec in spec.keys.items() if key_spec.default is not None}


class Schema(BaseModel):
    """The rules for both files; what `load_schema` returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: FileSchema = Field(default_factory=FileSchema)
    system: FileSchema = Field(default_factory=FileSchema)
    sources: tuple[str, ...] = ()

    def for_file(self, name: FileName) -> FileSchema:
        return self.config if name == "config" else self.system


def builtin_schema_text() -> str:
    return resources.files("apphub.store").joinpath("builtin/websoft9.yaml").read_text(encoding="utf-8")


def load_schema(schema_dir: Path | None) -> Schema:
    """The built-in schema merged with every `*.yaml` / `*.yml` file of `schema_dir`, in name order."""
    documents: list[tuple[str, Any]] = [("<built-in websoft9.yaml>", yaml.safe_load(builtin_schema_text()))]
    if schema_dir is not None and schema_dir.is_dir():
        for path in sorted([*schema_dir.glob("*.yaml"), *schema_dir.glob("*.yml")]):
            try:
                documents.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8"))))
            except (OSError, UnicodeDecodeError) as exc:
                raise SchemaError(f"{path}: cannot be read: {exc}") from exc
            except yaml.YAMLError as exc:
                raise SchemaError(f"{path}: is not valid YAML: {exc}") from exc
    return merge_schemas(documents)


def merge_schemas(documents: Iterable[tuple[str, Any]]) -> Schema:
    merged: dict[str, dict[str, Any]] = {"config": {"sections": {}}, "system": {"sections": {}}}
    sources: list[str] = []
    for source, document in documents:
        if document is None:  # an empty file, or one of comments only
            continue
        _check_file(source, document)
        for file_name in ("config", "system"):
            part = document.get(file_name)
            if part is None:
                continue
            target = merged[file_name]
            if "extra_sections" in part:
                target["extra_sections"] = part["extra_sections"]
            rules = target.setdefault("rules", {})
            for rule in part.get("rules") or []:  # a later file's rule of the same id replaces it
                rules[rule.get("id") if isinstance(rule, dict) else None] = rule
            for name, section in (part.get("sections") or {}).items():
                section = section or {}
                existing = target["sections"].setdefault(name, {"keys": {}})
                for flag in ("description", "extra_keys"):
                    if flag in section:
                        existing[flag] = section[flag]
                existing["keys"].update(section.get("keys") or {})
        sources.append(source)
    for part in merged.values():
        part["rules"] = list(part.get("rules", {}).values())
    try:
        return Schema.model_validate({**merged, "sources": tuple(sources)})
    except ValidationError as exc:
        raise SchemaError(_describe(exc, " + ".join(sources))) from exc


def _check_file(source: str, document: Any) -> None:
    """Check one file's shape on its own, so an error names the file that has it."""
    if not isinstance(document, dict):
        raise SchemaError(f"{source}: the top level must be a mapping with 'config' and/or 'system'")
    try:
        Schema.model_validate({k: v for k, v in document.items()})
    except ValidationError as exc:
        raise SchemaError(_describe(exc, source)) from exc


def _describe(exc: ValidationError, source: str) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"  {where}: {error['msg']}")
    return f"{source}: invalid schema:\n" + "\n".join(problems)


class SchemaSource:
    """The schema of one data folder, loaded again when a file of `schema.d` changes.

    So the server enforces the rules an operator just added, as the CLI does, without a restart.
    A change that breaks the schema is refused: the last good one stays in force, and `error`
    (and the log) says why until the file is fixed.
    """

    # Reads may see a schema change up to this late; a write always looks first.
    READ_INTERVAL_S = 1.0

    def __init__(self, schema_dir: Path) -> None:
        self._dir = schema_dir
        self._fingerprint = _fingerprint(schema_dir)
        self._schema = load_schema(schema_dir)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()
        self.error: str | None = None

    def current(self, *, fresh: bool = False) -> Schema:
        if not fresh and time.monotonic() - self._checked_at < self.READ_INTERVAL_S:
            return self._schema
        with self._lock:
            fingerprint = _fingerprint(self._dir)
            self._checked_at = time.monotonic()
            if fingerprint != self._fingerprint:
                self._fingerprint = fingerprint
                try:
                    self._schema = load_schema(self._dir)
                    self.error = None
                    logger.info("schema reloaded from %s", self._dir)
                except SchemaError as exc:
                    self.error = str(exc)
                    logger.error("schema change refused, the previous schema stays in force: %s", exc)
            return self._schema


def _fingerprint(schema_dir: Path) -> tuple[object, ...]:
    try:
        entries = sorted(os.scandir(schema_dir), key=lambda entry: entry.name)
    except OSError:
        return ()
    found: list[object] = []
    for entry in entries:
        if entry.name.endswith((".yaml", ".yml")):
            try:
                status = entry.stat()
            except OSError:
                continue
            found.append((entry.name, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns))
    return tuple(found)
