"""The environment part of a service's plan: where its variables go and what that changes.

- `env_file` (a docker compose project's `.env`): the whole environment merged into the file,
  every line apphub does not manage kept, mode 0600; a file like any other of the plan.
- `inject: {program, conf}`: the program's `environment=` in its supervisord file; the file
  changes, and supervisord rereads it and restarts that program only (`supervisor-update`).
- `inject: {container}`: the container's own environment, read from the engine. A container only
  sees new variables when it is recreated, so a difference is planned as `container-recreate`
  with the new values; the names apphub set before and no longer does are removed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apphub.envvars.resolve import EnvVar
from apphub.errors import ApphubError, BackendUnavailable, RenderError
from apphub.reload.base import ContainerEnv, EnvReader
from apphub.reload.recreate import ContainerRecreateAction
from apphub.reload.supervisor_env import SupervisorUpdateAction, environment_value
from apphub.store.secrets import MASK
from apphub.sync.manifest import FileSpec, Manifest, ServiceSpec
from apphub.sync.render import envfile, inifile
from apphub.sync.targets import read_regular, resolve

CHANGED = MASK + " (changed)"
MANAGED_LINE = "# apphub manages: "
MANAGED = re.compile(r"^# apphub manages: ?([A-Za-z0-9_,]*)[ \t]*(?=\r?$)", re.MULTILINE)


@dataclass
class EnvPlan:
    """A container's environment now (for the names apphub manages) and as planned."""

    container: str
    after: dict[str, EnvVar] = field(repr=False)
    before: dict[str, str] | None = field(repr=False)  # None: the engine could not be asked
    unset: list[str]
    missing: bool = False  # there is no such container: nothing to recreate
    unknown: str | None = None  # why `before` is None

    @property
    def changed(self) -> bool:
        """Whether the container must be recreated; not when it is missing or the engine could not
        be asked (then the change is pending, asked again on the retry timer)."""
        if self.missing or self.before is None:
            return False
        return self.before != {name: var.value for name, var in self.after.items()}

    def changes(self) -> list[dict[str, Any]]:
        """Per variable, what the recreate changes; a secret's values never shown."""
        if self.before is None:
            return []
        found = []
        for name, var in self.after.items():
            old = self.before.get(name)
            if old == var.value:
                continue
            shown_old = None if old is None else MASK if var.secret else old
            shown_new = CHANGED if var.secret and old is not None else MASK if var.secret else var.value
            found.append({"name": name, "change": "added" if old is None else "changed", "before": shown_old,
                          "after": shown_new, "secret": var.secret})
        # a value apphub no longer sets may have been a secret: never shown
        found += [{"name": name, "change": "removed", "before": MASK, "after": None, "secret": True}
                  for name in self.unset if name in self.before]
        return found

    def action(self, spec: ServiceSpec) -> ContainerRecreateAction:
        assert spec.inject is not None
        return ContainerRecreateAction(strategy="container-recreate", container=self.container,
                                       grace=spec.inject.grace, timeout=spec.inject.timeout,
                                       env={name: var.value for name, var in self.after.items()},
                                       unset=list(self.unset))

    def digest_text(self) -> bytes:
        return b"".join(f"{name}={var.value}\0".encode() for name, var in self.after.items())


def container_plan(container: str, env: Mapping[str, EnvVar], reader: EnvReader | None) -> EnvPlan:
    """What the container holds now for the names it should have or apphub set before."""
    if reader is None:
        return EnvPlan(container, dict(env), None, [], unknown="no container engine is configured")
    try:
        found: ContainerEnv | None = reader(container)
    except (BackendUnavailable, ApphubError) as exc:
        return EnvPlan(container, dict(env), None, [], unknown=str(exc))
    if found is None:
        return EnvPlan(container, dict(env), {}, [], missing=True)
    unset = sorted(found.managed - set(env))
    before = {name: found.env[name] for name in (*env, *unset) if name in found.env}
    return EnvPlan(container, dict(env), before, unset)


