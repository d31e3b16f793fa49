"""Connection tests of what apphub drives besides the products: the container engine and supervisord,
and each manifest service's own health probe, looked at once."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from apphub.errors import ApphubError, BackendUnavailable
from apphub.reload.docker import engine_name
from apphub.reload.health import PROBE_KINDS, HealthChecker, HealthSpec
from apphub.reload.supervisor import SupervisorClient, UnixHTTPConnection
from apphub.services.base import Check, CheckTimer
from apphub.services.http import mask

CHECK_TIMEOUT = 5.0


def check_engine(url: str) -> Check:
    """`GET /version` of the Docker-compatible engine, on a connection of its own that is closed
    whatever happens (the docker SDK's, and httpcore's, leave a unix socket open when its connect fails)."""
    timer = CheckTimer("docker", "engine")
    try:
        info = _engine_version(url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return timer.result("down", reason=f"the container engine at {url} cannot be reached: "
                                           f"{type(exc).__name__}: {exc}"[:300], url=url)
    engine = "Podman" if "podman" in engine_name(info).lower() else "Docker"
    return timer.result("healthy", version=f"{engine} {info.get('Version', '?')} (API {info.get('ApiVersion', '?')})",
                        url=url)


def _engine_version(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "unix":
        connection = UnixHTTPConnection(parts.path, CHECK_TIMEOUT)
    elif parts.scheme in ("tcp", "http") and parts.hostname:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 2375, timeout=CHECK_TIMEOUT)
    else:
        raise ValueError(f"the engine URL {url!r} is not unix:// or tcp://")
    try:
        connection.request("GET", "/version")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"GET /version answered {response.status} {response.reason}")
    found: dict[str, Any] = json.loads(body)
    return found


def check_supervisor(url: str) -> Check:
    timer = CheckTimer("supervisord", "engine")
    try:
        client = SupervisorClient(url, timeout=CHECK_TIMEOUT)
        version, state = client.daemon()
    except (ApphubError, ValueError) as exc:
        return timer.result("down", reason=str(exc), url=SupervisorClient._shown(url))
    if state != "RUNNING":
        return timer.result("unhealthy", version=version, reason=f"supervisord is {state}", url=client.url)
    return timer.result("healthy", version=version, url=client.url)


def check_service(name: str, spec: HealthSpec | None, checker: HealthChecker,
                  masks: Iterable[str] = ()) -> Check:
    """One look at a manifest service's `health:` probes (no waiting, unlike the sync's gate)."""
    timer = CheckTimer(name, "service")
    if spec is None:
        return timer.result("unknown", reason="the manifest gives it no health check")
    reasons = []
    for kind in PROBE_KINDS:
        if getattr(spec, kind) is None:
            continue
        try:
            reason = checker.check_once(name, spec, kind)
        except BackendUnavailable as exc:
            reason = str(exc)
        if reason is not None:
            reasons.append(f"{kind}: {mask(reason, masks)}")
    if reasons:
        return timer.result("down", reason="; ".join(reasons)[:500])
    return timer.result("healthy")

