"""Host-side health probes: `http` (2xx), `tcp` (accepts a connection), `command` (exits 0).

Each `check` looks once and is bounded by a per-try timeout (never more than the spec's whole
timeout), so one hung try cannot eat the health gate; the gate (`HealthChecker`) retries.
"""

from __future__ import annotations

import socket

import httpx

from apphub.reload.health import HealthSpec
from apphub.reload.httphook import describe_http_error, describe_status, http_client, shown_url
from apphub.reload.process import CommandNotRunnable, run_command

DEFAULT_TRY_TIMEOUT = 5.0


def _try_timeout(per_try: float, spec: HealthSpec) -> float:
    return min(per_try, spec.timeout)


class HttpProbe:
    """Healthy when a GET of `spec.http` answers 2xx within the per-try timeout."""

    def __init__(self, client: httpx.Client | None = None, try_timeout: float = DEFAULT_TRY_TIMEOUT) -> None:
        self._client = client
        self._try_timeout = try_timeout

    def check(self, service: str, spec: HealthSpec) -> str | None:
        if spec.http is None:
            return None
        timeout = _try_timeout(self._try_timeout, spec)
        where = f"GET {shown_url(spec.http)}"
        with http_client(self._client) as http:
            try:
                response = http.get(spec.http, timeout=timeout)
            except httpx.InvalidURL as exc:
                return f"{where}: the URL is not valid: {exc}"
            except httpx.HTTPError as exc:
                return f"{where}: {describe_http_error(exc, timeout)}"
        if response.is_success:
            return None
        return f"{where} answered {describe_status(response)}"


class TcpProbe:
    """Healthy when `spec.tcp` (host:port) accepts a connection within the per-try timeout."""

    def __init__(self, try_timeout: float = DEFAULT_TRY_TIMEOUT) -> None:
        self._try_timeout = try_timeout

    def check(self, service: str, spec: HealthSpec) -> str | None:
        if spec.tcp is None:
            return None
        host, _, port = spec.tcp.rpartition(":")
        host = host.strip("[]")  # [::1]:80
        timeout = _try_timeout(self._try_timeout, spec)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return None
        except TimeoutError:
            return f"tcp {spec.tcp}: no connection within {timeout:g} s"
        except ConnectionRefusedError:
            return f"tcp {spec.tcp}: connection refused (is the service listening?)"
        except OSError as exc:
            return f"tcp {spec.tcp}: cannot connect: {exc}"


class CommandProbe:
    """Healthy when `spec.command` (an argv, no shell) exits 0 within the per-try timeout."""

    def __init__(self, try_timeout: float = DEFAULT_TRY_TIMEOUT) -> None:
        self._try_timeout = try_timeout

    def check(self, service: str, spec: HealthSpec) -> str | None:
        if spec.command is None:
            return None
        timeout = _try_timeout(self._try_timeout, spec)
        shown = " ".join(spec.command)
        try:
            result = run_command(spec.command, timeout)
        except CommandNotRunnable as exc:
            return f"command `{shown}`: {exc}"
        if result.timed_out:
            return f"command `{shown}` did not finish within {timeout:g} s and was killed"
        if result.returncode == 0:
            return None
        tail = result.tail()
        return f"command `{shown}` failed with {result.describe_exit()}" + (f": {tail}" if tail else "")
