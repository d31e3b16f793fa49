"""Who holds a host port now: a process listening on it, or a container publishing it.

Two sources, asked together in one scan: the host's sockets (psutil: TCP sockets in LISTEN, UDP
sockets bound and not connected, with their processes) and a Docker-compatible engine's running
containers and their published ports. Nothing here knows a setting or a service: the port rule
(rules/ports.py) asks "who holds port P", owners.py says whose they are.

- A published port has a listener on the host that is the engine's, not the container's: conmon
  holds it open on rootful Podman, rootlessport on rootless Podman, docker-proxy on Docker. Such a
  process is not reported beside its container; nor when the engine cannot be asked (it is some
  container's, and which one cannot be told).
- Only processes of this host's network namespace are seen, and, without root, other users'
  sockets come without their pid (psutil reads /proc/PID/fd, which only their owner and root may).
- Cost, measured on a host of ~130 processes and ~400 sockets: one scan 11-17 ms, nearly all of
  it psutil's walk of /proc (it grows with the processes' open files), 3-5 ms more for Podman's
  container list. An engine's first call asks its API version (ContainerEngine), which Podman
  4.3 answers in ~0.45 s: once per engine. A scan is kept `ttl` seconds, so a burst of writes
  scans once (a check then costs ~0.3 ms).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from apphub.errors import BackendUnavailable, ReloadError
from apphub.reload.docker import ContainerEngine

logger = logging.getLogger("apphub.rules.ports")

# The engines' own listeners for a container's published port (see the module docstring).
ENGINE_PROXIES = frozenset({"conmon", "rootlessport", "rootlessport-child", "docker-proxy", "slirp4netns", "pasta",
                            "pasta.avx2"})
SCAN_TTL_S = 1.0
ENGINE_TIMEOUT_S = 1.0
# An engine that failed is not asked again for this long: a hung one would cost every write its timeout.
ENGINE_RETRY_S = 10.0


@dataclass(frozen=True)
class ContainerHolder:
    """A running container that publishes the port on the host."""

    container: str
    binding: str  # as `docker ps` shows it: 0.0.0.0:3000->3000/tcp

    def __str__(self) -> str:
        return f"{self.without_address()} ({self.binding})"

    def without_address(self) -> str:
        """Who, not where: for a port that must not be shown (made with a secret)."""
        return f"published by container {self.container}"


@dataclass(frozen=True)
class ProcessHolder:
    """A process with a socket on the port: listening (TCP) or bound (UDP)."""

    pid: int | None  # None: a socket of another user's process, seen without root
    name: str | None
    address: str  # 127.0.0.1:8080, [::]:8080
    protocol: Literal["tcp", "udp"]
    ancestors: tuple[int, ...] = ()  # parent, grandparent, ... up to pid 1

    def __str__(self) -> str:
        return f"{self.without_address()} at {self.address}"

    def without_address(self) -> str:
        """Who, not where: for a port that must not be shown (made with a secret)."""
        verb = "listened on" if self.protocol == "tcp" else "bound (udp)"
        if self.pid is None:
            return f"{verb} by a process apphub may not look at (another user's; apphub is not root)"
        return f"{verb} by {self.name or 'a process that has exited since'} (pid {self.pid})"

    @property
    def is_engine_proxy(self) -> bool:
        return self.name in ENGINE_PROXIES


Holder = ContainerHolder | ProcessHolder


@dataclass(frozen=True)
class PortScan:
    """One look at who holds which host port, and the sources that could not be asked."""

    by_port: Mapping[int, tuple[Holder, ...]] = field(default_factory=dict)
    unreachable: tuple[str, ...] = ()  # one sentence per source not asked, saying why

    def holders(self, port: int) -> tuple[Holder, ...]:
        return self.by_port.get(port, ())


def _no_engine_here(engine: ContainerEngine) -> bool:
    """The engine's unix socket does not exist: no engine runs on this host (Docker is not
    installed), so no container publishes a port, and there is nothing to warn of."""
    return engine.url.startswith("unix://") and not os.path.exists(engine.url.removeprefix("unix://"))


class HostPorts:
    """Scans this host's sockets and `engine`'s containers (None: no engine); the scan is kept
    `ttl` seconds. Safe to share between threads; never raises for what a source does."""

    def __init__(self, engine: ContainerEngine | None = None, *, ttl: float = SCAN_TTL_S,
                 engine_timeout: float = ENGINE_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.ttl = ttl
        self.engine_timeout = engine_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._scan: PortScan | None = None
        self._scanned_at = 0.0
        self._engine_failure: str | None = None
        self._engine_failed_at = 0.0

    def scan(self) -> PortScan:
        """Who holds each port now (at most `ttl` seconds old)."""
        with self._lock:
            now = self._clock()
            if self._scan is None or now - self._scanned_at >= self.ttl:
                self._scan = self._scan_now(now)
                self._scanned_at = self._clock()
            return self._scan

    def _scan_now(self, now: float) -> PortScan:
        unreachable: list[str] = []
        published: dict[int, list[ContainerHolder]] = {}
        engine_asked = self.engine is None or _no_engine_here(self.engine)
        if not engine_asked and self.engine is not None:
            try:
                published = self._published(self.engine, now)
                engine_asked = True
            except (BackendUnavailable, ReloadError) as exc:
                unreachable.append(f"the container engine could not be asked which ports its containers publish: "
                                   f"{exc}")
        try:
            listening = _listening()
        except (psutil.Error, OSError) as exc:
            listening = {}
            unreachable.append(f"the host's listening sockets could not be listed: {exc}")
        by_port: dict[int, tuple[Holder, ...]] = {}
        for port in published.keys() | listening.keys():
            containers = published.get(port, [])
            # The engine's own listener stands for a container: shown as that container, or not
            # at all when the engine could not say which one it is.
            processes = [holder for holder in listening.get(port, [])
                         if not (holder.is_engine_proxy and (containers or not engine_asked))]
            if containers or processes:
                by_port[port] = (*containers, *processes)
        return PortScan(by_port, tuple(unreachable))

    def _published(self, engine: ContainerEngine, now: float) -> dict[int, list[ContainerHolder]]:
        if self._engine_failure is not None and now - self._engine_failed_at < ENGINE_RETRY_S:
            raise BackendUnavailable(self._engine_failure)
        try:
            with engine.client("the list of running containers", timeout=self.engine_timeout) as api:
                listed: list[dict[str, Any]] = api.containers()
        except (BackendUnavailable, ReloadError) as exc:
            self._engine_failure, self._engine_failed_at = str(exc), now
            logger.info("port holders: %s (not asked again for %g s)", exc, ENGINE_RETRY_S)
            raise
        self._engine_failure = None
        return published_ports(listed)


def published_ports(containers: Iterable[Mapping[str, Any]]) -> dict[int, list[ContainerHolder]]:
    """Host port -> the containers publishing it, from the engine's `GET /containers/json`."""
    found: dict[int, list[ContainerHolder]] = {}
    for container in containers:
        names = container.get("Names") or [str(container.get("Id", ""))[:12]]
        name = str(names[0]).lstrip("/")
        for binding in container.get("Ports") or []:
            public = binding.get("PublicPort")
            if not isinstance(public, int) or public <= 0:
                continue  # exposed, not published
            holders = found.setdefault(public, [])
            if any(holder.container == name for holder in holders):
                continue  # the same port on IPv4 and IPv6
            address = str(binding.get("IP") or "0.0.0.0")
            shown = f"[{address}]" if ":" in address else address
            holders.append(ContainerHolder(name, f"{shown}:{public}->{binding.get('PrivatePort')}/"
                                                 f"{binding.get('Type') or 'tcp'}"))
    return found


