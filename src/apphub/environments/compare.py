"""Two environments side by side, and keys promoted from one to the other.

`diff` compares the effective settings (base, overlay over it, schema defaults under both,
`${...}` resolved) of two environments (`base` is config.ini alone): a secret is shown as equal or
different, never by value. `promote` copies keys as written in one environment (references kept,
not their resolution) into another's file: one write, validated and audited like any other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from apphub.audit.log import Actor
from apphub.environments.overlays import BASE, Environments, check_name
from apphub.errors import ApphubError, FieldError, ValidationFailed
from apphub.store.inistore import WriteResult
from apphub.store.snapshot import Snapshot
from apphub.store.substitution import FileResolver, Resolution, resolver_for

Key = tuple[str, str]


@dataclass(frozen=True)
class Side:
    """One key in one environment: its effective value (None for a secret, or when unset), where
    it came from (the overlay, config.ini, the default, or absent)."""

    value: str | None
    origin: str


@dataclass(frozen=True)
class Difference:
    section: str
    key: str
    secret: bool
    a: Side
    b: Side

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _layers(environments: Environments, name: str, *, new_ok: bool = False) -> tuple[Snapshot, Snapshot | None]:
    """config.ini and `name`'s overlay; EnvironmentNotFound for an unknown one, unless `new_ok`
    (an environment a write is about to make: as yet no different from config.ini)."""
    base = environments.effective(None)
    if name == BASE:
        return base, None
    check_name(name)
    if new_ok and name not in environments.names():
        return base, None
    environments.store(name)
    return base, environments.overlay(name)


def _keys(base: Snapshot, overlay: Snapshot | None) -> list[Key]:
    keys = [(section, key) for layer in (base, overlay) if layer is not None
            for section in layer.sections() for key, _ in layer.document.items(section)]
    keys += [(section, key) for section, spec in base.schema.sections.items()
             for key, key_spec in spec.keys.items() if key_spec.default is not None]
    return list(dict.fromkeys(keys))


def _side(resolver: FileResolver, effective: Mapping[Key, Resolution | ApphubError], key: Key
          ) -> tuple[Side, str | None, bool]:
    """The shown side, the plaintext to compare, and whether it is a secret."""
    found = effective.get(key)
    if isinstance(found, Resolution):
        return Side(None if found.secret else found.value, found.origin), found.value, found.secret
    origin = resolver.origin(*key) if found is not None else None  # not decrypted: it may be what failed
    if origin is None:
        return Side(None, "absent"), None, False
    layer, _, secret = origin
    value = f"(unresolved: {found})"
    return Side(None if secret else value, layer), value, secret


def diff(environments: Environments, a: str, b: str, environ: Mapping[str, str] | None = None, *,
         new_b: bool = False) -> list[Difference]:
    """Every key whose effective value differs between environments `a` and `b` (`new_b`: b may be
    one a promotion is about to make)."""
    environ = os.environ if environ is None else environ
    base_a, overlay_a = _layers(environments, a)
    base_b, overlay_b = _layers(environments, b, new_ok=new_b)
    resolver_a = resolver_for(base_a, environ, overlay_a)
    resolver_b = resolver_for(base_b, environ, overlay_b)
    effective_a, effective_b = resolver_a.effective(), resolver_b.effective()
    differences = []
    for key in dict.fromkeys(_keys(base_a, overlay_a) + _keys(base_b, overlay_b)):
        side_a, plain_a, secret_a = _side(resolver_a, effective_a, key)
        side_b, plain_b, secret_b = _side(resolver_b, effective_b, key)
        if plain_a != plain_b:
            differences.append(Difference(key[0], key[1], secret_a or secret_b, side_a, side_b))
    return differences


def promote(environments: Environments, source: str, target: str, keys: Iterable[Key] | None, actor: Actor, *,
            message: str | None = None) -> WriteResult:
    """Copy `keys` (None: every key that differs) as written in `source` into `target`'s file, in
    one write. A key `source` leaves at config.ini's value is written as that value."""
    if source == target:
        raise ValidationFailed([FieldError("environments", None, "promote", f"'{source}' cannot be promoted to "
                                           "itself", file="environments")])
    wanted = list(keys) if keys is not None else [(d.section, d.key)
                                                  for d in diff(environments, source, target, new_b=True)]
    base, overlay = _layers(environments, source)
    resolver = resolver_for(base, {}, overlay)
    changes: dict[str, dict[str, object]] = {}
    missing = []
    for section, key in wanted:
        stored = resolver.stored(section, key)
        if stored is None:
            missing.append(FieldError(section, key, "promote", f"has no value in '{source}'", file="environments"))
            continue
        changes.setdefault(section, {})[key] = stored.text  # as written: a reference stays a reference
    if missing:
        raise ValidationFailed(missing)
    words = message or f"promote {len(wanted)} key{'s' if len(wanted) != 1 else ''} from {source} to {target}"
    if target == BASE:
        return environments.base.update(changes, actor, action="environments.promote", message=words)
    return environments.update(target, changes, actor, action="environments.promote", message=words)
