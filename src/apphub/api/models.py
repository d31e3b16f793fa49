"""The shapes of the successful answers, for the OpenAPI document.

The routes build their bodies themselves (a read sends the snapshot's JSON rendered once); these
models only describe them, and tests/api/test_contract.py checks every answer against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def version_field(description: str = "The file's version: the first 32 hex digits of its SHA-256") -> Any:
    return Field(description=description, pattern="^[0-9a-f]{32}$", examples=["5d41402abc4b2a76b9719d911017c592"])

Values = dict[str, Any]  # typed: ports are numbers, lists are arrays, secrets ********


class SettingsRead(BaseModel):
    """Every section of one INI file."""

    version: str = version_field()
    settings: dict[str, Values] = Field(description="{section: {key: value}}, secrets masked unless revealed")


class SectionRead(BaseModel):
    """One section of one INI file."""

    version: str = version_field()
    section: str
    settings: Values = Field(description="{key: value}, secrets masked unless revealed")


class KeyChange(BaseModel):
    """One key a write changed (secrets masked)."""

    section: str
    key: str | None
    change: str = Field(examples=["set", "add", "delete"])
    old: str | None
    new: str | None


class SyncReport(BaseModel):
    """With wait=true: what the sync of this write did to each service (`done` false: not in time)."""

    done: bool
    detail: str | None = None
    version: str | None = None
    ok: bool | None = None
    refused: list[Any] | None = None
    services: list[dict[str, Any]] | None = None


class Finding(BaseModel):
    """One problem a rule or the schema finds: where, the value (masked if secret), why, how bad."""

    file: str
    section: str
    key: str | None
    value: str | None
    rule: str = Field(examples=["port_conflict", "credential_strength", "type"])
    message: str
    line: int | None
    severity: str = Field(examples=["error", "warning"])


class Validation(BaseModel):
    """POST /settings/validate: would the proposal be accepted, and every problem it has."""

    valid: bool = Field(description="True when no problem is an error (warnings do not refuse a write)")
    errors: list[Finding]
    warnings: list[Finding]


class Reference(BaseModel):
    """A key a value was made with (`${section.key}`)."""

    section: str
    key: str
    origin: str | None = Field(description="config.ini, an environment's overlay (config.prod.ini), or default")
    secret: bool


class Explanation(BaseModel):
    """Where a key's effective value comes from (secrets, and values made with one, masked)."""

    section: str
    key: str
    raw: str = Field(description="The value as written, before ${...} substitution")
    value: str | None = Field(description="The value the services get; null when it cannot be resolved")
    secret: bool = Field(description="A secret, or made with one")
    origin: str = Field(description="config.ini, the environment's overlay, or default (the schema's)",
                        examples=["config.ini", "config.prod.ini", "default"])
    line: int | None
    references: list[Reference] = Field(description="Every key it was made of, at any depth, in order")
    env: list[str] = Field(description="Every environment variable it was made of")
    error: str | None = Field(description="Why it cannot be resolved (a cycle, a missing key), naming the chain")


class WriteAnswer(BaseModel):
    """A write's answer: the new version, what changed, the sections written as they are now."""

    version: str = version_field()
    previous_version: str = version_field("The version the write replaced")
    changed: list[KeyChange]
    settings: dict[str, Values]
    warnings: list[Finding] = Field(default_factory=list, description="What the rules warn of: accepted all the same")
    sync: SyncReport | None = Field(default=None, description="Only with wait=true")


class AuditEntry(BaseModel):
    """One audited event."""

    id: int
    at: str = Field(description="UTC, ISO 8601")
    actor: str
    source: str
    request_id: str | None
    action: str
    file: str | None
    version_before: str | None
    version_after: str | None
    message: str | None
    commit: str | None = Field(description="The history's commit of the version this event made (null until "
                                           "committed, within a second, or for events that made no version)")
    changes: list[KeyChange]
    warnings: list[str] = Field(default_factory=list, description="The rules' warnings the write was accepted with")


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    entries: list[AuditEntry]
    next: str | None = Field(description="The next page's path and query, while there may be one")


class Health(BaseModel):
    """The process answers."""

    status: str = Field(examples=["ok"])
    version: str


def ok(model: type[BaseModel], headers: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """The documented 200 of a route that builds its own body."""
    return {200: {"model": model, **({"headers": headers} if headers else {})}}
