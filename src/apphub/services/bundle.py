"""What a service's container fetches at start (init-config.sh): its rendered files and its environment.

The files are what the sync engine would write now (the same planner, so a merge file is merged
into what its target holds here), placed at each file's `container_path`; the environment is the
one apphub gives the service (env.ini's global and service scopes, then the manifest's mapped
variables). Secrets are in plaintext: only the service's own key, or an admin, may fetch this.

As a tar archive (what busybox can unpack without jq or base64): `files/<path inside the container>`
with each file's mode, and `env`, a shell file of `export NAME='value'` lines.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from apphub.core import Core
from apphub.envvars.resolve import service_env
from apphub.errors import NotFound, RenderError
from apphub.sync.manifest import Manifest, load_manifest
from apphub.sync.plan import Planner
from apphub.sync.settings import SyncSettings

SECRET_FILE_MODE = 0o600
PLAIN_FILE_MODE = 0o644


@dataclass(frozen=True)
class BundleFile:
    path: str  # inside the container
    mode: int
    content: bytes


@dataclass(frozen=True)
class Bundle:
    service: str
    version: str
    env_version: str
    files: list[BundleFile]
    env: dict[str, str]
    # What it shows in plaintext, for the audit log: config.ini's secret keys and env.ini's secret
    # variables (scope, name) that the files and the environment hold.
    config_secrets: list[tuple[str, str]]
    env_secrets: list[tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "version": self.version, "env_version": self.env_version,
            "files": [{"path": file.path, "mode": f"{file.mode:04o}",
                       "content": file.content.decode("utf-8", "replace")} for file in self.files],
            "env": self.env,
        }

    def to_tar(self) -> bytes:
        buffer = io.BytesIO()
        now = time.time()
        # GNU format: a path over ustar's 100 bytes is a long-name member, which busybox tar reads too.
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
            for file in self.files:
                _add(archive, "files/" + file.path.lstrip("/"), file.content, file.mode, now)
            _add(archive, "env", env_script(self.env).encode("utf-8"), SECRET_FILE_MODE, now)
        return buffer.getvalue()


def env_script(env: dict[str, str]) -> str:
    """`export NAME='value'` lines a POSIX shell sources (a `'` is written `'\\''`)."""
    return "".join(f"export {name}='" + value.replace("'", "'\\''") + "'\n" for name, value in env.items())


def build_bundle(core: Core, service: str) -> Bundle:
    """The files and environment of one manifest service, as apphub renders them now."""
    settings = SyncSettings.from_system(core.system.snapshot())
    manifest = load_manifest(core.data.root / "services.yaml", settings.roots, core.data.root)
    spec = manifest.services.get(service)
    if spec is None:
        raise NotFound(f"no service named {service!r} in the manifest (services.yaml)")
    # A hand edit that does not parse leaves the last version that did in force, as the sync does.
    config = core.config.last_good() or core.config.snapshot()
    env = core.env.store.last_good() or core.env.snapshot()
    plan = _planner(manifest, core.data.root).plan(config, services=[service], env=env)
    if service in plan.failed:
        raise RenderError(plan.failed[service])
    files = []
    for file in plan.services[service].files:
        mode = int(file.spec.file_mode, 8) if file.spec.file_mode else \
            SECRET_FILE_MODE if file.holds_secret else PLAIN_FILE_MODE
        files.append(BundleFile(file.spec.container_path or file.spec.path, mode, file.after))
    variables = service_env(service, spec, config, env, os.environ)
    config_secrets = set(config.secret_keys())
    read = set(plan.services[service].reads) | {key for variable in variables.values() for key in variable.keys}
    env_secrets = {(variable.source.removeprefix("env.ini [").rstrip("]"), variable.name)
                   for variable in variables.values() if variable.secret and variable.kind == "independent"}
    return Bundle(service, config.version, env.version, files,
                  {name: variable.value for name, variable in variables.items()},
                  sorted(read & config_secrets), sorted(env_secrets))


def file_as_rendered(core: Core, file_name: str) -> tuple[bool | None, str]:
    """Whether every manifest file named `file_name` (cockpit.conf) holds what apphub renders now:
    None when the manifest renders none."""
    settings = SyncSettings.from_system(core.system.snapshot())
    manifest = load_manifest(core.data.root / "services.yaml", settings.roots, core.data.root)
    services = [name for name, spec in manifest.services.items()
                if any(PurePosixPath(file.path).name == file_name for file in spec.files)]
    if not services:
        return None, f"no service of the manifest renders a {file_name}"
    plan = _planner(manifest, core.data.root).plan(core.config.snapshot(), services=services, env=core.env.snapshot())
    if plan.failed:
        return False, "; ".join(plan.failed.values())
    files = [file for name in services for file in plan.services[name].files
             if PurePosixPath(file.spec.path).name == file_name]
    stale = [file.spec.path for file in files if file.changed]
    if stale:
        return False, (f"{', '.join(stale)} does not hold what apphub renders: the sync has not applied it "
                       "(GET /api/v1/sync/status says why)")
    return True, f"{', '.join(file.spec.path for file in files)} holds what apphub renders"


def _planner(manifest: Manifest, root: Path) -> Planner:
    # No container engine: a container's current environment is the sync's business, not the bundle's.
    return Planner(manifest, root / manifest.templates, os.environ)


def _add(archive: tarfile.TarFile, name: str, content: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(content), mode, int(mtime)
    archive.addfile(info, io.BytesIO(content))
