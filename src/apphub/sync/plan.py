"""The plan of a version: per service, the bytes each file should hold, the diff, and the action.

A plan touches nothing: it renders into memory from what the files hold now. The same
computation serves a change of config.ini, a restart of apphub (reconcile) and a drift check: a
file needs writing exactly when its render differs from its bytes on disk.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apphub.errors import RenderError, SecretError
from apphub.store.schema import APPLY_STRENGTH
from apphub.store.snapshot import Snapshot, changed_keys
from apphub.sync.manifest import Action, ApplyLevel, FileSpec, HealthSpec, Manifest, ServiceSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.values import Key, Values, mask_secrets


@dataclass
class FilePlan:
    spec: FileSpec
    before: bytes | None
    after: bytes
    holds_secret: bool
    masks: list[str] = field(repr=False)

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the file, with every known secret masked."""
        before = (self.before or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
        after = self.after.decode("utf-8", errors="replace").splitlines(keepends=True)
        label = self.spec.path
        text = "".join(difflib.unified_diff(before, after, f"{label} (now)" if self.before is not None
                                            else "/dev/null", f"{label} (planned)"))
        return mask_secrets(text, self.masks)


@dataclass
class ServicePlan:
    name: str
    files: list[FilePlan]
    reads: frozenset[Key]
    level: ApplyLevel
    action: Action
    because: list[str]  # the changed keys (or the reason) that call for `level`
    health: HealthSpec | None = None  # resolved for this version
    health_before: HealthSpec | None = None  # resolved for the previous one (the rollback's gate)

    @property
    def changed(self) -> bool:
        return any(file.changed for file in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "changed": self.changed,
            "files": [{"path": f.spec.path, "changed": f.changed, "diff": f.diff()} for f in self.files],
            "action": self.action.strategy if self.changed else "none",
            "level": self.level if self.changed else None,
            "because": self.because if self.changed else [],
        }


@dataclass
class Plan:
    """What a version means for the services it affects; `errors` refuse the whole version."""

    version: str
    services: dict[str, ServicePlan]
    errors: list[str]

    @property
    def refused(self) -> bool:
        return bool(self.errors)

    def changed(self) -> list[ServicePlan]:
        return [service for service in self.services.values() if service.changed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "refused": self.refused,
            "errors": self.errors,
            "services": [service.to_dict() for service in self.services.values()],
        }


class Planner:
    """Renders services for a version. Holds what each service read last time, so that a change
    of one key re-renders only the services that use it."""

    def __init__(self, manifest: Manifest, templates_dir: Path, environ: Mapping[str, str]) -> None:
        self.manifest = manifest
        self.templates_dir = templates_dir
        self.environ = environ
        self.reads: dict[str, frozenset[Key]] = {}

    def affected(self, changed: set[Key] | None) -> list[str]:
        """The services a change can touch: those that read a changed key, and any not rendered yet."""
        if changed is None:
            return list(self.manifest.services)
        return [name for name in self.manifest.services
                if name not in self.reads or not self.reads[name].isdisjoint(changed)]

    def plan(self, snapshot: Snapshot, *, previous: Snapshot | None = None,
             services: Iterable[str] | None = None, changed: set[Key] | None = None) -> Plan:
        """Render `services` (default: all) for `snapshot`, comparing each file with the disk.

        `changed` (default: computed from `previous`) picks each service's level: the strongest
        `apply` of the changed keys the service read; without a previous version, `restart`.
        """
        if changed is None and previous is not None:
            changed = changed_keys(previous, snapshot)
        masks = _secret_texts(snapshot) + (_secret_texts(previous) if previous is not None else [])
        masks = sorted(set(masks), key=len, reverse=True)
        names = list(self.manifest.services) if services is None else list(services)
        plans: dict[str, ServicePlan] = {}
        errors: list[str] = []
        for name in names:
            try:
                plans[name] = self._plan_service(name, self.manifest.services[name], snapshot, previous, changed,
                                                 masks)
            except RenderError as exc:
                errors.append(mask_secrets(str(exc), masks))
        return Plan(snapshot.version, plans, errors)

    def _plan_service(self, name: str, service: ServiceSpec, snapshot: Snapshot, previous: Snapshot | None,
                      changed: set[Key] | None, masks: list[str]) -> ServicePlan:
        files = []
        reads: set[Key] = set()
        for number, spec in enumerate(service.files, start=1):
            values = Values(snapshot, self.environ)  # one per file: which secrets *this* file holds
            before = _read(spec.path)
            if before is None and spec.if_missing == "skip":
                continue  # the service creates this file itself; apphub merges into it once it exists
            after = render_file(name, spec, values, before, self.templates_dir, number=number)
            check_rendered(name, spec, after, number=number)
            files.append(FilePlan(spec, before, after, bool(values.secret_texts()), masks))
            reads |= values.read
        health = health_before = None
        if service.health is not None:
            values = Values(snapshot, self.environ)
            health = resolve_health(name, service.health, values)
            reads |= values.read
            health_before = health
            if previous is not None:
                with contextlib.suppress(RenderError):  # the previous version may lack a key this one has
                    health_before = resolve_health(name, service.health, Values(previous, self.environ))
        self.reads[name] = frozenset(reads)
        level, because = _level(snapshot, reads, changed)
        return ServicePlan(name, files, frozenset(reads), level, service.action_for(level), because, health,
                           health_before)


def resolve_health(service: str, spec: HealthSpec, values: Values) -> HealthSpec:
    """The health spec with its ${section.key} references filled in from `values`."""

    def text(value: str | None) -> str | None:
        return None if value is None else str(values.substitute(value))

    try:
        return spec.model_copy(update={
            "http": text(spec.http), "tcp": text(spec.tcp), "container": text(spec.container),
            "supervisor": text(spec.supervisor),
            "command": None if spec.command is None else [str(values.substitute(word)) for word in spec.command],
        })
    except RenderError as exc:
        raise RenderError(f"service {service}, health: {exc}") from exc


def _level(snapshot: Snapshot, reads: AbstractSet[Key], changed: set[Key] | None) -> tuple[ApplyLevel, list[str]]:
    if changed is None:
        return "restart", ["no earlier version was applied: the strongest action"]
    used = sorted(reads & changed)
    if not used:
        return "restart", ["the files differ from the render (edited elsewhere, or the manifest changed)"]
    strongest: ApplyLevel = "hot"
    for section, key in used:
        spec = snapshot.schema.key(section, key)
        level: ApplyLevel = spec.apply if spec is not None else "restart"
        if APPLY_STRENGTH[level] > APPLY_STRENGTH[strongest]:
            strongest = level
    return strongest, [f"{section}.{key}" for section, key in used]


def _secret_texts(snapshot: Snapshot) -> list[str]:
    """Every secret of a version in plaintext, schema defaults of secret keys included."""
    found = []
    for section, key in snapshot.secret_keys():
        with contextlib.suppress(SecretError):  # a damaged secret has no plaintext to mask
            found.append(snapshot.section_plaintext_value(section, key))
    for section, spec in snapshot.schema.sections.items():
        for key, key_spec in spec.keys.items():
            if key_spec.secret and key_spec.default not in (None, "") and not snapshot.document.has_key(section, key):
                found.append(str(key_spec.default))
    return [text for text in found if text]


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:  # through a symlink, like the service reads it
            return handle.read()
    except FileNotFoundError:
        return None
