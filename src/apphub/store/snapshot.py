"""One version of one INI file under one schema, and the views of it that API and CLI show.

Masking needs no decryption: a secret shows as `********`, or as "" when it is empty, and that
is read off the stored text. So a damaged secret only fails the one call that must decrypt it
(a reveal, a CLI read of that key), never a listing or a write response.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from apphub.audit.log import Change
from apphub.errors import KeyNotFound, SecretError, SectionNotFound
from apphub.store.inidoc import IniDocument
from apphub.store.schema import FileSchema
from apphub.store.secrets import Secret, SecretBox, is_encrypted, mask
from apphub.store.validate import to_json_value


def version_of(data: bytes) -> str:
    """The version token of a file's bytes: the API's ETag."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(eq=False)
class Snapshot:
    """The bytes, the parsed document and the schema of one version; views are computed once."""

    name: str
    raw: bytes
    document: IniDocument
    schema: FileSchema
    box: SecretBox
    version: str = field(init=False)
    _decrypted: dict[tuple[str, str], Secret] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.version = version_of(self.raw)

    def sections(self) -> list[str]:
        return self.document.sections()

    def stored(self, section: str) -> dict[str, str]:
        """The section's values as stored (secrets still encrypted)."""
        if not self.document.has_section(section):
            raise SectionNotFound(section, self.name)
        return dict(self.document.items(section))

    def holds_secret(self, section: str, key: str, stored: str) -> bool:
        """A key the schema marks secret, or any value stored encrypted."""
        return self.schema.is_secret(section, key) or is_encrypted(stored)

    def secret_keys(self) -> list[tuple[str, str]]:
        """Every (section, key) holding a non-empty secret, in file order (nothing decrypted)."""
        return [(section, key) for section in self.sections() for key, stored in self.document.items(section)
                if stored and self.holds_secret(section, key, stored)]

    def secret(self, section: str, key: str) -> Secret | None:
        """One value decrypted (once per version) as a Secret, or None when the key is absent."""
        found = self._decrypted.get((section, key))
        if found is None:
            stored = self.document.get(section, key)
            if stored is None:
                return None
            found = self.box.decrypt(stored, f"{self.name} [{section}] {key}")
            self._decrypted[(section, key)] = found
        return found

    def plaintext(self, section: str, key: str) -> str | Secret:
        """One value in plaintext; a secret comes as a Secret so that it cannot leak by accident."""
        stored = self.document.get(section, key)
        if stored is None:
            if not self.document.has_section(section):
                raise SectionNotFound(section, self.name)
            raise KeyNotFound(section, key, self.name)
        if self.holds_secret(section, key, stored):
            return self.secret(section, key) or Secret("")
        return stored

    def section_plaintext(self, section: str) -> dict[str, str]:
        """A whole section with secrets decrypted (for the CLI of a local operator only)."""
        values = {}
        for key in self.stored(section):
            value = self.plaintext(section, key)
            values[key] = value.reveal() if isinstance(value, Secret) else value
        return values

    def public_section(self, section: str, *, reveal: bool = False, typed: bool = True) -> dict[str, Any]:
        """A section as the API shows it: typed values (unless not `typed`), secrets masked unless `reveal`."""
        shown: dict[str, Any] = {}
        for key, stored in self.stored(section).items():
            if self.holds_secret(section, key, stored):
                shown[key] = self.section_plaintext_value(section, key) if reveal else mask(stored)
            else:
                shown[key] = to_json_value(self.schema.key(section, key), stored) if typed else stored
        return shown

    def plaintext_values(self) -> dict[str, dict[str, str]]:
        """Every value of the file in plaintext (offline checks)."""
        return {section: self.section_plaintext(section) for section in self.sections()}

    def section_plaintext_value(self, section: str, key: str) -> str:
        value = self.plaintext(section, key)
        return value.reveal() if isinstance(value, Secret) else value

    @cached_property
    def public(self) -> dict[str, dict[str, Any]]:
        """Every section, masked and typed."""
        return {section: self.public_section(section) for section in self.sections()}

    @cached_property
    def public_json(self) -> bytes:
        """`{"version", "settings"}` rendered once, so that a read costs no JSON encoding."""
        return json.dumps({"version": self.version, "settings": self.public}).encode()


def recordable(snapshot: Snapshot) -> bytes | None:
    """The bytes the history may keep of a version: none while a secret in it is stored in
    plaintext (a hand edit the sync thread has yet to encrypt; the encrypted version follows),
    since the history holds secrets only as ciphertext."""
    for section, key in snapshot.secret_keys():
        if not is_encrypted(snapshot.document.get(section, key) or ""):
            return None
    return snapshot.raw


def changed_keys(previous: Snapshot | None, current: Snapshot) -> set[tuple[str, str]] | None:
    """The keys whose values differ between two versions (None: no previous, everything is new).

    Secrets are compared in plaintext, so a re-encryption (rotation) changes nothing.
    """
    if previous is None:
        return None
    before = {(s, k): v for s in previous.sections() for k, v in previous.document.items(s)}
    after = {(s, k): v for s in current.sections() for k, v in current.document.items(s)}
    found: set[tuple[str, str]] = set()
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is not None and new is not None and current.holds_secret(*key, new):
            with contextlib.suppress(SecretError):  # a damaged secret counts as changed
                if previous.section_plaintext_value(*key) == current.section_plaintext_value(*key):
                    continue
        found.add(key)
    return found


def version_changes(previous: Snapshot | None, current: Snapshot) -> list[Change]:
    """Per key, old -> new between two versions, secrets masked (for the audit log)."""
    found = []
    for section, key in sorted(changed_keys(previous, current) or ()):
        assert previous is not None
        old, new = previous.document.get(section, key), current.document.get(section, key)
        secret = any(value is not None and current.holds_secret(section, key, value) for value in (old, new))
        kind = "add" if old is None else "delete" if new is None else "set"
        found.append(Change(section, key, kind, _shown(old, secret), _shown(new, secret)))
    return found


def _shown(value: str | None, secret: bool) -> str | None:
    if value is None:
        return None
    return mask(value) if secret else value
