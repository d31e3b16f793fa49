"""What every product module gets and gives: its settings and tools in, steps and a check out.

A product module knows one product's API and nothing of where its settings are stored or how
the steps are run: it reads `ProductContext.settings` (its config.ini section, plaintext, schema
defaults filled in), keeps what it creates with `ProductContext.save` (stored in config.ini as
secrets, never logged), and talks through `ProductContext.client()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from apphub.audit.log import utc_now
from apphub.errors import ServiceError, ServiceUnreachable
from apphub.services.http import ProductClient
from apphub.services.steps import Step

Health = Literal["healthy", "unhealthy", "down", "unknown"]

class ContainerRunner(Protocol):
    """Runs `command` in `container` as `user`, with `environment` added (how a password reaches a
    command without being in its argv): (exit code, output). `shown` is how messages name it.
    Raises BackendUnavailable when there is no engine to ask, ReloadError when the engine refuses."""

    def __call__(self, container: str, command: list[str], *, user: str, shown: str,
                 environment: Mapping[str, str]) -> tuple[int | None, str]: ...


@dataclass(frozen=True)
class Check:
    """One connection test: reachable, authenticated, which version, and why not when it is not."""

    name: str
    kind: Literal["product", "engine", "service"]
    health: Health
    version: str | None = None
    authenticated: bool | None = None
    reason: str | None = None
    checked_at: str | None = None
    duration_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProductContext:
    """One product's settings and the tools its steps use."""

    section: str
    settings: Mapping[str, Any]
    system: Mapping[str, Any]  # system.ini [services]
    client: Callable[..., ProductClient]  # client(base_url) -> ProductClient
    save: Callable[[str, Mapping[str, str]], None]  # save(file "config"|"system", {section.key: value})
    run_in_container: ContainerRunner | None = None
    cockpit_conf: Callable[[], tuple[bool | None, str]] | None = None

    def text(self, key: str) -> str:
        value = self.settings.get(key)
        return "" if value is None else str(value)


class Product(Protocol):
    """One product apphub initialises and checks."""

    name: str  # its config.ini section
    title: str

    def steps(self) -> list[Step]: ...

    def check(self) -> Check: ...

    def secrets(self) -> list[str]:
        """Every plaintext its messages must never show."""
        ...


def web_root(base_url: str, api_suffix: str) -> str:
    """`http://host:3000` from `http://host:3000/api/v1` (the API root config.ini holds)."""
    base = base_url.rstrip("/")
    return base[: -len(api_suffix)] if base.endswith(api_suffix) else base


class CheckTimer:
    """Times one connection test and words its result."""

    def __init__(self, name: str, kind: Literal["product", "engine", "service"] = "product") -> None:
        self.name, self.kind = name, kind
        self.at = utc_now()
        self._started = time.monotonic()

    def result(self, health: Health, *, version: str | None = None, authenticated: bool | None = None,
               reason: str | None = None, **details: Any) -> Check:
        return Check(self.name, self.kind, health, version, authenticated, reason, self.at,
                     round((time.monotonic() - self._started) * 1000, 1), details)

    def failed(self, error: ServiceError, version: str | None = None) -> Check:
        """Down when it cannot be reached, unhealthy when it answers and refuses."""
        health: Health = "down" if isinstance(error, ServiceUnreachable) else "unhealthy"
        return self.result(health, version=version, reason=str(error))
