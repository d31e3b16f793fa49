"""The sync engine's own settings, from system.ini [sync] (schema defaults where a key is missing)."""

from __future__ import annotations

from dataclasses import dataclass

from apphub.store.snapshot import Snapshot
from apphub.sync.values import Values


@dataclass(frozen=True)
class SyncSettings:
    roots: tuple[str, ...]
    supervisor_url: str
    docker_url: str
    debounce_s: float
    drift_interval_s: float

    @classmethod
    def from_system(cls, system: Snapshot) -> SyncSettings:
        values = Values(system, environ={})

        def get(key: str) -> object:
            return values.get("sync", key)

        roots = get("roots")
        return cls(
            roots=tuple(roots) if isinstance(roots, list) else tuple(str(roots).split(",")) if roots else (),
            supervisor_url=str(get("supervisor_url")),
            docker_url=str(get("docker_url")),
            debounce_s=int(str(get("debounce_ms"))) / 1000,
            drift_interval_s=float(str(get("drift_interval_s"))),
        )