def env_file_specs(name: str, spec: ServiceSpec, env: Mapping[str, EnvVar], manifest: Manifest,
                   read: Callable[[str], bytes | None] = read_regular,
                   ) -> list[tuple[FileSpec, str, bytes | None, bytes]]:
    """The files the environment goes into: (spec, real path, bytes now, bytes planned); `read`
    says what a file holds now (the disk, or another version's render)."""
    found = []
    if spec.env_file is not None:
        target = FileSpec.model_construct(path=spec.env_file, format="env", mode="merge", map=None, template=None,
                                          check=None, if_missing="create", file_mode="0600", owner=None)
        real, before = _read(name, spec.env_file, manifest, read)
        text = _decoded(name, spec.env_file, before)
        try:
            after = managed_env_file(text, {var.name: var.value for var in env.values()})
        except RenderError as exc:
            raise RenderError(f"service {name}, {spec.env_file}: {exc}") from None
        found.append((target, real, before, after.encode("utf-8")))
    if spec.inject is not None and spec.inject.program is not None and spec.inject.conf is not None:
        conf = spec.inject.conf
        target = FileSpec.model_construct(path=conf, format="ini", mode="merge", map=None, template=None,
                                          check=None, if_missing="create", file_mode=None, owner=None)
        real, before = _read(name, conf, manifest, read)
        try:
            line = environment_value({var.name: var.value for var in env.values()})
            after = inifile.merge(_decoded(name, conf, before), [(f"program:{spec.inject.program}.environment",
                                                                  line)], conf)
        except (RenderError, ValueError) as exc:
            raise RenderError(f"service {name}, {conf}: {exc}") from None
        found.append((target, real, before, after.encode("utf-8")))
    return found


def managed_env_file(text: str, env: Mapping[str, str]) -> str:
    """A `.env` file's text with `env` merged in, and the variables apphub set before and no longer
    does taken out: the names it manages are on a comment line of the file (`# apphub manages:
    A,B`), as the io.apphub.env label says them for a container. Every other line is kept."""
    found = MANAGED.search(text)
    before = {name for name in (found.group(1).split(",") if found else []) if name}
    text = envfile.remove(text, before - set(env))
    text = envfile.merge(text, list(env.items()))
    marker = MANAGED_LINE + ",".join(sorted(env))
    found = MANAGED.search(text)
    if found is not None:
        return text[: found.start()] + marker + text[found.end() :]
    newline = "\r\n" if "\r\n" in text else "\n"
    return text + ("" if not text or text.endswith("\n") else newline) + marker + newline


def written_spellings(secrets: Iterable[str]) -> list[str]:
    """Each secret as a `.env` file or a supervisord `environment=` writes it, escaped (`\\$`,
    `%%`...): spellings a diff of those files shows, to be masked like the plain one."""
    found: set[str] = set()
    for secret in secrets:
        written = [envfile.double_quoted(secret)]
        with contextlib.suppress(RenderError):
            written.append(envfile.quote("X", secret))
        with contextlib.suppress(ValueError):
            written.append(environment_value({"X": secret}).removeprefix("X="))
        for text in written:
            # the inside of a quoted spelling: masking the quotes too would hide where a value begins
            quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
            found.add(text[1:-1] if quoted else text)
    return sorted((text for text in found if text), key=len, reverse=True)


def program_action(spec: ServiceSpec) -> SupervisorUpdateAction:
    assert spec.inject is not None
    assert spec.inject.program is not None
    return SupervisorUpdateAction(strategy="supervisor-update", program=spec.inject.program,
                                  timeout=spec.inject.timeout)


def _read(name: str, path: str, manifest: Manifest,
          read: Callable[[str], bytes | None]) -> tuple[str, bytes | None]:
    real = resolve(path)
    confinement = manifest.confinement
    problem = confinement.problem(real) if confinement is not None else None
    if problem is not None:
        raise RenderError(f"service {name}, {path}: it now leads to {real}, which {problem}; nothing is read or "
                          "written there (a symlink put in its place?)")
    try:
        return real, read(real)
    except RenderError as exc:
        raise RenderError(f"service {name}, {path}: {exc}") from None


def _decoded(name: str, path: str, data: bytes | None) -> str:
    try:
        return (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"service {name}, {path}: is not UTF-8 text") from None
