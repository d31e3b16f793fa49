"""Which services a key configures, and which processes and containers are theirs: who may hold
the key's port without a conflict (rules/ports.py). The only part of the rules that knows the
manifest, `services.yaml`.

A service reads a key when rendering it reads the key (the planner's own record: its files, its
templates, its health checks) or its `env:` names it. Its processes are what the manifest names
for it: supervisord programs (their pid from supervisord, the program's descendants included),
containers (by name; a host-network container's processes by its main pid), pidfiles of a
`signal` reload. A service that names none of them (an `exec` reload of a systemd unit) has
nothing apphub could recognise, so the rule cannot tell its process from another.

Where the sync engine reaches supervisord and the engine, system.ini [sync], is read as it reads
it; these look-ups have a 1 s timeout, and their answers are kept for a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from apphub.errors import ApphubError, BackendUnavailable, ManifestError, ReloadError, RenderError
from apphub.reload.docker import ContainerEngine, ContainerExecAction, ContainerRestartAction, ContainerSignalAction
from apphub.reload.process import SignalAction
from apphub.reload.supervisor import SupervisorClient, SupervisorRestartAction, SupervisorSignalAction
from apphub.rules.base import CONFIG, KeyRef
from apphub.rules.holders import ContainerHolder, Holder, HostPorts
from apphub.store.snapshot import Snapshot
from apphub.sync.manifest import Manifest, ServiceSpec, load_manifest
from apphub.sync.plan import Planner
from apphub.sync.settings import SyncSettings
from apphub.sync.values import Key, Values

logger = logging.getLogger("apphub.rules.ports")

LOOKUP_TIMEOUT_S = 1.0
PIDS_TTL_S = 1.0
APPHUB = "apphub"  # the service name of apphub itself, for the keys it listens on


@dataclass(frozen=True)
class KeyOwners:
    """The services that read a key, and what of theirs may hold its port."""

    services: tuple[str, ...] = ()
    containers: frozenset[str] = frozenset()
    pids: frozenset[int] = frozenset()  # their processes; a descendant of one is theirs too
    # Whether they name any program, container or pidfile: if not, no holder can be told to be theirs.
    identifiable: bool = False
    unknown: tuple[str, ...] = ()  # why some of their processes could not be looked up

    def owns(self, holder: Holder) -> bool | None:
        """Whether `holder` is theirs; None when that cannot be told (a process whose pid is
        hidden while theirs run, or while some of theirs could not be looked up)."""
        if isinstance(holder, ContainerHolder):
            return holder.container in self.containers
        if holder.pid is not None and (holder.pid in self.pids or not self.pids.isdisjoint(holder.ancestors)):
            return True
        if self.unknown or (holder.pid is None and self.pids):
            return None
        return False


@dataclass(frozen=True)
class ServiceProcesses:
    """What the manifest names of one service's processes."""

    programs: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    pidfiles: tuple[str, ...] = ()


class SyncConnections:
    """system.ini [sync] as the sync engine reads it: the roots the manifest is checked against, and
    supervisord and the container engine, here with a 1 s timeout. Read again when system.ini's
    version changes, a client built again when its URL does; `system` is how to read the file (the
    store's `last_good`)."""

    def __init__(self, system: Callable[[], Snapshot | None], timeout: float = LOOKUP_TIMEOUT_S) -> None:
        self._system = system
        self.timeout = timeout
        self._lock = threading.Lock()
        self._version: str | None = None
        self._settings = SyncSettings((), "", "", 0.05, 60)
        self._host_ports = HostPorts(None)
        self._supervisor: SupervisorClient | None = None

    def settings(self) -> SyncSettings:
        self._refresh()
        return self._settings

    def host_ports(self) -> HostPorts:
        self._refresh()
        return self._host_ports

    def engine(self) -> ContainerEngine | None:
        return self.host_ports().engine

    def supervisor(self) -> SupervisorClient | None:
        self._refresh()
        return self._supervisor

    def _refresh(self) -> None:
        system = self._system()
        with self._lock:
            if system is None or system.version == self._version:
                return
            self._version = system.version
            before, self._settings = self._settings, SyncSettings.from_system(system)
            if self._settings.docker_url != before.docker_url:
                # A new engine asks the API version first (Podman: ~0.4 s): only when the URL changes.
                url = self._settings.docker_url
                self._host_ports = HostPorts(ContainerEngine(url, self.timeout) if url else None,
                                             engine_timeout=self.timeout)
            if self._settings.supervisor_url == before.supervisor_url:
                return
            self._supervisor = None
            if self._settings.supervisor_url:
                try:
                    self._supervisor = SupervisorClient(self._settings.supervisor_url, self.timeout)
                except ValueError as exc:  # the schema's own check reports the URL
                    logger.info("port owners: supervisord is not asked: %s", exc)


