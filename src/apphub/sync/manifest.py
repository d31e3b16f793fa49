"""The manifest, `DATA/services.yaml`: each service, the files it reads, how it reloads and how
its health is checked. It is system-level: the API cannot write it.

    templates: templates                 # Jinja2 templates, relative to the data folder
    services:
      web:
        files:
          - path: /srv/web/app.json        # must lie under a root of system.ini [sync] roots
            format: json                   # ini | json | yaml | toml | env (inferred from the extension)
            mode: merge                    # merge: change only the mapped keys; replace: the mapped keys only
            map:
              server.port: "${web.port}"   # ${section.key} of config.ini, ${env:NAME}
          - path: /srv/web/nginx.conf
            template: nginx.conf.j2        # sandboxed Jinja2, StrictUndefined
            check: "nginx -t -c {staged}"  # runs on the staged file before the swap
        reload:                            # one action for any change, or one per `apply` level
          reload: {strategy: supervisor-signal, program: web, signal: HUP}
          restart: {strategy: supervisor-restart, program: web}
        health: {http: "http://127.0.0.1:8081/health", timeout: 10}
        depends_on: [db]
        drift: report                      # report | repair
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from apphub.errors import ManifestError
from apphub.reload.base import NO_ACTION, NoAction, Spec
from apphub.reload.docker import ContainerExecAction, ContainerRestartAction, ContainerSignalAction
from apphub.reload.health import HealthSpec
from apphub.reload.httphook import HttpAction
from apphub.reload.process import ExecAction, SignalAction
from apphub.reload.supervisor import SupervisorRestartAction, SupervisorSignalAction
from apphub.sync.targets import resolve

__all__ = [  # the action and probe specifications are the backends'; the manifest names them for its users
    "Action", "ContainerExecAction", "ContainerRestartAction", "ContainerSignalAction", "ExecAction", "HealthSpec",
    "HttpAction", "NoAction", "SignalAction", "SupervisorRestartAction", "SupervisorSignalAction",
]

FileFormat = Literal["ini", "json", "yaml", "toml", "env"]
ApplyLevel = Literal["hot", "reload", "restart"]
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXTENSIONS: dict[str, FileFormat] = {
    ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".env": "env", ".ini": "ini",
}




class FileSpec(Spec):
    """One file a service reads, and how apphub produces it."""

    path: str
    format: FileFormat | None = None
    mode: Literal["merge", "replace"] = "replace"
    map: dict[str, str] | None = None
    template: str | None = None
    check: str | None = None
    if_missing: Literal["create", "skip"] = Field(
        default="create", description="When the file does not exist: create it, or leave it to the service "
                                      "(a merge into an app's own file, which the app creates on first start)")
    file_mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$",
                                  description="Octal mode; default: kept, or 0600 when the file holds a secret")
    owner: str | None = Field(default=None, description="user[:group]; default: kept, or apphub's user when new")
    container_path: str | None = Field(
        default=None, description="Where the file lies inside the service's container, for init-config.sh "
                                  "(default: path)")

    @field_validator("container_path")
    @classmethod
    def _inside_container(cls, path: str | None) -> str | None:
        if path is not None and (not path.startswith("/") or ".." in PurePosixPath(path).parts or "\0" in path):
            raise ValueError(f"container_path {path!r} must be an absolute path without '..'")
        return path

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must be an absolute path")
        if "\x00" in path or ".." in PurePosixPath(path).parts:
            raise ValueError("must not contain '..' or NUL")
        return os.path.normpath(path)

    @field_validator("template")
    @classmethod
    def _relative_template(cls, template: str | None) -> str | None:
        if template is not None and (template.startswith("/") or ".." in PurePosixPath(template).parts):
            raise ValueError("must be a path inside the templates folder (no leading '/', no '..')")
        return template

    @field_validator("check")
    @classmethod
    def _check_parses(cls, check: str | None) -> str | None:
        if check is not None:
            try:
                words = shlex.split(check)
            except ValueError as exc:
                raise ValueError(f"cannot be split into words: {exc}") from exc
            if not words:
                raise ValueError("is empty")
            if not any("{staged}" in word for word in words):
                raise ValueError("must name the staged file as {staged}")
        return check

    @model_validator(mode="after")
    def _one_way_to_produce(self) -> FileSpec:
        if (self.map is None) == (self.template is None):
            raise ValueError("give either `map` or `template`")
        name = PurePosixPath(self.path).name.lower()
        # `.env` (docker compose's file) has no suffix to Python, only a name
        inferred = "env" if name == ".env" or name.endswith(".env") else _EXTENSIONS.get(PurePosixPath(name).suffix)
        if self.template is not None:
            # A template renders the whole file; a format (given, or told by the extension) is
            # only how its render is checked to parse before it is swapped in.
            if self.mode != "replace":
                raise ValueError("a template renders the whole file: `mode: merge` does not apply")
            if self.format is None and inferred is not None:
                object.__setattr__(self, "format", inferred)
            return self
        if self.format is None:
            if inferred is None:
                raise ValueError("give a `format` (ini, json, yaml, toml, env): the extension does not tell")
            object.__setattr__(self, "format", inferred)
        if not self.map:
            raise ValueError("`map` is empty")
        return self

    def check_argv(self, staged: str) -> list[str]:
        """The check command's words with {staged} filled in (no shell ever sees them)."""
        assert self.check is not None
        return [word.replace("{staged}", staged) for word in shlex.split(self.check)]

    def mode_bits(self) -> int | None:
        return int(self.file_mode, 8) if self.file_mode is not None else None


