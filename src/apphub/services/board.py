"""Every service apphub knows, with its health: the products, the engines, the manifest's services.

A name can be both a product and a manifest service (Websoft9's `gitea`): it is one entry, healthy
when both the product's connection test and the manifest's health probe pass. The last result of
each is kept for `GET /api/v1/services`; `check()` looks again now.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from apphub.errors import ApphubError, NotFound
from apphub.reload.build import build_backends
from apphub.reload.health import HealthChecker
from apphub.services.base import Check, CheckTimer
from apphub.services.engines import check_engine, check_service, check_supervisor
from apphub.services.manager import ServiceManager, ServicesSettings
from apphub.store.inistore import IniStore
from apphub.store.snapshot import Snapshot
from apphub.sync.manifest import Manifest, load_manifest
from apphub.sync.plan import resolve_health, secret_texts, spellings
from apphub.sync.settings import SyncSettings
from apphub.sync.values import Values

ENGINES = ("docker", "supervisord")
DEPENDENCY_MAX_AGE = 2.0
_RANK = {"healthy": 0, "unknown": 1, "unhealthy": 2, "down": 3}


@dataclass
class _Inputs:
    """What one round of tests reads, read once for all of its services."""

    settings: ServicesSettings
    sync: SyncSettings
    manifest: Manifest
    config_store: IniStore

    @functools.cached_property
    def config(self) -> Snapshot:
        """config.ini, read when a probe needs it: one that does not parse makes those probes
        `unknown`, not the products' and engines' tests."""
        return self.config_store.snapshot()

    @functools.cached_property
    def masks(self) -> list[str]:
        """Every spelling of every secret, for a probe's reason (decrypted once, when a probe needs it)."""
        return spellings(secret_texts(self.config))

    def names(self) -> list[str]:
        found = list(self.settings.enabled) + list(ENGINES)
        return found + [name for name in self.manifest.services if name not in found]


class ServiceBoard:
    """The latest connection test of every service, and fresh ones on demand."""

    def __init__(self, manager: ServiceManager, manifest_path: Path, data_root: Path) -> None:
        self.manager = manager
        self.manifest_path = manifest_path
        self.data_root = data_root
        self._latest: dict[str, Check] = {}
        self._tested_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._checker: tuple[tuple[str, str], HealthChecker] | None = None

    def names(self) -> list[str]:
        return self._inputs().names()

    def latest(self) -> list[Check]:
        """The last result of each service (tested now when it never was)."""
        inputs = self._inputs()
        names = inputs.names()
        with self._lock:
            missing = [name for name in names if name not in self._latest]
        if missing:
            self._check(missing, inputs)
        with self._lock:
            return [self._latest[name] for name in names if name in self._latest]

    def check(self, name: str) -> Check:
        inputs = self._inputs()
        known = inputs.names()
        if name not in known:
            raise NotFound(f"no service named {name!r}: apphub knows {', '.join(known) or 'none'}")
        return self._check([name], inputs)[0]

    def check_all(self, names: Iterable[str] | None = None, *, max_age: float = 0.0) -> list[Check]:
        """Test `names` (default: every service) now, in parallel; a result younger than `max_age`
        seconds is used as it is."""
        inputs = self._inputs()
        return self._check(inputs.names() if names is None else list(names), inputs, max_age)

    def dependencies(self, service: str) -> tuple[bool, list[Check]]:
        """Whether every service `service` depends on (the manifest's depends_on) is healthy now.
        Every container's init-config.sh asks this about once a second while it waits: a product's
        result younger than DEPENDENCY_MAX_AGE is not logged in again."""
        inputs = self._inputs(strict=True)
        spec = inputs.manifest.services.get(service)
        if spec is None:
            raise NotFound(f"no service named {service!r} in the manifest (services.yaml)")
        checks = self._check(spec.depends_on, inputs, DEPENDENCY_MAX_AGE) if spec.depends_on else []
        return all(check.health == "healthy" for check in checks), checks

    def _check(self, wanted: list[str], inputs: _Inputs, max_age: float = 0.0) -> list[Check]:
        now = time.monotonic()
        with self._lock:
            fresh = {name: self._latest[name] for name in wanted
                     if name in self._latest and now - self._tested_at.get(name, -1e9) < max_age}
        stale = [name for name in wanted if name not in fresh]
        if stale:
            with ThreadPoolExecutor(max_workers=min(len(stale), 16), thread_name_prefix="apphub-check") as pool:
                found = list(pool.map(lambda name: self._check_now(name, inputs), stale))
            with self._lock:
                self._latest.update({check.name: check for check in found})
                self._tested_at.update(dict.fromkeys(stale, now))
            fresh.update({check.name: check for check in found})
        return [fresh[name] for name in wanted]

    def _check_now(self, name: str, inputs: _Inputs) -> Check:
        try:
            checks = self._checks_of(name, inputs)
        except ApphubError as exc:
            return CheckTimer(name, "service").result("unknown", reason=str(exc))
        if len(checks) == 1:
            return checks[0]
        worst = max(checks, key=lambda check: _RANK[check.health])
        reasons = [check.reason for check in checks if check.reason]
        return replace(checks[0], health=worst.health, reason="; ".join(reasons) or None,
                       details={**checks[0].details, "manifest_health": checks[1].health})

    def _checks_of(self, name: str, inputs: _Inputs) -> list[Check]:
        checks = []
        if name in inputs.settings.enabled:
            checks.extend(self.manager.check_products([name]))
        elif name in ENGINES:
            sync = inputs.sync
            return [check_engine(sync.docker_url) if name == "docker" else check_supervisor(sync.supervisor_url)]
        spec = inputs.manifest.services.get(name)
        if spec is not None and (spec.health is not None or not checks):
            health = resolve_health(name, spec.health, Values(inputs.config, os.environ)) \
                if spec.health is not None else None
            checks.append(check_service(name, health, self._health_checker(inputs.sync), inputs.masks))
        if not checks:
            raise NotFound(f"no service named {name!r}")
        return checks

    def _health_checker(self, sync: SyncSettings) -> HealthChecker:
        key = (sync.docker_url, sync.supervisor_url)
        if self._checker is None or self._checker[0] != key:
            self._checker = (key, build_backends(sync).health)
        return self._checker[1]

    def _inputs(self, *, strict: bool = False) -> _Inputs:
        """What a round reads. A broken services.yaml hides no product or engine (an empty manifest),
        unless `strict`: then it is the error."""
        sync = self.manager.sync_settings()
        try:
            manifest = load_manifest(self.manifest_path, sync.roots, self.data_root)
        except ApphubError:
            if strict:
                raise
            manifest = Manifest()
        return _Inputs(self.manager.settings(), sync, manifest, self.manager.core.config)
