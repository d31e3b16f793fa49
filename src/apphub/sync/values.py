"""The values a render reads: config.ini in plaintext and typed, schema defaults filled in, the
environment, and a record of which keys each render read.

That record is what lets a change of one key re-render only the services that use it, and what
lets a diff mask every secret a file holds.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from apphub.errors import RenderError, SecretError
from apphub.store.secrets import MASK, is_encrypted
from apphub.store.snapshot import Snapshot
from apphub.store.substitution import SubstitutionError, has_references, resolver_for
from apphub.store.validate import JsonValue, to_json_value

# ${section.key}, ${env:NAME}; $${...} is a literal ${...}
REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
ENV_PREFIX = "env:"

Key = tuple[str, str]


class MissingValue(RenderError, KeyError):
    """A reference names a key that is not set and has no default."""

    def __str__(self) -> str:
        return str(self.args[0])


class Values:
    """One version's values for rendering. `read` collects every (section, key) looked up."""

    def __init__(self, snapshot: Snapshot, environ: Mapping[str, str]) -> None:
        self.snapshot = snapshot
        self.environ = environ
        self.read: set[Key] = set()
        self.env_read: set[str] = set()
        self._cache: dict[Key, JsonValue] = {}
        self._resolver = resolver_for(snapshot, environ)
        self._made_with_secrets: set[Key] = set()  # plain values that refer to a secret

    def get(self, section: str, key: str) -> JsonValue:
        """The typed plaintext value of a key, or its schema default; MissingValue if neither."""
        self.read.add((section, key))
        found = self._cache.get((section, key))
        if found is not None:
            return found
        spec = self.snapshot.schema.key(section, key)
        stored = self.snapshot.document.get(section, key)
        if stored is None:
            if spec is None or spec.default is None:
                raise MissingValue(f"${{{section}.{key}}}: config.ini has no key '{key}' in [{section}], "
                                   "and the schema gives no default")
            value: JsonValue = spec.default
        elif self.snapshot.holds_secret(section, key, stored):
            try:
                value = self.snapshot.section_plaintext_value(section, key)
            except SecretError as exc:
                raise RenderError(str(exc)) from exc
        elif has_references(stored):
            value = to_json_value(spec, self._substituted(section, key))
        else:
            value = to_json_value(spec, stored)
        self._cache[(section, key)] = value
        return value

    def _substituted(self, section: str, key: str) -> str:
        """A value with `${...}` in it, resolved; what it read counts as read by the render (a
        change of a key it refers to re-renders the service)."""
        try:
            found = self._resolver.resolve(section, key)
        except (SubstitutionError, SecretError) as exc:
            raise RenderError(str(exc)) from exc
        self.read.update(found.references)
        self.env_read.update(found.env)
        if found.secret:
            self._made_with_secrets.add((section, key))
        return found.value

    def env(self, spec: str) -> str:
        """`NAME`, or `NAME:-default` (the default when it is unset or empty)."""
        name, has_default, default = spec.partition(":-")
        self.env_read.add(name)
        value = self.environ.get(name, "")
        if value == "" and has_default:
            return default
        if name not in self.environ:
            raise MissingValue(f"${{env:{name}}}: the environment variable {name} is not set")
        return value

    def has_section(self, section: str) -> bool:
        return self.snapshot.document.has_section(section) or section in self.snapshot.schema.sections

    def keys(self, section: str) -> list[str]:
        found = dict.fromkeys(key for key, _ in self.snapshot.document.items(section)) \
            if self.snapshot.document.has_section(section) else {}
        spec = self.snapshot.schema.sections.get(section)
        if spec is not None:
            found.update(dict.fromkeys(key for key, key_spec in spec.keys.items() if key_spec.default is not None))
        return list(found)

    def substitute(self, text: str) -> JsonValue:
        """`text` with its references filled in. A text that is exactly one reference keeps the
        value's type (a port stays a number in JSON); anything else is a string."""
        whole = REFERENCE.fullmatch(text)
        if whole is not None and whole.group(1) is not None:
            return self.resolve(whole.group(1))

        def replace(match: re.Match[str]) -> str:
            if match.group(1) is None:
                return "${"
            return _text(self.resolve(match.group(1)))

        return REFERENCE.sub(replace, text)

    def resolve(self, reference: str) -> JsonValue:
        reference = reference.strip()
        if reference.startswith(ENV_PREFIX):
            return self.env(reference[len(ENV_PREFIX):])
        section, key = self.split(reference)
        return self.get(section, key)

    def split(self, reference: str) -> Key:
        """`section.key`, where a section name may itself hold dots (`repository.local.path`)."""
        parts = reference.split(".")
        if len(parts) < 2 or not all(parts):
            raise RenderError(f"${{{reference}}}: a reference is ${{section.key}} or ${{env:NAME}}")
        for cut in range(len(parts) - 1, 0, -1):
            section = ".".join(parts[:cut])
            if self.has_section(section):
                return section, ".".join(parts[cut:])
        return ".".join(parts[:-1]), parts[-1]

    def secret_texts(self) -> list[str]:
        """The plaintext of every secret this render read, longest first (what a diff must mask)."""
        found = set()
        for (section, key), value in self._cache.items():  # the keys read successfully
            stored = self.snapshot.document.get(section, key)
            if (self.snapshot.schema.is_secret(section, key) or (stored is not None and is_encrypted(stored))
                    or (section, key) in self._made_with_secrets):
                found.add(_text(value))  # a secret's schema default is a secret too
        return sorted((text for text in found if text), key=len, reverse=True)


