"""Connection tests of what apphub drives besides the products: the container engine and supervisord,
and each manifest service's own health probe, looked at once."""

from __future__ import annotations

from collections.abc import Iterable

from apphub.errors import ApphubError, BackendUnavailable
from apphub.reload.docker import ContainerEngine
from apphub.reload.health import PROBE_KINDS, HealthChecker, HealthSpec
from apphub.reload.supervisor import SupervisorClient
from apphub.services.base import Check, CheckTimer
from apphub.services.http import mask

CHECK_TIMEOUT = 5.0


def check_engine(url: str) -> Check:
    timer = CheckTimer("docker", "engine")
    try:
        info = ContainerEngine(url, timeout=CHECK_TIMEOUT).version()
    except ApphubError as exc:
        return timer.result("down", reason=str(exc), url=url)
    names = [str(part.get("Name")) for part in info.get("Components") or [] if isinstance(part, dict)]
    engine = "Podman" if any("podman" in name.lower() for name in names) else "Docker"
    return timer.result("healthy", version=f"{engine} {info.get('Version', '?')} (API {info.get('ApiVersion', '?')})",
                        url=url)


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

