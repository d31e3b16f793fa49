"""Every service apphub knows, with its health: the products, the engines, the manifest's services.

A name can be both a product and a manifest service (Websoft9's `gitea`): it is one entry, healthy
when both the product's connection test and the manifest's health probe pass. The last result of
each is kept for `GET /api/v1/services`; `check()` looks again now.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from apphub.errors import ApphubError, NotFound
from apphub.reload.build import build_backends
from apphub.reload.health import HealthChecker
from apphub.services.base import Check, CheckTimer
from apphub.services.engines import check_engine, check_service, check_supervisor
from apphub.services.manager import ServiceManager
from apphub.sync.manifest import Manifest, load_manifest
from apphub.sync.plan import resolve_health, secret_texts, spellings
from apphub.sync.values import Values

ENGINES = ("docker", "supervisord")
DEPENDENCY_MAX_AGE = 2.0
_RANK = {"healthy": 0, "unknown": 1, "unhealthy": 2, "down": 3}


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
        manifest, _ = self._manifest()
        found = list(self.manager.settings().enabled) + list(ENGINES)
        return found + [name for name in manifest.services if name not in found]

    def latest(self) -> list[Check]:
        """The last result of each service (tested now when it never was)."""
        names = self.names()
        with self._lock:
            missing = [name for name in names if name not in self._latest]
        if missing:
            self.check_all(missing)
        with self._lock:
            return [self._latest[name] for name in names if name in self._latest]

    def check(self, name: str) -> Check:
        if name not in self.names():
            raise NotFound(f"no service named {name!r}: apphub knows {', '.join(self.names()) or 'none'}")
        return self.check_all([name])[0]

    def check_all(self, names: Iterable[str] | None = None, *, max_age: float = 0.0) -> list[Check]:
        """Test `names` (default: every service) now, in parallel; a result younger than `max_age`
        seconds is used as it is."""
        wanted = list(self.names() if names is None else names)
        now = time.monotonic()
        with self._lock:
            fresh = {name: self._latest[name] for name in wanted
                     if name in self._latest and now - self._tested_at.get(name, -1e9) < max_age}
        stale = [name for name in wanted if name not in fresh]
        if stale:
            with ThreadPoolExecutor(max_workers=min(len(stale), 16), thread_name_prefix="apphub-check") as pool:
                found = list(pool.map(self._check_now, stale))
            with self._lock:
                self._latest.update({check.name: check for check in found})
                self._tested_at.update(dict.fromkeys(stale, now))
            fresh.update({check.name: check for check in found})
        return [fresh[name] for name in wanted]

    def dependencies(self, service: str) -> tuple[bool, list[Check]]:
        """Whether every service `service` depends on (the manifest's depends_on) is healthy now.
        Every container's init-config.sh asks this about once a second while it waits: a product's
        result younger than DEPENDENCY_MAX_AGE is not logged in again."""
        manifest = load_manifest(self.manifest_path, self.manager.sync_settings().roots, self.data_root)
        spec = manifest.services.get(service)
        if spec is None:
            raise NotFound(f"no service named {service!r} in the manifest (services.yaml)")
        checks = self.check_all(spec.depends_on, max_age=DEPENDENCY_MAX_AGE) if spec.depends_on else []
        return all(check.health == "healthy" for check in checks), checks

    def _check_now(self, name: str) -> Check:
        try:
            checks = self._checks_of(name)
        except ApphubError as exc:
            return CheckTimer(name, "service").result("unknown", reason=str(exc))
        if len(checks) == 1:
            return checks[0]
        worst = max(checks, key=lambda check: _RANK[check.health])
        reasons = [check.reason for check in checks if check.reason]
        return replace(checks[0], health=worst.health, reason="; ".join(reasons) or None,
                       details={**checks[0].details, "manifest_health": checks[1].health})

    def _checks_of(self, name: str) -> list[Check]:
        settings = self.manager.settings()
        checks = []
        if name in settings.enabled:
            checks.extend(self.manager.check_products([name]))
        elif name in ENGINES:
            sync = self.manager.sync_settings()
            return [check_engine(sync.docker_url) if name == "docker" else check_supervisor(sync.supervisor_url)]
        manifest, _ = self._manifest()
        spec = manifest.services.get(name)
        if spec is not None and (spec.health is not None or not checks):
            snapshot = self.manager.core.config.snapshot()
            values = Values(snapshot, os.environ)
            health = resolve_health(name, spec.health, values) if spec.health is not None else None
            checks.append(check_service(name, health, self._health_checker(), spellings(secret_texts(snapshot))))
        if not checks:
            raise NotFound(f"no service named {name!r}")
        return checks

    def _health_checker(self) -> HealthChecker:
        sync = self.manager.sync_settings()
        key = (sync.docker_url, sync.supervisor_url)
        if self._checker is None or self._checker[0] != key:
            self._checker = (key, build_backends(sync).health)
        return self._checker[1]

    def _manifest(self) -> tuple[Manifest, str | None]:
        """The manifest, or an empty one and why (a broken services.yaml hides no product or engine)."""
        try:
            return load_manifest(self.manifest_path, self.manager.sync_settings().roots, self.data_root), None
        except ApphubError as exc:
            return Manifest(), str(exc)
