"""What every rule judges: one version of `config.ini` and `system.ini` together, and the keys a
write touches. A rule returns FieldErrors (file, line, section, key, rule, message, severity) and
never raises for what it finds; its messages never hold a secret's value.

A write is judged on the keys it touches (a rule about two keys counts as touched when either is),
so that a condition it did not cause (a port another program took since) does not refuse it; a
whole-file check (`apphub check`, a hand edit, POST /settings/validate without a body) judges
every key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from apphub.errors import ApphubError, FieldError, SecretError
from apphub.store.schema import FileSchema, KeySpec
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot
from apphub.store.substitution import Resolver, Stored, SubstitutionError
from apphub.store.validate import default_text, shown_value

CONFIG = "config.ini"
SYSTEM = "system.ini"
Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class KeyRef:
    """One key of one file: `config.ini [gitea] user_pwd`."""

    file: str
    section: str
    key: str

    def __str__(self) -> str:
        return f"{self.file} [{self.section}] {self.key}"


class Candidate:
    """One version of the files a rule judges (the proposed one, for a write), read lazily: a
    secret is decrypted only when a rule asks for its value."""

    def __init__(self, files: Mapping[str, Snapshot], touched: Collection[KeyRef] | None = None) -> None:
        """`touched`: the keys the write sets or deletes; None: judge everything."""
        self._files = dict(files)
        self._touched = frozenset(touched) if touched is not None else None
        self._resolvers: dict[str, Resolver] = {}

    @property
    def whole(self) -> bool:
        return self._touched is None

    def file_names(self) -> list[str]:
        return list(self._files)

    def keys(self, file: str) -> list[KeyRef]:
        """Every key the file holds, in file order, then the schema's keys it lacks that have a
        default (their value, see `value`)."""
        snapshot = self._files.get(file)
        if snapshot is None:
            return []
        held = [KeyRef(file, section, key) for section in snapshot.sections()
                for key, _ in snapshot.document.items(section)]
        present = set(held)
        defaults = [KeyRef(file, section, key) for section, spec in snapshot.schema.sections.items()
                    for key, key_spec in spec.keys.items() if key_spec.default is not None]
        return held + [ref for ref in defaults if ref not in present]

    def schema(self, file: str) -> FileSchema | None:
        snapshot = self._files.get(file)
        return snapshot.schema if snapshot is not None else None

    def has_section(self, file: str, section: str) -> bool:
        snapshot = self._files.get(file)
        return snapshot is not None and snapshot.document.has_section(section)

    def section_line(self, file: str, section: str) -> int | None:
        snapshot = self._files.get(file)
        return snapshot.document.line_of(section) if snapshot is not None else None

    def spec(self, ref: KeyRef) -> KeySpec | None:
        snapshot = self._files.get(ref.file)
        return snapshot.schema.key(ref.section, ref.key) if snapshot is not None else None

    def is_secret(self, ref: KeyRef) -> bool:
        snapshot = self._files.get(ref.file)
        if snapshot is None:
            return False
        stored = snapshot.document.get(ref.section, ref.key)
        if stored is None:  # its default, if any: a secret if the schema says so
            return snapshot.schema.is_secret(ref.section, ref.key)
        return snapshot.holds_secret(ref.section, ref.key, stored)

    def value(self, ref: KeyRef) -> str | None:
        """What the services get for the key: its plaintext, its `${...}` references resolved (as
        written when they do not resolve: rules/references.py says why); None as for `raw`."""
        text = self.raw(ref)
        if text is None or "${" not in text or self.is_secret(ref):
            return text
        try:
            return self._resolver_of(ref.file).resolve(ref.section, ref.key).value
        except (SubstitutionError, ApphubError, KeyError):
            return text

    def made_with_secret(self, ref: KeyRef) -> bool:
        """Whether the key's value is a secret, or is made with one through `${...}`: a rule must not
        quote it (a port that reads a numeric secret would show the secret)."""
        if self.is_secret(ref):
            return True
        text = self.raw(ref)
        if text is None or "${" not in text:
            return False
        try:
            return self._resolver_of(ref.file).resolve(ref.section, ref.key).secret
        except (SubstitutionError, ApphubError, KeyError):
            return True  # what it is made of cannot be told: say nothing of it

    def _resolver_of(self, file: str) -> Resolver:
        resolver = self._resolvers.get(file)
        if resolver is None:
            # no environment: what the rules judge is the files
            resolver = self._resolvers[file] = self.resolver(file, {})
        return resolver

    def resolver(self, file: str, environ: Mapping[str, str]) -> Resolver:
        """A Resolver of `file`'s values as written (defaults included), against `environ`."""

        def lookup(section: str, key: str) -> Stored | None:
            ref = KeyRef(file, section, key)
            text = self.raw(ref)
            return None if text is None else Stored(text, self.is_secret(ref), file)

        def has_section(section: str) -> bool:
            schema = self.schema(file)
            return self.has_section(file, section) or (schema is not None and section in schema.sections)

        return Resolver(lookup, has_section, environ)

    def text(self, ref: KeyRef) -> str | None:
        """The key's text as stored (a secret still encrypted), else its default: a cheap look at
        every key, for what only a few need decrypted or resolved."""
        snapshot = self._files.get(ref.file)
        if snapshot is None:
            return None
        stored = snapshot.document.get(ref.section, ref.key)
        if stored is not None:
            return stored
        spec = snapshot.schema.key(ref.section, ref.key)
        return default_text(spec.default) if spec is not None and spec.default is not None else None

    def raw(self, ref: KeyRef) -> str | None:
        """The key's plaintext as written: the file's, else the schema's default; None when it has
        neither, or is a secret that cannot be decrypted (the schema check reports that)."""
        snapshot = self._files.get(ref.file)
        if snapshot is None:
            return None
        if snapshot.document.get(ref.section, ref.key) is None:
            spec = snapshot.schema.key(ref.section, ref.key)
            return default_text(spec.default) if spec is not None and spec.default is not None else None
        try:
            return snapshot.section_plaintext_value(ref.section, ref.key)
        except SecretError:
            return None

    def switched_on(self, ref: KeyRef) -> bool:
        """A bool key's value (its default if absent); on unless it says false."""
        return (self.value(ref) or "true").lower() not in ("false", "no", "off", "0")

    def touched(self, *refs: KeyRef) -> bool:
        """Whether the write touches any of `refs` (always, for a whole-file check)."""
        return self._touched is None or any(ref in self._touched for ref in refs)

    def touched_keys(self) -> frozenset[KeyRef] | None:
        return self._touched

    def finding(self, ref: KeyRef, rule: str, message: str, severity: Severity = "error", *,
                show: bool = True) -> FieldError:
        """A FieldError at `ref`'s line, its value shown as the schema allows (masked if secret,
        hidden for an unknown key) or not at all (`show` False)."""
        snapshot = self._files.get(ref.file)
        line = shown = None
        if snapshot is not None:
            # an absent key: its section's line, if the section is there
            line = snapshot.document.line_of(ref.section, ref.key) or snapshot.document.line_of(ref.section)
            stored = snapshot.document.get(ref.section, ref.key)
            if show and stored is not None:
                secret = stored != "" and snapshot.holds_secret(ref.section, ref.key, stored)
                shown = MASK if secret else shown_value(snapshot.schema, ref.section, ref.key, stored)
        return FieldError(ref.section, ref.key, rule, message, shown, ref.file, line, severity)


class Rule(Protocol):
    """One kind of rule. `check` returns what it finds; it raises only for a bug of its own."""

    name: str

    def check(self, candidate: Candidate) -> list[FieldError]: ...


def sorted_findings(findings: Iterable[FieldError]) -> list[FieldError]:
    """Errors before warnings, then by file and line: the order a person fixes them in."""
    return sorted(findings, key=lambda f: (f.severity != "error", f.file, f.line or 0, f.section, f.key or "",
                                           f.rule))
