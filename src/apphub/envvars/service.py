"""The environment variables as the API and the CLI see them: every scope with each variable's
kind and source, and writes that refuse what the manifest maps.

A listing is cached by what it depends on (env.ini's and config.ini's versions, services.yaml's
and system.ini's bytes): a read costs a few stats, like a read of the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apphub.audit.log import Actor
from apphub.envvars.resolve import EnvVar, independent, mapped_names, service_env
from apphub.envvars.store import FILE, GLOBAL, EnvStore, EnvValue
from apphub.errors import ApphubError, FieldError, ManifestError, RenderError, SectionNotFound, ValidationFailed
from apphub.reload.supervisor_env import environment_value
from apphub.store.inistore import IniStore, WriteResult
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot
from apphub.sync.manifest import Manifest, load_manifest
from apphub.sync.settings import SyncSettings


@dataclass(frozen=True)
class Listing:
    """Every scope's variables, shown (secrets masked), and the tag of what it was made from."""

    tag: str
    body: bytes
    scopes: dict[str, dict[str, Any]]
    key: tuple[Any, ...] = ()  # what it was made from

class EnvVars:
    def __init__(self, env: EnvStore, config: IniStore, system: IniStore, manifest_path: Path,
                 data_root: Path, environ: Mapping[str, str] | None = None) -> None:
        self.env = env
        self._config = config
        self._system = system
        self._manifest_path = manifest_path
        self._data_root = data_root
        self._environ = dict(os.environ if environ is None else environ)
        self._manifest: tuple[tuple[Any, ...], Manifest | None, str | None] | None = None
        self._listing: Listing | None = None

    # -- reading ------------------------------------------------------------------------------

    def manifest(self) -> tuple[Manifest | None, str | None]:
        """The manifest now (re-read when services.yaml or system.ini changed), or why there is none."""
        system = self._system.snapshot()
        try:
            status = os.stat(self._manifest_path)
            key: tuple[Any, ...] = (system.version, status.st_ino, status.st_size, status.st_mtime_ns)
        except OSError:
            key = (system.version, None)
        cached = self._manifest
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            roots = SyncSettings.from_system(system).roots
            loaded: Manifest | None = load_manifest(self._manifest_path, roots, self._data_root)
            problem = None
        except (ManifestError, ApphubError) as exc:
            loaded, problem = None, str(exc)
        self._manifest = (key, loaded, problem)
        return loaded, problem

    def listing(self) -> Listing:
        env, config = self.env.snapshot(), self._config.snapshot()
        manifest, problem = self.manifest()
        key = (env.version, config.version, self._manifest and self._manifest[0])
        cached = self._listing
        if cached is not None and cached.key == key:
            return cached
        tag = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        scopes = self._scopes(env, config, manifest)
        body: dict[str, Any] = {"version": env.version, "scopes": scopes}
        if problem is not None:
            body["manifest_error"] = problem
        listing = Listing(tag, json.dumps(body).encode(), scopes, key)
        self._listing = listing  # one assignment: a reader sees the old listing or the new one
        return listing

    def scope(self, scope: str, *, reveal: bool = False) -> dict[str, Any]:
        """One scope's variables; SectionNotFound for a scope that is neither set nor a service."""
        env, config = self.env.snapshot(), self._config.snapshot()
        manifest, _ = self.manifest()
        scopes = self._scopes(env, config, manifest, reveal=reveal, only=scope)
        if scope not in scopes:
            raise SectionNotFound(scope, FILE)
        return {"version": env.version, "scope": scope, **scopes[scope]}

    def _scopes(self, env: Snapshot, config: Snapshot, manifest: Manifest | None, *, reveal: bool = False,
                only: str | None = None) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        names = [GLOBAL, *[name for name, spec in (manifest.services.items() if manifest else []) if spec.takes_env],
                 *env.sections()]
        for scope in dict.fromkeys(names):
            if only is not None and scope != only:
                continue
            spec = manifest.services.get(scope) if manifest is not None and scope != GLOBAL else None
            if spec is not None and spec.takes_env:
                variables, errors = self._effective(scope, spec, config, env)
                found[scope] = {"service": True, "variables": [var.to_dict(reveal=reveal) for var in variables],
                                **({"errors": errors} if errors else {})}
            else:
                found[scope] = {"service": False if scope != GLOBAL else None,
                                "variables": [var.to_dict(reveal=reveal) for var in independent(env, scope).values()]}
                if scope != GLOBAL:
                    found[scope]["note"] = "no service of services.yaml takes this scope's variables"
        return found

    def _effective(self, name: str, spec: Any, config: Snapshot, env: Snapshot) -> tuple[list[EnvVar], list[str]]:
        """The service's environment; a mapped variable that cannot be resolved is left out and said."""
        try:
            return list(service_env(name, spec, config, env, self._environ).values()), []
        except RenderError:
            pass
        errors = []
        usable = dict(spec.env)
        for variable, text in spec.env.items():  # find the ones that fail, one by one
            try:
                service_env(name, spec.model_copy(update={"env": {variable: text}}), config, env, self._environ)
            except RenderError as exc:
                errors.append(str(exc))
                del usable[variable]
        return list(service_env(name, spec.model_copy(update={"env": usable}), config, env,
                                self._environ).values()), errors

    # -- writing ------------------------------------------------------------------------------

    def set(self, scope: str, values: Mapping[str, EnvValue], actor: Actor, *,
            if_match: Iterable[str] | None = None, message: str | None = None) -> WriteResult:
        manifest, _ = self.manifest()
        refused = self._refusals(scope, values, manifest)
        return self.env.set(scope, values, actor, if_match=None if if_match is None else list(if_match),
                            message=message, refused=refused)

    def preview(self, scope: str, values: Mapping[str, EnvValue]) -> Snapshot:
        """env.ini as `set` would leave it (for a plan), refused the same way."""
        manifest, _ = self.manifest()
        return self.env.preview(scope, values, self._refusals(scope, values, manifest))

    def unset(self, scope: str, names: Iterable[str], actor: Actor, *, if_match: Iterable[str] | None = None,
              message: str | None = None) -> WriteResult:
        names = list(names)
        manifest, _ = self.manifest()
        stored = self.env.snapshot().document
        mapped = [error for error in self._refusals(scope, dict.fromkeys(names, EnvValue("")), manifest)
                  if error.rule == "mapped" and error.key is not None and not stored.has_key(scope, error.key)]
        if mapped:  # not set here: it is the mapping's, which only its config.ini key changes
            raise ValidationFailed(mapped)
        return self.env.unset(scope, names, actor, if_match=None if if_match is None else list(if_match),
                              message=message)

    @staticmethod
    def _refusals(scope: str, values: Mapping[str, EnvValue], manifest: Manifest | None) -> list[FieldError]:
        errors = []
        if manifest is not None and scope != GLOBAL:
            spec = manifest.services.get(scope)
            if spec is None or not spec.takes_env:
                takers = [name for name, service in manifest.services.items() if service.takes_env]
                errors.append(FieldError(scope, None, "scope", "is not a service that takes environment variables "
                                         f"(scopes: {', '.join([GLOBAL, *takers])})", None, FILE))
        for name in values:
            for service, text in (mapped_names(manifest) if manifest is not None else {}).get(name, {}).items():
                if scope in (GLOBAL, service):
                    errors.append(FieldError(scope, name, "mapped", f"is mapped for service {service} from "
                                             f"config.ini ({text}) by services.yaml: change that key instead",
                                             None, FILE))
        errors += _not_carried(scope, values, manifest)
        return errors


def _not_carried(scope: str, values: Mapping[str, EnvValue], manifest: Manifest | None) -> list[FieldError]:
    """A value a supervisord program of the scope cannot be given (its `environment=` grammar is
    narrow): refused now, rather than refusing the version for every service at the next sync."""
    programs = [name for name, spec in (manifest.services.items() if manifest is not None else [])
                if spec.inject is not None and spec.inject.program is not None and scope in (GLOBAL, name)]
    errors = []
    for name, value in values.items():
        if value.value == MASK:
            continue  # a secret's kept value was carried before
        for service in programs:
            try:
                environment_value({name: value.value})
            except ValueError as exc:
                errors.append(FieldError(scope, name, "supervisord", f"service {service} runs under supervisord, "
                                         f"which cannot be given this value: {exc}", None, FILE))
                break
    return errors
