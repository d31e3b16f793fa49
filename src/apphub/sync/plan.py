"""The plan of a version: per service, the bytes each file should hold, the diff, and the action.

A plan touches nothing: it renders into memory from what the files hold now. The same
computation serves a change of config.ini, a restart of apphub (reconcile) and a drift check: a
file needs writing exactly when its render differs from its bytes on disk.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apphub.envvars import resolve as envvars
from apphub.envvars.store import EnvStore
from apphub.errors import RenderError, SecretError
from apphub.reload.base import ActionSpec, ContainerEnv, EnvReader
from apphub.store.schema import APPLY_STRENGTH
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot, changed_keys
from apphub.sync.envplan import EnvPlan, container_plan, env_file_specs, program_action, written_spellings
from apphub.sync.manifest import ApplyLevel, FileSpec, HealthSpec, Manifest, ServiceSpec
from apphub.sync.render import check_rendered, render_file
from apphub.sync.targets import read_regular, resolve
from apphub.sync.values import Key, Values, mask_secrets, secret_spellings


@dataclass
class FilePlan:
    spec: FileSpec
    before: bytes | None
    after: bytes
    holds_secret: bool
    masks: list[str] = field(repr=False)
    real: str  # where the path led when planned (a symlink followed); the apply writes there

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the file, with every known secret masked."""
        before = (self.before or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
        after = self.after.decode("utf-8", errors="replace").splitlines(keepends=True)
        if self.holds_secret:
            before = _mask_replaced_secrets(before, after, self.masks)
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
    action: ActionSpec
    because: list[str]  # the changed keys (or the reason) that call for `level`
    health: HealthSpec | None = None  # resolved for this version
    health_before: HealthSpec | None = None  # resolved for the previous one (the rollback's gate)
    masks: list[str] = field(default_factory=list, repr=False)  # every known secret's spellings
    env: EnvPlan | None = None  # a container's environment (inject: container)
    pending: str | None = None  # a change that waits, and why (a container that does not exist yet)
    action_is_planned: bool = False  # the environment's own action (recreate, supervisor-update)

    @property
    def changed(self) -> bool:
        return any(file.changed for file in self.files) or (self.env is not None and self.env.changed)

    @property
    def digest(self) -> str:
        """One digest of all the bytes (and the environment) this plan gives the service."""
        digest = hashlib.sha256()
        for file in self.files:
            digest.update(file.spec.path.encode() + b"\0" + file.after + b"\0")
        if self.env is not None:
            digest.update(b"env\0" + self.env.digest_text())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        found = {
            "service": self.name,
            "changed": self.changed,
            "files": [{"path": f.spec.path, "changed": f.changed, "diff": f.diff()} for f in self.files],
            "action": self.action.strategy if self.changed else "none",
            "level": self.level if self.changed else None,
            "because": self.because if self.changed else [],
        }
        if self.env is not None:
            found["env"] = {"container": self.env.container, "changes": self.env.changes(),
                            "unknown": self.env.unknown}
        if self.pending is not None:
            found["pending"] = self.pending
        return found


@dataclass
class Plan:
    """What a version means for the services it affects; `errors` refuse the whole version."""

    version: str
    services: dict[str, ServicePlan]
    errors: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # service -> why it cannot be rendered (in `errors`)
    masks: list[str] = field(default_factory=list, repr=False)  # every known secret's spellings
    notes: list[str] = field(default_factory=list)  # what a reader should know (a compare leaving a service out)

    @property
    def refused(self) -> bool:
        return bool(self.errors)

    def changed(self) -> list[ServicePlan]:
        return [service for service in self.services.values() if service.changed]

    def to_dict(self) -> dict[str, Any]:
        found = {
            "version": self.version,
            "refused": self.refused,
            "errors": self.errors,
            "services": [service.to_dict() for service in self.services.values()],
        }
        if self.notes:
            found["notes"] = self.notes
        return found


class Planner:
    """Renders services for a version. Holds what each service read last time, so that a change
    of one key re-renders only the services that use it."""

    def __init__(self, manifest: Manifest, templates_dir: Path, environ: Mapping[str, str],
                 known_secrets: set[str] | None = None, container_env: EnvReader | None = None) -> None:
        """`known_secrets`: secrets of earlier versions, masked in diffs too (the engine keeps one set
        across manifests: a file can still hold a secret that config.ini no longer does).
        `container_env`: how a container's environment is read (the engine's; None: no engine)."""
        self.manifest = manifest
        self.container_env = container_env
        self.templates_dir = templates_dir
        self.environ = environ
        self.reads: dict[str, frozenset[Key]] = {}
        self.known_secrets = known_secrets if known_secrets is not None else set()
        # What a file holds now: the disk, or in a compare the older version's render.
        self.read: Callable[[str], bytes | None] = read_regular

    def affected(self, changed: set[Key] | None) -> list[str]:
        """The services a change can touch: those that read a changed key, and any not rendered yet."""
        if changed is None:
            return list(self.manifest.services)
        return [name for name in self.manifest.services
                if name not in self.reads or not self.reads[name].isdisjoint(changed)]

    def plan(self, snapshot: Snapshot, *, previous: Snapshot | None = None,
             services: Iterable[str] | None = None, changed: set[Key] | None = None,
             env: Snapshot | None = None) -> Plan:
        """Render `services` (default: all) for `snapshot`, comparing each file with the disk.

        `changed` (default: computed from `previous`) picks each service's level: the strongest
        `apply` of the changed keys the service read; without a previous version, `restart`.
        `env`: env.ini's version, for the services that take an environment.
        """
        if changed is None and previous is not None:
            changed = changed_keys(previous, snapshot)
        texts = secret_texts(snapshot) + (secret_texts(previous) if previous is not None else [])
        if env is not None:
            texts += _env_secret_texts(env)
        self.known_secrets.update(texts)
        masks = spellings(sorted(self.known_secrets))
        names = list(self.manifest.services) if services is None else list(services)
        plans: dict[str, ServicePlan] = {}
        failed: dict[str, str] = {}
        for name in names:
            try:
                plans[name] = self._plan_service(name, self.manifest.services[name], snapshot, previous, changed,
                                                 masks, env)
            except RenderError as exc:
                failed[name] = mask_secrets(str(exc), masks)
        return Plan(snapshot.version, plans, list(failed.values()), failed, masks)

    def compare(self, old: Snapshot, new: Snapshot, *, env: Snapshot | None = None) -> Plan:
        """What going from version `old` to version `new` does to every service: both are rendered,
        and each file's diff is between the two renders, not against the disk (which holds neither,
        perhaps); a container's environment, likewise. The action is the one the keys changed
        between them call for. A service that `old` cannot render is left out, with a note."""
        engine = self.container_env
        try:
            self.container_env = lambda container: ContainerEnv({})  # the old render needs no engine
            first = self.plan(old, env=env)
            rendered = {file.real: file.after for service in first.services.values() for file in service.files}
            old_env = {service.env.container: {name: var.value for name, var in service.env.after.items()}
                       for service in first.services.values() if service.env is not None}
            self.container_env = lambda container: ContainerEnv(old_env.get(container, {}),
                                                                frozenset(old_env.get(container, {})))
            self.read = lambda real: rendered[real] if real in rendered else read_regular(real)
            second = self.plan(new, previous=old, env=env)
        finally:
            self.container_env, self.read = engine, read_regular
        for name, why in first.failed.items():
            second.services.pop(name, None)
            second.notes.append(f"service {name} is left out: version {old.version[:12]} cannot be rendered for it "
                                f"({why})")
        return second

    def _plan_service(self, name: str, service: ServiceSpec, snapshot: Snapshot, previous: Snapshot | None,
                      changed: set[Key] | None, masks: list[str], env: Snapshot | None = None) -> ServicePlan:
        files = []
        reads: set[Key] = set()
        for number, spec in enumerate(service.files, start=1):
            values = Values(snapshot, self.environ)  # one per file: which secrets *this* file holds
            real = resolve(spec.path)
            confinement = self.manifest.confinement
            problem = confinement.problem(real) if confinement is not None else None
            if problem is not None:
                raise RenderError(f"service {name}, file {number} ({spec.path}): it now leads to {real}, which "
                                  f"{problem}; nothing is read or written there (a symlink put in its place?)")
            try:
                before = self.read(real)
            except RenderError as exc:
                raise RenderError(f"service {name}, file {number}: {exc}") from None
            if before is None and spec.if_missing == "skip":
                continue  # the service creates this file itself; apphub merges into it once it exists
            after = render_file(name, spec, values, before, self.templates_dir, number=number)
            check_rendered(name, spec, after, number=number)
            files.append(FilePlan(spec, before, after, bool(values.secret_texts()), masks, real))
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
        env_plan = None
        if service.takes_env and env is not None:
            variables = envvars.service_env(name, service, snapshot, env, self.environ)
            reads |= envvars.reads(name) | {key for var in variables.values() for key in var.keys}
            holds_secret = any(var.secret for var in variables.values())
            for target, real, before, after in env_file_specs(name, service, variables, self.manifest, self.read):
                files.append(FilePlan(target, before, after, holds_secret, masks, real))
            if service.inject is not None and service.inject.container is not None:
                env_plan = container_plan(service.inject.container, variables, self.container_env)
        self.reads[name] = frozenset(reads)
        level, because = _level(snapshot, reads, changed)
        action: ActionSpec = service.action_for(level)
        pending = None
        if env_plan is not None and env_plan.missing:
            pending = (f"container {env_plan.container} does not exist: it gets this environment when it is "
                       "created" + (f" (from {service.env_file})" if service.env_file else ""))
        elif env_plan is not None and env_plan.unknown is not None:
            pending = (f"container {env_plan.container}: its environment cannot be compared now, asked again "
                       f"soon: {env_plan.unknown}")
        planned = False
        if env_plan is not None and env_plan.changed:
            # A restart keeps the old environment: only a recreate gives the container the new one,
            # and it restarts whatever the files needed too. Without a health probe of its own, the
            # container's state is the gate: a crashed one must not be kept.
            level, action, planned = "restart", env_plan.action(service), True
            assert service.inject is not None
            health = health or HealthSpec(container=env_plan.container, timeout=service.inject.timeout)
            health_before = health_before or health
        elif service.inject is not None and service.inject.program is not None and any(
                file.changed for file in files if file.spec.path == service.inject.conf):
            level, action, planned = "restart", program_action(service), True
            health = health or HealthSpec(supervisor=service.inject.program, timeout=service.inject.timeout)
            health_before = health_before or health
        return ServicePlan(name, files, frozenset(reads), level, action, because, health, health_before, masks,
                           env_plan, pending, planned)


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


def _mask_replaced_secrets(before: list[str], after: list[str], masks: list[str]) -> list[str]:
    """`before` with what changed masked in each line that a line holding a secret replaces.

    The file on disk can hold a secret no version apphub knows of (the bytes of a failed apply it
    rolled back, a secret changed while apphub was stopped), so masking known secrets is not
    enough: the old side of a line whose new side holds a secret is masked from its first to its
    last differing character (`password = ********`); an unpaired old line, whole.
    """
    masked = list(before)
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "replace" or not any(secret in line for line in after[j1:j2] for secret in masks):
            continue
        for offset, old in enumerate(before[i1:i2]):
            new = after[j1 + offset] if j1 + offset < j2 else None
            if new is None:
                body = old.rstrip("\r\n")
                masked[i1 + offset] = MASK + old[len(body):] if body else old
            elif any(secret in new for secret in masks):
                masked[i1 + offset] = _mask_difference(old, new, masks)
    return masked


def _mask_difference(old: str, new: str, masks: list[str]) -> str:
    """`old` with a MASK over the part that differs from `new`, widened to cover wherever `new`
    holds a secret (so the part of an old secret that a new one shares is hidden too)."""
    spans = [(at, at + len(secret)) for secret in masks for at in [new.find(secret)] if at >= 0]
    start = min([_common_prefix(old, new)] + [begin for begin, _ in spans])
    keep = min([_common_prefix(old[start:][::-1], new[start:][::-1])] + [len(new) - end for _, end in spans])
    end = len(old) - keep
    return old if end <= start else old[:start] + MASK + old[end:]


def _common_prefix(first: str, second: str) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def spellings(secrets: list[str]) -> list[str]:
    """Every spelling of every secret, longest first: as values show them, and as the `.env` and
    supervisord writers escape them."""
    return sorted(set(secret_spellings(secrets)) | set(written_spellings(secrets)), key=len, reverse=True)


def _env_secret_texts(env: Snapshot) -> list[str]:
    """Every secret of env.ini in plaintext (as the services get them)."""
    found = []
    for scope in EnvStore.scopes(env):
        with contextlib.suppress(SecretError):
            found += [var.plaintext() for var in EnvStore.variables(env, scope).values() if var.secret]
    return [text for text in found if text]


def secret_texts(snapshot: Snapshot) -> list[str]:
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

