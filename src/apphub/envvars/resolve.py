"""A service's environment, and where each value comes from.

Three layers, later ones winning: env.ini's `[global]`, env.ini's section of the service (both
*independent*: set through the env API, CLI or by hand), and the manifest's `env:` of the service
(*mapped*: derived from config.ini, read-only through the env API; they change when their source
key does). A name both set by hand in env.ini and mapped takes the mapped value, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from apphub.envvars.store import GLOBAL, EnvStore
from apphub.errors import RenderError
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot
from apphub.sync.manifest import Manifest, ServiceSpec
from apphub.sync.values import Key, Values, text_of

Kind = Literal["independent", "mapped"]
# What the plan records as read when a service takes env.ini's section `scope`: (ENV_SECTION, scope)
ENV_SECTION = "env.ini"


@dataclass(frozen=True)
class EnvVar:
    """One variable of a service's environment."""

    name: str
    value: str = field(repr=False)
    kind: Kind
    source: str  # `env.ini [global]`, `env.ini [gitea]`, or the mapped text (`${gitea.base_url}`)
    secret: bool
    keys: tuple[Key, ...] = ()  # mapped: the config.ini keys it reads
    overrides: tuple[str, ...] = ()  # the sources of the values it hides

    def to_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        shown = self.value if reveal or not self.secret else MASK
        found: dict[str, Any] = {"name": self.name, "value": shown, "kind": self.kind, "source": self.source,
                                 "secret": self.secret}
        if self.kind == "mapped":
            found["keys"] = [f"{section}.{key}" for section, key in self.keys]
        if self.overrides:
            found["overrides"] = list(self.overrides)
        return found


def independent(env: Snapshot, scope: str) -> dict[str, EnvVar]:
    """The variables env.ini sets for one scope (`global` or a service)."""
    return {name: EnvVar(name, stored.plaintext(), "independent", f"env.ini [{scope}]", stored.secret)
            for name, stored in EnvStore.variables(env, scope).items()}


def mapped(name: str, spec: ServiceSpec, config: Snapshot, environ: Mapping[str, str]) -> dict[str, EnvVar]:
    """The manifest's `env:` of a service, resolved in `config` (RenderError naming the variable)."""
    found = {}
    for variable, text in spec.env.items():
        values = Values(config, environ)  # one per variable: whether *it* reads a secret
        try:
            value = text_of(values.substitute(text))
        except RenderError as exc:
            raise RenderError(f"service {name}, env {variable}: {exc}") from None
        found[variable] = EnvVar(variable, value, "mapped", text, bool(values.secret_texts()),
                                 tuple(sorted(values.read)))
    return found


def service_env(name: str, spec: ServiceSpec, config: Snapshot, env: Snapshot,
                environ: Mapping[str, str]) -> dict[str, EnvVar]:
    """The whole environment apphub gives a service, in name order."""
    layers = [independent(env, GLOBAL), independent(env, name), mapped(name, spec, config, environ)]
    merged: dict[str, EnvVar] = {}
    for layer in layers:
        for variable, found in layer.items():
            hidden = merged.get(variable)
            if hidden is not None:
                found = EnvVar(found.name, found.value, found.kind, found.source, found.secret, found.keys,
                               (*hidden.overrides, hidden.source))
            merged[variable] = found
    return dict(sorted(merged.items()))


def reads(name: str) -> frozenset[Key]:
    """What a service that takes an environment reads of env.ini (for the plan's `reads`)."""
    return frozenset({(ENV_SECTION, GLOBAL), (ENV_SECTION, name)})


def mapped_names(manifest: Manifest) -> dict[str, dict[str, str]]:
    """NAME -> {service: mapped text} for every mapped variable of the manifest."""
    found: dict[str, dict[str, str]] = {}
    for service, spec in manifest.services.items():
        for variable, text in spec.env.items():
            found.setdefault(variable, {})[service] = text
    return found
