"""`${section.key}` and `${env:NAME:-default}` inside config.ini's values, resolved.

A value may refer to another key (`base_url = http://${server.host}:${gitea.port}`) or to the
process environment, with a default for when the variable is unset or empty (the shell's `:-`).
`$${` is a literal `${`. A secret's own value is never read for references (a password may hold
`${`); a plain value that refers to a secret becomes a secret itself (masked wherever it is
shown). References resolve recursively; a cycle or a key that does not exist is an error naming
the whole chain (`[a] x -> [b] y -> [a] x`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from apphub.errors import ApphubError
from apphub.store.secrets import MASK, is_encrypted
from apphub.store.snapshot import Snapshot
from apphub.store.validate import MAX_VALUE_LENGTH, default_text

# ${section.key}, ${env:NAME}, ${env:NAME:-default}; $${ is a literal ${
REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_DEPTH = 32  # a chain this long is a mistake, not a configuration
# What a value may resolve to, as what a value may hold: references that multiply one another must
# not grow a value (and every message quoting it) until the server runs out of memory.
MAX_RESOLVED = MAX_VALUE_LENGTH

Key = tuple[str, str]


class SubstitutionError(ApphubError, ValueError):
    """A reference that cannot be resolved: a cycle, a missing key or variable, a malformed one.
    `chain`: the keys from the one asked for to where it broke."""

    def __init__(self, message: str, chain: list[Key], variable: str | None = None) -> None:
        self.chain = chain
        self.variable = variable  # an environment variable that is not set (and has no default)
        super().__init__(f"{' -> '.join(f'[{s}] {k}' for s, k in chain)}: {message}")


class Stored(NamedTuple):  # a NamedTuple: one is made per key looked up, thousands per render
    """A key's value before substitution, where it came from, and whether it is a secret."""

    text: str
    secret: bool
    origin: str  # "config.ini", "default", or an overlay's file name


@dataclass(slots=True)
class Resolution:
    """A key's effective value and what it was made of."""

    value: str
    secret: bool  # a secret itself, or made with one
    origin: str
    references: list[Key] = field(default_factory=list)  # every key it read, at any depth, in order
    env: list[str] = field(default_factory=list)  # every environment variable it read


# (section, key) -> its stored value, or None when there is neither a value nor a default
Lookup = Callable[[str, str], Stored | None]
HasSection = Callable[[str], bool]


def has_references(text: str) -> bool:
    return "${" in text


class Resolver:
    """Resolves the values of one version (`lookup`) against `environ`; results are cached, so
    that each key is worked out once however many refer to it."""

    def __init__(self, lookup: Lookup, has_section: HasSection, environ: Mapping[str, str]) -> None:
        self._lookup = lookup
        self._has_section = has_section
        self._environ = environ
        self._done: dict[Key, Resolution] = {}

    def stored(self, section: str, key: str) -> Stored | None:
        """A key's value before substitution, or None when it has no value and no default."""
        return self._lookup(section, key)

    def resolve(self, section: str, key: str) -> Resolution:
        """The effective value of a key; SubstitutionError if it cannot be worked out, KeyError if
        the key has no value at all."""
        return self._resolve((section, key), [])

    def _resolve(self, wanted: Key, chain: list[Key]) -> Resolution:
        done = self._done.get(wanted)
        if done is not None:
            return done
        stored = self._lookup(*wanted)
        if stored is None:
            if chain:
                raise SubstitutionError(f"[{wanted[0]}] {wanted[1]} has no value and no default", [*chain, wanted])
            raise KeyError(wanted)
        result = Resolution(stored.text, stored.secret, stored.origin)
        if not stored.secret and has_references(stored.text):
            # Only a value with references can be part of a cycle (most have none: the fast path).
            path = [*chain, wanted]
            if wanted in chain:
                raise SubstitutionError("the references make a cycle", path)
            if len(path) > MAX_DEPTH:
                raise SubstitutionError(f"the references are more than {MAX_DEPTH} deep", path)
            result.value = REFERENCE.sub(lambda match: self._fill(match, result, path), stored.text)
            if len(result.value) > MAX_RESOLVED:
                raise SubstitutionError(f"resolves to more than {MAX_RESOLVED} characters", path)
        self._done[wanted] = result
        return result

    def _fill(self, match: re.Match[str], result: Resolution, path: list[Key]) -> str:
        inner = match.group(1)
        if inner is None:
            return "${"  # $${ escapes
        inner = inner.strip()
        if inner.startswith(ENV_PREFIX):
            return self._env(inner[len(ENV_PREFIX):], result, path)
        section, key = self.split(inner, path)
        found = self._resolve((section, key), path)
        result.references += [ref for ref in [(section, key), *found.references] if ref not in result.references]
        result.env += [name for name in found.env if name not in result.env]
        result.secret |= found.secret
        if len(found.value) > MAX_RESOLVED:
            raise SubstitutionError(f"resolves to more than {MAX_RESOLVED} characters", path)
        return found.value

    def _env(self, spec: str, result: Resolution, path: list[Key]) -> str:
        name, has_default, default = spec.partition(":-")
        if not _ENV_NAME.match(name):
            raise SubstitutionError(f"${{env:{spec}}} does not name an environment variable", path)
        if name not in result.env:
            result.env.append(name)
        value = self._environ.get(name, "")
        if value == "" and has_default:
            return default  # written in the file: no more a secret than the file's other text
        if name not in self._environ:
            raise SubstitutionError(f"the environment variable {name} is not set, and ${{env:{name}}} gives no "
                                    f"default (write ${{env:{name}:-default}})", path, variable=name)
        # apphub's own environment may hold what no key of config.ini should show (a token): a
        # value made with a variable is shown as a secret is, masked (the services get it in full).
        result.secret = True
        return value

    def split(self, reference: str, path: list[Key]) -> Key:
        """`section.key`, where a section name may itself hold dots (the longest known one wins)."""
        parts = reference.split(".")
        if len(parts) < 2 or not all(parts):
            raise SubstitutionError(f"${{{reference}}} is not a reference: write ${{section.key}} or "
                                    "${env:NAME:-default}", path)
        for cut in range(len(parts) - 1, 0, -1):
            section = ".".join(parts[:cut])
            if self._has_section(section):
                return section, ".".join(parts[cut:])
        return ".".join(parts[:-1]), parts[-1]


