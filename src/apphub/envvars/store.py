"""`DATA/env.ini`: the independent environment variables, `[global]` and one section per service.

    [global]
    TZ = Europe/Berlin
    [gitea]
    GITEA__mailer__PASSWD = enc:v1:gAAAAA...       ; a secret: encrypted like config.ini's
    BANNER = "two\\nlines"                          ; JSON-quoted: a value INI cannot hold as it is

It is an IniStore like config.ini (one writer at a time, atomic, audited, versioned in the
history), with no schema: the names are the variables', checked here. INI cannot keep a line
break, a tab or blanks at either end of a value, so such a value (and one that starts with `"`)
is written as a JSON string; everything else as it is, so that the file stays readable by hand.
A value is any text but NUL. A secret stays one until it is unset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from apphub.audit.log import Actor
from apphub.errors import FieldError, ValidationFailed
from apphub.store.atomic import Replacement
from apphub.store.inistore import IniStore, WriteResult
from apphub.store.schema import FileSchema
from apphub.store.secrets import Secret
from apphub.store.snapshot import Snapshot
from apphub.store.validate import MAX_VALUE_LENGTH

FILE = "env.ini"
GLOBAL = "global"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # `global` or a service's name (sync/manifest.py)
# What INI keeps as it is: no control character, no blank at either end, not starting with a quote.
_PLAIN = re.compile(r"(?![\s\"])[^\x00-\x1f\x7f-\x9f\u2028\u2029]*(?<!\s)")
SCHEMA = FileSchema(extra_sections=True)
HEADER = (b"# Environment variables apphub gives the services: [global] for all of them, [NAME] for one.\n"
          b"# Change them with `apphub env set` or PUT /api/v1/env/{scope}; secrets are stored encrypted.\n")


@dataclass(frozen=True)
class EnvValue:
    """A value to set, and whether it is a secret (stored encrypted, never shown)."""

    value: str
    secret: bool = False

    def __repr__(self) -> str:
        return f"EnvValue(secret={self.secret})"  # never the value: it may be a secret


@dataclass(frozen=True)
class StoredVar:
    """One variable of env.ini: its value (a Secret if it is one) and the line it is on."""

    scope: str
    name: str
    value: str | Secret
    line: int | None

    @property
    def secret(self) -> bool:
        return isinstance(self.value, Secret)

    def plaintext(self) -> str:
        return self.value.reveal() if isinstance(self.value, Secret) else self.value


def encode(value: str) -> str:
    """The INI text of a value: as it is when INI keeps it, else a JSON string."""
    if value == "" or _PLAIN.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=True)


def decode(text: str) -> str:
    """The value of an INI text: a JSON string is read as one, anything else is the value."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text  # typed by hand with quotes that are not JSON: the text itself
        if isinstance(decoded, str):
            return decoded
    return text


def ensure_file(path: Path) -> None:
    """Create an empty env.ini (mode 0600) in a data folder made before it existed."""
    if not path.exists():
        Replacement.prepare(path, HEADER, None, mode=0o600).swap()


class EnvStore:
    """The independent variables: read, set and unset through an IniStore of env.ini."""

    def __init__(self, store: IniStore) -> None:
        self.store = store

    def snapshot(self) -> Snapshot:
        return self.store.snapshot()

    @staticmethod
    def scopes(snapshot: Snapshot) -> list[str]:
        return snapshot.sections()

    @staticmethod
    def variables(snapshot: Snapshot, scope: str) -> dict[str, StoredVar]:
        """The variables of one scope, secrets as Secret (decrypted lazily by the snapshot)."""
        if not snapshot.document.has_section(scope):
            return {}
        found = {}
        for name, _ in snapshot.document.items(scope):
            value = snapshot.plaintext(scope, name)
            shown: str | Secret = Secret(decode(value.reveal())) if isinstance(value, Secret) else decode(value)
            found[name] = StoredVar(scope, name, shown, snapshot.document.line_of(scope, name))
        return found

    def set(self, scope: str, values: Mapping[str, EnvValue], actor: Actor, *,
            if_match: Collection[str] | None = None, message: str | None = None,
            refused: Iterable[FieldError] = ()) -> WriteResult:
        """Set these variables of `scope`, all or nothing; `refused`: the caller's own findings
        (a mapped name, an unknown scope), reported with these checks', every one at once."""
        changes, secret = self._proposal(scope, values, refused)
        return self.store.update(changes, actor, if_match=if_match, action="env.set", message=message,
                                 secret=secret)

    def preview(self, scope: str, values: Mapping[str, EnvValue], refused: Iterable[FieldError] = ()) -> Snapshot:
        """The version `set` would write, checked the same way, without writing it."""
        changes, secret = self._proposal(scope, values, refused)
        return self.store.preview(changes, secret=secret)

    def unset(self, scope: str, names: Iterable[str], actor: Actor, *, if_match: Collection[str] | None = None,
              message: str | None = None) -> WriteResult:
        """Remove these variables (KeyNotFound / SectionNotFound for one that is not set)."""
        return self.store.update({}, actor, deletes=[(scope, name) for name in names], if_match=if_match,
                                 action="env.unset", message=message)

    @classmethod
    def _proposal(cls, scope: str, values: Mapping[str, EnvValue],
                  refused: Iterable[FieldError]) -> tuple[dict[str, dict[str, object]], list[tuple[str, str]]]:
        """The store's changes and secret keys for setting `values`; ValidationFailed with every
        problem (the caller's `refused` and these checks') at once."""
        errors = [*refused, *cls._check(scope, values)]
        if errors:
            raise ValidationFailed(errors)
        changes: dict[str, dict[str, object]] = {scope: {name: encode(value.value) for name, value in values.items()}}
        return changes, [(scope, name) for name, value in values.items() if value.secret]

    @staticmethod
    def _check(scope: str, values: Mapping[str, EnvValue]) -> list[FieldError]:
        errors = []
        if not SCOPE.fullmatch(scope):
            errors.append(FieldError(scope, None, "scope", "is neither `global` nor a service name (letters, "
                                     "digits, '_', '.', '-', at most 64)", None, FILE))
        for name, value in values.items():
            if not NAME.fullmatch(name):
                errors.append(FieldError(scope, name, "name", "is not an environment variable name: letters, "
                                         "digits and '_', not starting with a digit", None, FILE))
            if "\x00" in value.value:
                errors.append(FieldError(scope, name, "nul", "holds a NUL character, which no environment "
                                         "variable can carry", None, FILE))
            elif len(encode(value.value)) > MAX_VALUE_LENGTH:
                errors.append(FieldError(scope, name, "max_length", f"is too long: at most {MAX_VALUE_LENGTH} "
                                         "characters as env.ini stores it", None, FILE))
        return errors