Action = Annotated[
    NoAction | SignalAction | ExecAction | HttpAction | SupervisorRestartAction | SupervisorSignalAction
    | ContainerRestartAction | ContainerSignalAction | ContainerExecAction,
    Field(discriminator="strategy"),
]


class InjectSpec(Spec):
    """Where a service's environment goes: a container (recreated with it, the only way a container
    gets new env) or a supervisord program (its `environment=` in `conf`, then supervisord rereads
    its configuration and restarts that program only)."""

    container: str | None = None
    grace: int = Field(default=10, ge=0, le=600, description="Seconds of SIGTERM before SIGKILL for the old container")
    program: str | None = None
    conf: str | None = Field(default=None, description="The file holding [program:NAME] (under a sync root)")
    timeout: float = Field(default=60.0, gt=0, le=600)

    @field_validator("conf")
    @classmethod
    def _absolute_conf(cls, conf: str | None) -> str | None:
        return None if conf is None else FileSpec._absolute(conf)

    @model_validator(mode="after")
    def _one_target(self) -> InjectSpec:
        if (self.container is None) == (self.program is None):
            raise ValueError("give either `container` or `program` (with `conf`)")
        if self.program is not None and self.conf is None:
            raise ValueError("a program's environment goes into its supervisord file: give `conf`")
        if self.container is not None and self.conf is not None:
            raise ValueError("`conf` is for a supervisord program, not a container")
        return self


class ServiceSpec(Spec):
    description: str = ""
    files: list[FileSpec] = Field(default_factory=list)
    reload: dict[ApplyLevel, Action] = Field(default_factory=dict)
    health: HealthSpec | None = None
    depends_on: list[str] = Field(default_factory=list)
    drift: Literal["report", "repair"] = "report"
    env: dict[str, str] = Field(default_factory=dict, description="Mapped variables: NAME -> text with "
                                                                  "${section.key} of config.ini")
    env_file: str | None = Field(default=None, description="A docker compose project's .env: the service's "
                                                           "whole environment merged into it (mode 0600)")
    inject: InjectSpec | None = None
    fetch: bool = Field(default=False, description="The service's container fetches its files and env at start "
                                                   "with init-config.sh (GET /api/v1/services/{name}/config)")

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, '_', "
                                 "not starting with a digit)")
        return env

    @field_validator("env_file")
    @classmethod
    def _absolute_env_file(cls, path: str | None) -> str | None:
        return None if path is None else FileSpec._absolute(path)

    @model_validator(mode="after")
    def _env_goes_somewhere(self) -> ServiceSpec:
        if self.env and self.inject is None and self.env_file is None and not self.fetch:
            raise ValueError("`env` needs somewhere to go: `inject` (a container or a program), `env_file`, "
                             "or `fetch: true` (the container's init-config.sh fetches it at start)")
        return self

    @property
    def takes_env(self) -> bool:
        """Whether the service gets an environment from apphub ([global], its own section, `env`)."""
        return self.inject is not None or self.env_file is not None

    def env_paths(self) -> list[str]:
        """The files its environment is written to, besides `files`."""
        paths = [self.env_file] if self.env_file is not None else []
        if self.inject is not None and self.inject.conf is not None:
            paths.append(self.inject.conf)
        return paths

    @field_validator("reload", mode="before")
    @classmethod
    def _one_action_for_every_level(cls, value: Any) -> Any:
        # `reload: {strategy: ...}` is one action for whatever a change needs beyond `hot`.
        if isinstance(value, dict) and "strategy" in value:
            return {"reload": value, "restart": value}
        return value

    def action_for(self, level: ApplyLevel) -> Action:
        """The weakest declared action that is at least as strong as `level` needs.

        A `hot` change needs none (the service reads the value when it uses it) unless the
        manifest declares one for `hot`.
        """
        if level == "hot":
            return self.reload.get("hot", NO_ACTION)
        order: list[ApplyLevel] = ["hot", "reload", "restart"]
        for candidate in order[order.index(level):]:
            if candidate in self.reload:
                return self.reload[candidate]
        # Nothing strong enough is declared: the strongest there is beats doing nothing.
        for candidate in reversed(order[: order.index(level)]):
            if candidate in self.reload:
                return self.reload[candidate]
        return NO_ACTION