def resolver_for(snapshot: Snapshot, environ: Mapping[str, str], overlay: Snapshot | None = None) -> Resolver:
    """A Resolver of one version of a file: its values (an environment's `overlay` over them),
    else the schema's defaults. A secret is decrypted when a reference reads it (SecretError if it
    cannot be); each value names the layer it came from."""
    layers = [overlay, snapshot] if overlay is not None else [snapshot]

    def lookup(section: str, key: str) -> Stored | None:
        for layer in layers:
            stored = layer.document.get(section, key)
            if stored is None:
                continue
            if is_encrypted(stored) or snapshot.schema.is_secret(section, key):
                return Stored(layer.section_plaintext_value(section, key), True, layer.name)
            return Stored(stored, False, layer.name)
        spec = snapshot.schema.key(section, key)
        if spec is None or spec.default is None:
            return None
        return Stored(default_text(spec.default), spec.secret, "default")

    def has_section(section: str) -> bool:
        return any(layer.document.has_section(section) for layer in layers) or section in snapshot.schema.sections

    return Resolver(lookup, has_section, environ)


def dependents(snapshot: Snapshot, changed: set[Key], environ: Mapping[str, str]) -> set[Key]:
    """The keys whose value refers, at any depth, to one of `changed`: their effective value changed
    with it (a restart-level port made of a hot key still needs its restart)."""
    resolver = resolver_for(snapshot, environ)
    found = set()
    for section in snapshot.sections():
        for key, stored in snapshot.document.items(section):
            if not has_references(stored) or snapshot.holds_secret(section, key, stored):
                continue
            try:
                references = resolver.resolve(section, key).references
            except (SubstitutionError, ApphubError):
                continue  # the render says what is wrong with it
            if not changed.isdisjoint(references):
                found.add((section, key))
    return found


@dataclass(frozen=True)
class ReferenceOrigin:
    section: str
    key: str
    origin: str | None
    secret: bool


@dataclass(frozen=True)
class Explanation:
    """Where a key's effective value comes from (see `explain`)."""

    section: str
    key: str
    raw: str  # as written, before substitution (masked if secret)
    value: str | None  # after (masked if a secret or made with one); None when it cannot be resolved
    secret: bool
    origin: str  # the file, or "default"
    line: int | None
    references: list[ReferenceOrigin]
    env: list[str]
    error: str | None  # why it cannot be resolved, naming the chain

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def explain(snapshot: Snapshot, section: str, key: str, environ: Mapping[str, str],
            overlay: Snapshot | None = None) -> Explanation:
    """Where a key's effective value comes from: its text before substitution, its value after,
    the layer it came from (the file, or the schema's default), and every key and environment
    variable it was made of. A secret, or a value made with one, is masked; KeyError if the key
    has neither a value nor a default. With an environment's `overlay`, the value it sets wins."""
    resolver = resolver_for(snapshot, environ, overlay)
    found = resolver.stored(section, key)
    if found is None:
        raise KeyError((section, key))
    raw = MASK if found.secret and found.text else found.text
    layer = overlay if overlay is not None and found.origin == overlay.name else snapshot
    line = layer.document.line_of(section, key) if found.origin != "default" else None
    try:
        resolved = resolver.resolve(section, key)
    except SubstitutionError as exc:
        return Explanation(section, key, raw, None, found.secret, found.origin, line, [], [], str(exc))
    references = []
    for ref_section, ref_key in resolved.references:
        ref = resolver.stored(ref_section, ref_key)
        references.append(ReferenceOrigin(ref_section, ref_key, ref.origin if ref else None, bool(ref and ref.secret)))
    value = MASK if resolved.secret and resolved.value else resolved.value
    return Explanation(section, key, raw, value, resolved.secret, found.origin, line, references, resolved.env, None)