class ManifestOwners:
    """The owners of a key by the data folder's manifest; callable as the port rule's `owners`.

    `config`: how to read config.ini now (the store's `last_good`), which the manifest renders to
    learn what each service reads. `apphub_keys`: the keys apphub itself listens on (its own
    process and its children hold those)."""

    def __init__(self, data_root: Path, connections: SyncConnections, config: Callable[[], Snapshot | None], *,
                 apphub_keys: Collection[KeyRef] = (), environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.data_root = data_root
        self.connections = connections
        self._config = config
        self.apphub_keys = frozenset(apphub_keys)
        self._environ = environ if environ is not None else os.environ
        self._clock = clock
        self._lock = threading.Lock()
        self._manifest = Manifest()
        self._manifest_key: tuple[object, ...] | None = None
        self._reads_version: str | None = None  # config.ini's version the reads were rendered from
        self._reads: dict[str, frozenset[Key]] = {}
        self._pids: dict[tuple[str, str], tuple[float, int | None, str | None]] = {}

    def __call__(self, ref: KeyRef) -> KeyOwners:
        services: list[str] = []
        named: list[ServiceProcesses] = []
        pids: set[int] = set()
        identifiable = False
        if ref.file == CONFIG:
            manifest, reads, config = self._current()
            for name, read in reads.items():
                if (ref.section, ref.key) in read:
                    services.append(name)
                    named.append(named_processes(manifest.services[name], config))
        if ref in self.apphub_keys:
            services.append(APPHUB)
            pids.add(os.getpid())
            identifiable = True
        unknown: list[str] = []
        for kind, name in _lookups(named):
            pid, problem = self._pid(kind, name)
            if pid:
                pids.add(pid)
            if problem is not None and problem not in unknown:
                unknown.append(problem)
        containers = frozenset(container for each in named for container in each.containers)
        identifiable = identifiable or any(each.programs or each.containers or each.pidfiles for each in named)
        return KeyOwners(tuple(services), containers, frozenset(pids), identifiable, tuple(unknown))

    # -- the manifest and what each service reads -------------------------------------------------

    def _current(self) -> tuple[Manifest, dict[str, frozenset[Key]], Snapshot | None]:
        settings = self.connections.settings()
        config = self._config()
        with self._lock:
            path = self.data_root / "services.yaml"
            try:
                status = path.stat()
                key: tuple[object, ...] = (status.st_ino, status.st_size, status.st_mtime_ns, settings.roots)
            except OSError:
                key = (None, settings.roots)
            if key != self._manifest_key:
                self._manifest_key = key
                try:
                    self._manifest = load_manifest(path, settings.roots, self.data_root)
                except ManifestError as exc:  # the sync engine reports it; the last good one stays
                    logger.info("port owners: the manifest is refused, the last good one is used: %s", exc)
                self._reads_version = None
            if config is None:
                return self._manifest, {}, None
            if config.version != self._reads_version:
                self._reads = service_reads(self._manifest, self.data_root, config, self._environ)
                self._reads_version = config.version
            return self._manifest, self._reads, config

    # -- their processes ---------------------------------------------------------------------------

    def _pid(self, kind: str, name: str) -> tuple[int | None, str | None]:
        """A program's, container's or pidfile's pid now (None: not running), or why it is not known."""
        now = self._clock()
        cached = self._pids.get((kind, name))
        if cached is not None and now - cached[0] < PIDS_TTL_S:
            return cached[1], cached[2]
        pid: int | None = None
        problem: str | None = None
        try:
            if kind == "program":
                pid = self._program_pid(name)
            elif kind == "container":
                pid = self._container_pid(name)
            else:
                pid = _pidfile_pid(name)
        except BackendUnavailable as exc:
            problem = str(exc)
        self._pids[(kind, name)] = (now, pid, problem)
        return pid, problem

    def _program_pid(self, program: str) -> int | None:
        client = self.connections.supervisor()
        if client is None:
            raise BackendUnavailable(f"program {program}: no supervisord is configured (system.ini [sync] "
                                     "supervisor_url)")
        try:
            info = client.state(program)
        except ReloadError:  # not a program of this supervisord
            return None
        pid = info.get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def _container_pid(self, container: str) -> int | None:
        engine = self.connections.engine()
        if engine is None:
            return None  # a container is known by its name; its processes are only a host-network extra
        try:
            with engine.client(f"inspect of container {container}", timeout=engine.timeout, container=container) as api:
                pid = (api.inspect_container(container).get("State") or {}).get("Pid")
        except ReloadError:
            return None
        return pid if isinstance(pid, int) and pid > 0 else None


def service_reads(manifest: Manifest, data_root: Path, config: Snapshot,
                  environ: Mapping[str, str]) -> dict[str, frozenset[Key]]:
    """The config.ini keys each service reads: what rendering it reads, and what its `env:` names.
    A service that cannot be rendered now reads nothing here (its owners are not known)."""
    planner = Planner(manifest, data_root / manifest.templates, environ)
    try:
        planner.plan(config)
    except ApphubError as exc:  # a render's own problems are the plan's `failed`; anything else, none known
        logger.info("port owners: the manifest could not be rendered: %s", exc)
    reads: dict[str, frozenset[Key]] = {}
    for name, service in manifest.services.items():
        found = set(planner.reads.get(name, frozenset()))
        for text in service.env.values():
            values = Values(config, environ)
            with contextlib.suppress(RenderError):
                values.substitute(text)
            found |= values.read
        reads[name] = frozenset(found)
    return reads


def named_processes(service: ServiceSpec, config: Snapshot | None) -> ServiceProcesses:
    """The programs, containers and pidfiles the manifest names for `service`: its reload actions,
    its injected environment and its health checks (${section.key} filled in from `config`)."""
    programs: list[str] = []
    containers: list[str] = []
    pidfiles: list[str] = []
    for action in service.reload.values():
        if isinstance(action, SupervisorRestartAction | SupervisorSignalAction):
            programs.append(action.program)
        elif isinstance(action, ContainerRestartAction | ContainerSignalAction | ContainerExecAction):
            containers.append(action.container)
        elif isinstance(action, SignalAction):
            pidfiles.append(action.pidfile)
    if service.inject is not None:
        programs += [service.inject.program] if service.inject.program else []
        containers += [service.inject.container] if service.inject.container else []
    if service.health is not None:
        for text, into in ((service.health.supervisor, programs), (service.health.container, containers)):
            filled = _filled(text, config)
            if filled:
                into.append(filled)
    return ServiceProcesses(tuple(dict.fromkeys(programs)), tuple(dict.fromkeys(containers)),
                            tuple(dict.fromkeys(pidfiles)))


def _filled(text: str | None, config: Snapshot | None) -> str | None:
    if text is None or "${" not in text:
        return text
    if config is None:
        return None
    try:
        return str(Values(config, environ={}).substitute(text))
    except RenderError:
        return None


def _lookups(named: Iterable[ServiceProcesses]) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    for each in named:
        found.update(dict.fromkeys(("program", program) for program in each.programs))
        found.update(dict.fromkeys(("container", container) for container in each.containers))
        found.update(dict.fromkeys(("pidfile", pidfile) for pidfile in each.pidfiles))
    return list(found)


def _pidfile_pid(path: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None