def _listening() -> dict[int, list[ProcessHolder]]:
    """Port -> the processes listening on it (TCP) or bound to it (UDP, not connected)."""
    found: dict[int, list[ProcessHolder]] = {}
    seen: set[tuple[int, int | None, str]] = set()
    processes: dict[int, tuple[str | None, tuple[int, ...]]] = {}
    for connection in psutil.net_connections(kind="inet"):
        if not connection.laddr:
            continue
        if connection.type == socket.SOCK_STREAM:
            if connection.status != psutil.CONN_LISTEN:
                continue
            protocol: Literal["tcp", "udp"] = "tcp"
        elif connection.raddr:
            continue  # a connected UDP socket: a client's, on whatever port it was given
        else:
            protocol = "udp"
        ip, port = connection.laddr.ip, connection.laddr.port
        if port == 0 or (port, connection.pid, protocol) in seen:
            continue  # the same process on IPv4 and IPv6
        seen.add((port, connection.pid, protocol))
        name: str | None = None
        ancestors: tuple[int, ...] = ()
        if connection.pid is not None:
            if connection.pid not in processes:
                processes[connection.pid] = _process(connection.pid)
            name, ancestors = processes[connection.pid]
        address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        found.setdefault(port, []).append(ProcessHolder(connection.pid, name, address, protocol, ancestors))
    return found


def _process(pid: int) -> tuple[str | None, tuple[int, ...]]:
    """A process's name and its ancestors' pids; (None, ()) when it is gone or hidden."""
    try:
        process = psutil.Process(pid)
        return process.name(), tuple(parent.pid for parent in process.parents())
    except psutil.Error:
        return None, ()
