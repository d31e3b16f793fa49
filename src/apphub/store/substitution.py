"""`${section.key}` and `${env:NAME:-default}` inside config.ini's values, resolved.

A value may refer to another key (`base_url = http://${server.host}:${gitea.port}`) or to the
process environment, with a default for when the variable is unset or empty (the shell's `:-`).
`$${` is a literal `${`. A secret's own value is never read for references (a password may hold
`${`); a plain value that refers to a secret becomes a secret itself (masked wherever it is
shown). References resolve recursively; a cycle or a key that does not exist is an error naming
the whole chain (`[a] x -> [b] y -> [a] x`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import NamedTuple

from apphub.errors import ApphubError, SecretError
from apphub.store.secrets import MASK, is_encrypted
from apphub.store.secrets import PREFIX as ENCRYPTED
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
    # Tuples, empty unless the value has references: one Resolution is made per key resolved.
    references: tuple[Key, ...] = ()  # every key it read, at any depth, in order
    env: tuple[str, ...] = ()  # every environment variable it read


# (section, key) -> its stored value, or None when there is neither a value nor a default
Lookup = Callable[[str, str], Stored | None]
HasSection = Callable[[str], bool]


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> tuple[tuple[str, str | None], ...]:
    """`text` as (literal text, the reference after it) pairs, `$${` already made `${`; the last
    pair's reference is None. Cached: one configuration's values are resolved again and again."""
    bits = REFERENCE.split(text)  # literal, reference (None for $${), literal, ...
    parts: list[tuple[str, str | None]] = []
    literal = bits[0]
    for at in range(1, len(bits), 2):
        inner = bits[at]
        if inner is None:
            literal += "${" + bits[at + 1]  # $${ escapes
        else:
            parts.append((literal, inner.strip()))
            literal = bits[at + 1]
    parts.append((literal, None))
    return tuple(parts)


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
        self._splits: dict[str, Key] = {}  # the same reference is usually written many times

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
        if not stored.secret and "${" in stored.text:
            # Only a value with references can be part of a cycle (most have none: the fast path).
            self._substitute(result, [*chain, wanted])
        self._done[wanted] = result
        return result

    def _substitute(self, result: Resolution, path: list[Key]) -> None:
        """Fill in the references of `result.value`, the value of the last key of `path`, and
        record what they read. (One loop, no call per reference: it is the hot path of `effective`.)"""
        if path[-1] in path[:-1]:
            raise SubstitutionError("the references make a cycle", path)
        if len(path) > MAX_DEPTH:
            raise SubstitutionError(f"the references are more than {MAX_DEPTH} deep", path)
        pieces: list[str] = []
        size = 0
        references: list[Key] = []
        env: list[str] = []
        for literal, inner in _parsed(result.value):
            if inner is None:
                piece = ""  # the text after the last reference
            elif inner.startswith(ENV_PREFIX):
                piece, from_environment = self._env(inner[len(ENV_PREFIX):], env, path)
                # apphub's own environment may hold what no key of config.ini should show (a token): a
                # value made with a variable is shown as a secret is, masked (the services get it in full).
                result.secret |= from_environment
            else:
                wanted = self._splits.get(inner)
                if wanted is None:
                    wanted = self._splits[inner] = self.split(inner, path)
                found = self._done.get(wanted) or self._resolve(wanted, path)
                references.append(wanted)
                references += found.references
                env += found.env
                result.secret |= found.secret
                piece = found.value
            pieces += (literal, piece)
            size += len(literal) + len(piece)
            if size > MAX_RESOLVED:  # checked as it grows: references that multiply must not run out the memory
                raise SubstitutionError(f"resolves to more than {MAX_RESOLVED} characters", path)
        result.value = "".join(pieces)
        result.references = tuple(dict.fromkeys(references))
        result.env = tuple(dict.fromkeys(env))
        if len(result.value) > MAX_RESOLVED:
            raise SubstitutionError(f"resolves to more than {MAX_RESOLVED} characters", path)

    def _env(self, spec: str, env: list[str], path: list[Key]) -> tuple[str, bool]:
        """What `${env:spec}` stands for, and whether it came from the environment (not the default)."""
        name, has_default, default = spec.partition(":-")
        if not _ENV_NAME.match(name):
            raise SubstitutionError(f"${{env:{spec}}} does not name an environment variable", path)
        env.append(name)
        value = self._environ.get(name, "")
        if value == "" and has_default:
            return default, False  # written in the file: no more a secret than the file's other text
        if name not in self._environ:
            raise SubstitutionError(f"the environment variable {name} is not set, and ${{env:{name}}} gives no "
                                    f"default (write ${{env:{name}:-default}})", path, variable=name)
        return value, True

    def split(self, reference: str, path: list[Key]) -> Key:
        """`section.key`, where a section name may itself hold dots (the longest known one wins)."""
        section, _, key = reference.rpartition(".")
        if section and key and self._has_section(section):
            return section, key  # the longest possible section name, the usual case
        parts = reference.split(".")
        if len(parts) < 2 or not all(parts):
            raise SubstitutionError(f"${{{reference}}} is not a reference: write ${{section.key}} or "
                                    "${env:NAME:-default}", path)
        for cut in range(len(parts) - 1, 0, -1):
            section = ".".join(parts[:cut])
            if self._has_section(section):
                return section, ".".join(parts[cut:])
        return ".".join(parts[:-1]), parts[-1]


class FileResolver(Resolver):
    """A Resolver of one version of config.ini, an environment's overlay over it, and the schema's
    defaults under both; `effective` resolves every key at once."""

    def __init__(self, snapshot: Snapshot, environ: Mapping[str, str], overlay: Snapshot | None = None) -> None:
        self._layers = [(layer, layer.document.flat) for layer in
                        ([overlay, snapshot] if overlay is not None else [snapshot])]
        self._schema = snapshot.schema
        self._sections: set[str] = set()
        super().__init__(self._stored, self._known_section, environ)

    def _stored(self, section: str, key: str) -> Stored | None:
        wanted = (section, key)
        for layer, values in self._layers:
            stored = values.get(wanted)
            if stored is None:
                continue
            if wanted in self._schema.secret_keys or is_encrypted(stored):
                return Stored(layer.section_plaintext_value(section, key), True, layer.name)
            return Stored(stored, False, layer.name)
        spec = self._schema.key(section, key)
        if spec is None or spec.default is None:
            return None
        return Stored(default_text(spec.default), spec.secret, "default")

    def origin(self, section: str, key: str) -> tuple[str, str, bool] | None:
        """Where a key's value comes from, without decrypting it: the layer's name (or "default"),
        the text as stored (a secret still encrypted) and whether it is a secret; None if nowhere."""
        wanted = (section, key)
        for layer, values in self._layers:
            stored = values.get(wanted)
            if stored is not None:
                return layer.name, stored, wanted in self._schema.secret_keys or is_encrypted(stored)
        spec = self._schema.key(section, key)
        if spec is None or spec.default is None:
            return None
        return "default", default_text(spec.default), spec.secret

    def _known_section(self, section: str) -> bool:
        if not self._sections:  # worked out on the first reference that needs it (most values have none)
            self._sections.update(self._schema.sections, *(layer.document.sections() for layer, _ in self._layers))
        return section in self._sections

    def effective(self) -> dict[Key, Resolution | ApphubError]:
        """Every key of either file, and every key the schema gives a default, resolved (or why it
        cannot be: the SubstitutionError or SecretError). A plain value without references is taken
        as it is, in one pass: that is most keys, and going through `resolve` one by one cost more
        than all the references together."""
        done, secret_keys = self._done, self._schema.secret_keys
        slow: list[Key] = []  # resolved one by one: references, secrets, encrypted values
        claimed: set[Key] = set()  # set in a layer above this one, whose value wins
        for layer, values in self._layers:  # the overlay first
            origin = layer.name
            for wanted, text in values.items():
                if wanted in claimed:
                    continue
                if "${" in text or wanted in secret_keys or text.startswith(ENCRYPTED):
                    slow.append(wanted)
                else:
                    done[wanted] = Resolution(text, False, origin)
            claimed.update(values)
        for wanted, spec in self._schema.keys_with_defaults.items():
            if wanted not in done and all(wanted not in values for _, values in self._layers):
                text = default_text(spec.default) if spec.default is not None else ""
                if spec.secret or "${" in text:
                    slow.append(wanted)
                else:
                    done[wanted] = Resolution(text, False, "default")
        failed: dict[Key, ApphubError] = {}
        for wanted in slow:
            if wanted in done:
                continue  # read by a reference resolved before it
            try:
                self.resolve(*wanted)
            except KeyError:
                continue  # a secret with neither a value nor a default
            except (SubstitutionError, SecretError) as exc:
                failed[wanted] = exc
        return {**done, **failed}

def resolver_for(snapshot: Snapshot, environ: Mapping[str, str], overlay: Snapshot | None = None) -> FileResolver:
    """A Resolver of one version of a file: its values (an environment's `overlay` over them),
    else the schema's defaults. A secret is decrypted when a reference reads it (SecretError if it
    cannot be); each value names the layer it came from."""
    return FileResolver(snapshot, environ, overlay)


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
    found = resolver.origin(section, key)
    if found is None:
        raise KeyError((section, key))
    origin, text, secret = found
    raw = MASK if secret and text else text
    layer = overlay if overlay is not None and origin == overlay.name else snapshot
    line = layer.document.line_of(section, key) if origin != "default" else None
    try:
        resolved = resolver.resolve(section, key)
    except (SubstitutionError, SecretError) as exc:  # SecretError: a secret that cannot be decrypted
        return Explanation(section, key, raw, None, secret, origin, line, [], [], str(exc))
    references = []
    for ref_section, ref_key in resolved.references:
        ref = resolver.origin(ref_section, ref_key)
        references.append(ReferenceOrigin(ref_section, ref_key, ref[0] if ref else None, bool(ref and ref[2])))
    value = MASK if resolved.secret and resolved.value else resolved.value
    return Explanation(section, key, raw, value, resolved.secret, origin, line, references,
                       list(resolved.env), None)