def text_of(value: JsonValue) -> str:
    """A value as the text a file or a variable holds (`true`, `a,b`, `8080`)."""
    return _text(value)


def _text(value: JsonValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def secret_spellings(secrets: list[str]) -> list[str]:
    """Each secret as a file or a message can show it: as is, and escaped by repr() or JSON (Jinja's
    `has no attribute 'x'` is a repr; JSON, TOML, YAML and env double quotes escape `"` and `\\`;
    PHP's JSON escapes `/` too), in HTML (a service's error page) and percent-encoded (a URL a
    service quotes back), longest first so that no part of one is left unmasked."""
    found = set()
    for secret in secrets:
        in_json = json.dumps(secret)[1:-1]
        found.update({secret, repr(secret)[1:-1], in_json, in_json.replace("/", "\\/"),
                      json.dumps(secret, ensure_ascii=False)[1:-1], html.escape(secret, quote=True),
                      html.escape(secret, quote=False), quote(secret, safe=""), quote_plus(secret, safe="")})
    return sorted((text for text in found if text), key=len, reverse=True)


def mask_secrets(text: str, secrets: list[str]) -> str:
    """`text` with every occurrence of a secret replaced by the mask (for diffs and logs)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class SectionView(Mapping[str, Any]):
    """One section for a template: `settings.web.port` or `settings['web']['port']`, recorded."""

    def __init__(self, values: Values, section: str) -> None:
        self._values = values
        self._section = section

    def __getitem__(self, key: str) -> Any:
        return self._values.get(self._section, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values.keys(self._section))

    def __len__(self) -> int:
        return len(self._values.keys(self._section))

    def __repr__(self) -> str:
        return f"<settings.{self._section}>"


class SettingsView(Mapping[str, SectionView]):
    """All of config.ini for a template."""

    def __init__(self, values: Values) -> None:
        self._values = values

    def __getitem__(self, section: str) -> SectionView:
        if not self._values.has_section(section):
            raise KeyError(section)
        return SectionView(self._values, section)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values.snapshot.sections())

    def __len__(self) -> int:
        return len(self._values.snapshot.sections())


class EnvView(Mapping[str, str]):
    """The environment for a template: `env.HOME`, recorded."""

    def __init__(self, values: Values) -> None:
        self._values = values

    def __getitem__(self, name: str) -> str:
        if name not in self._values.environ:
            raise KeyError(name)
        return self._values.env(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values.environ)

    def __len__(self) -> int:
        return len(self._values.environ)