class Confinement:
    """Where target files may lie: under a root of system.ini [sync] roots, never inside the data
    folder. Checked on the real path, so a symlink cannot lead a write elsewhere."""

    def __init__(self, roots: Sequence[str], data_root: Path) -> None:
        self.roots = [os.path.realpath(root).rstrip(os.sep) for root in roots if root]
        self.data = os.path.realpath(data_root)
        self.data_root = data_root
        self.shown = ", ".join(root for root in roots if root) or "none set"

    def problem(self, real: str) -> str | None:
        """What is wrong with a target whose real path is `real`, or None."""
        if real == self.data or real.startswith(self.data + os.sep):
            return f"lies inside the data folder {self.data_root}, which apphub owns"
        if not any(real == root or real.startswith(root + os.sep) for root in self.roots):
            return f"is not under a root of system.ini [sync] roots ({self.shown})"
        return None


class Manifest(Spec):
    templates: str = "templates"
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    # set by load_manifest; the planner checks every target against it again at each plan
    _confinement: Confinement | None = PrivateAttr(default=None)

    @property
    def confinement(self) -> Confinement | None:
        return self._confinement

    @field_validator("services")
    @classmethod
    def _names(cls, services: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        for name in services:
            if not SERVICE_NAME.match(name):
                raise ValueError(f"service name {name!r} is not allowed (letters, digits, '_', '.', '-')")
        return services

    @model_validator(mode="after")
    def _graph(self) -> Manifest:
        for name, service in self.services.items():
            for dependency in service.depends_on:
                if dependency not in self.services:
                    raise ValueError(f"service {name}: depends_on names {dependency!r}, which is not a service")
        owners: dict[str, str] = {}
        for name, service in self.services.items():
            for path in [file.path for file in service.files] + service.env_paths():
                if path in owners:
                    raise ValueError(f"services {owners[path]} and {name} both produce {path}")
                owners[path] = name
            if name == "global" and service.takes_env:
                raise ValueError("a service that takes an environment cannot be named `global` (env.ini's "
                                 "section for every service)")
        dependency_order(self)  # raises on a cycle
        return self


def dependency_order(manifest: Manifest) -> list[list[str]]:
    """Services in waves: each wave depends only on earlier ones, so a wave can reload in parallel."""
    remaining = {name: set(service.depends_on) for name, service in manifest.services.items()}
    waves: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(name for name, needs in remaining.items() if needs <= done)
        if not ready:
            raise ValueError(f"depends_on has a cycle among: {', '.join(sorted(remaining))}")
        waves.append(ready)
        done.update(ready)
        for name in ready:
            del remaining[name]
    return waves


def load_manifest(path: Path, roots: Sequence[str], data_root: Path) -> Manifest:
    """Read and check `services.yaml`; a missing file is an empty manifest."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: is not valid YAML: {exc}") from exc
    if document is None:
        return Manifest()
    if not isinstance(document, dict):
        raise ManifestError(f"{path}: the top level must be a mapping with `services`")
    try:
        manifest = Manifest.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(_describe(path, document, exc)) from exc
    confinement = Confinement(roots, data_root)
    problems = []
    for name, service in manifest.services.items():
        for number, file in enumerate(service.files, start=1):
            problem = confinement.problem(resolve(file.path))  # a symlink must not lead outside
            if problem is not None:
                problems.append(f"service {name}, file {number} ({file.path}): path: {problem}")
        for env_path in service.env_paths():
            problem = confinement.problem(resolve(env_path))
            if problem is not None:
                problems.append(f"service {name}, {env_path}: path: {problem}")
    if problems:
        raise ManifestError(f"{path}: invalid manifest:\n" + "\n".join(f"  {problem}" for problem in problems))
    manifest._confinement = confinement
    return manifest


def _describe(path: Path, document: dict[str, Any], exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = list(error["loc"])
        where = []
        if location[:1] == ["services"] and len(location) > 1:
            where.append(f"service {location[1]}")
            rest = location[2:]
            if rest[:1] == ["files"] and len(rest) > 1 and isinstance(rest[1], int):
                files = (document.get("services") or {}).get(location[1], {}).get("files") or []
                target = files[rest[1]].get("path", "?") if rest[1] < len(files) and isinstance(files[rest[1]], dict) \
                    else "?"
                where.append(f"file {rest[1] + 1} ({target})")
                rest = rest[2:]
            field = ".".join(str(part) for part in rest)
        else:
            field = ".".join(str(part) for part in location)
        message = str(error["msg"]).removeprefix("Value error, ")
        prefix = ", ".join(where)
        problems.append(f"  {prefix + ': ' if prefix else ''}{field or '(service)'}: {message}")
    return f"{path}: invalid manifest:\n" + "\n".join(problems)
