"""Containers: restart, signal and exec through a Docker-compatible Engine API, and the `container` probe.

Talks to Docker or to Podman's compat socket (`podman system service`) with the `docker` SDK's
low-level `APIClient`. Every call gets its own short-lived client carrying that call's timeout, so
a hung engine fails the reload instead of hanging it, and parallel reloads share no mutable client
state (a client costs well under a millisecond; the socket is local).

Engine differences that matter here, seen on Podman 4.3.1 (compat API 1.41) and documented for
Docker (see shared/reference/service-apis.md §6):
- `POST /containers/{id}/restart` takes only `t` on Podman (no `signal`): a restart always stops
  with SIGTERM, then SIGKILL after `t` seconds. A shell or any PID 1 without a TERM handler ignores
  SIGTERM (the kernel drops unhandled signals to PID 1), so such a restart always lasts the grace.
- Killing a stopped container is 409 on Docker but 500 "container state improper" on Podman; exec
  into a stopped container is 500 "can only create exec sessions on running containers" there.
- `State.Health` is always present on Podman, with `Status: ""` when there is no healthcheck
  (Docker omits it). Podman runs healthchecks from systemd transient timers; without systemd
  (this kind of host) none ever runs, so a container with a healthcheck stays `starting` forever
  unless something runs `podman healthcheck run NAME`. The log of earlier checks survives a
  restart, which is why only checks since `StartedAt` count as "the last check".
- Right after its process exits, Podman reports `Status: "stopped"` (not a Docker status) for a
  moment before `exited`.
- The engine keeps only the start of a healthcheck's output: Podman its first 500 characters
  (`--health-max-log-size`, `Config.HealthMaxLogSize` from Podman 5), trailing newline stripped
  and no mark of the cut; Docker its first 4096 bytes and "..." after the cut.

Output is quoted in whole lines, never cut inside one here: a command can print a secret, and the
sync engine masks secrets before it shortens a message (apphub.sync.redact, issue 8). Where a cut
was made before apphub sees the text (the engine's cut of a healthcheck's output, the 64 KiB of an
exec's output kept here), the line it went through is left out.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import docker
import docker.constants
import docker.errors
import requests.exceptions  # type: ignore[import-untyped,unused-ignore]
from pydantic import Field

from apphub.errors import BackendUnavailable, ReloadError
from apphub.reload.base import ActionSpec, ContainerEnv, ReloadFn
from apphub.reload.health import HealthSpec

# How long to ask "is the engine alive?" after a call timed out, to tell a slow container (the
# engine answers) from a hung engine (it does not).
_PING_TIMEOUT = 3.0
# Output quoted in an exec failure: the end is where the error usually is.
_TAIL_LINES = 10
_OUTPUT_BYTES = 65536  # of an exec's output, the end kept
# The shortest cut an engine makes of a healthcheck's output by default (Podman's), in characters.
_HEALTH_OUTPUT_CHARS = 500
# The names of the variables apphub set in a container it recreated, comma-separated.
ENV_LABEL = "io.apphub.env"
_NOT_RUNNING = re.compile(r"not running|state improper|is paused|is restarting", re.IGNORECASE)


class ContainerRestartAction(ActionSpec):
    strategy: Literal["container-restart"]
    container: str
    grace: int = Field(default=10, ge=0, le=600, description="Seconds before the engine kills the container")


class ContainerSignalAction(ActionSpec):
    strategy: Literal["container-signal"]
    container: str
    signal: str = "HUP"


class ContainerExecAction(ActionSpec):
    strategy: Literal["container-exec"]
    container: str
    command: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class HealthCheckRun:
    """One run of a container's healthcheck, as the engine logged it."""

    exit_code: int | None
    output: str
    started: datetime | None


@dataclass(frozen=True)
class ContainerState:
    """What `GET /containers/{id}/json` says about a container's state."""

    name: str
    status: str                    # created|running|paused|restarting|removing|exited|dead (Podman: also stopped)
    health: str | None             # starting|healthy|unhealthy; None when it has no healthcheck
    exit_code: int
    error: str                     # State.Error: why the last start failed, if it did
    started_at: datetime | None
    failing_streak: int
    last_check: HealthCheckRun | None  # the newest healthcheck run since the container last started
    output_limit: int = _HEALTH_OUTPUT_CHARS  # where the engine may have cut a check's output (0: never)

    @property
    def running(self) -> bool:
        return self.status == "running"


class ContainerEngine:
    """One Docker-compatible engine at `url` ("unix:///run/docker.sock", Podman's socket, "tcp://…").

    Nothing connects until the first call, which asks the engine its API version once (a failed
    attempt is retried by the next call). Errors: ReloadError for what the engine refused or a
    container it does not know; BackendUnavailable when the engine cannot be reached or does not
    answer within the timeout.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._version: str | None = None
        self._engine_name = ""
        self._lock = threading.Lock()

    @property
    def is_podman(self) -> bool:
        """True once the engine has told it is Podman (after the first successful call)."""
        return "podman" in self._engine_name.lower()

    def ping(self) -> None:
        """Returns when the engine answers `GET /_ping`."""
        with self._api(self.timeout) as api, self._translate("ping"):
            api.ping()

    def restart(self, container: str, grace: int, timeout: float) -> None:
        """Restart (stop with SIGTERM, SIGKILL after `grace` s, start); returns once it has started again.

        A container that starts and exits at once is not an error here: the health gate reports it.
        The engine legitimately takes up to `grace` seconds to stop the container, so the call waits
        at least grace + 5 s whatever `timeout` says.
        """
        wait = max(timeout, grace + 5.0)
        before = self.state(container)
        # The SDK waits the client's timeout plus the grace for the answer: together, `wait`.
        with self._api(wait - grace) as api, self._translate(f"restart of container {container}", container,
                                                             waited=wait):
            api.restart(container, timeout=grace)
        after = self.state(container)
        if after.running or (after.started_at is not None and after.started_at != before.started_at):
            return
        raise ReloadError(f"container {container} was restarted but did not start: it is {_describe_status(after)}")

    def signal(self, container: str, signal: str) -> None:
        """Send `signal` (HUP, SIGHUP or a number) to the container's PID 1."""
        with self._api(self.timeout) as api, self._translate(f"signal {signal} to container {container}", container):
            try:
                api.kill(container, signal=signal)
            except docker.errors.APIError as exc:
                # Docker says 409 for a stopped container, Podman 500 "container state improper".
                if not isinstance(exc, docker.errors.NotFound) and (
                    _status_code(exc) == 409 or _NOT_RUNNING.search(_explanation(exc))
                ):
                    raise ReloadError(
                        f"container {container} is not running, so {signal} cannot be sent: {_explanation(exc)}"
                    ) from exc
                raise

    def exec(self, container: str, command: list[str], timeout: float) -> None:
        """Run `command` in the container and wait for it; a non-zero exit is a ReloadError quoting the output."""
        exit_code, output = self.run(container, command, timeout)
        if exit_code != 0:
            raise ReloadError(f"`{shlex.join(command)}` in container {container} exited with code {exit_code}: "
                              f"{_tail(output)}")

    def run(self, container: str, command: list[str], timeout: float, *, user: str | None = None,
            shown: str | None = None, environment: Mapping[str, str] | None = None) -> tuple[int | None, bytes]:
        """Run `command` in the container as `user`, with `environment` added; its exit code and its
        output (stdout and stderr). A secret goes in `environment`, never in `command`: an exec's
        argv is in the engine's events and in the container's process list. `shown`: how messages
        name the command."""
        shown = shown or shlex.join(command)
        with self._api(timeout) as api, self._translate(f"`{shown}` in container {container}", container,
                                                        waited=timeout):
            exec_id = api.exec_create(container, command, stdout=True, stderr=True, user=user or "",
                                      environment=dict(environment) if environment else None)["Id"]
            # The SDK's own exec_start blocks in poll() without a timeout until the command ends;
            # read the attached stream ourselves against the deadline instead.
            stream = api.exec_start(exec_id, socket=True)
            try:
                output = _read_frames(stream, time.monotonic() + timeout)
            finally:
                _close_stream(stream)
            exit_code = api.exec_inspect(exec_id).get("ExitCode")
            deadline = time.monotonic() + 2.0
            while exit_code is None and time.monotonic() < deadline:
                # The output can end a moment before the engine records the exit code.
                time.sleep(0.05)
                exit_code = api.exec_inspect(exec_id).get("ExitCode")
        return exit_code, output

    def environment(self, container: str) -> ContainerEnv | None:
        """The environment the container was created with (`Config.Env`, the image's included) and
        the names apphub manages in it; None when there is no such container."""
        with self._api(self.timeout) as api, self._translate(f"inspect of container {container}"):
            try:
                attrs: dict[str, Any] = api.inspect_container(container)
            except docker.errors.NotFound:
                return None  # (any other refusal is translated to ReloadError)
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        managed = str(labels.get(ENV_LABEL) or "")
        return ContainerEnv(env_of(attrs), frozenset(name for name in managed.split(",") if name))

    def status(self, container: str) -> tuple[str, str | None]:
        """(State.Status, State.Health.Status or None when the container has no healthcheck)."""
        state = self.state(container)
        return state.status, state.health

    def state(self, container: str, timeout: float | None = None) -> ContainerState:
        """The container's state, health included."""
        with self._api(timeout or self.timeout) as api, self._translate(f"inspect of container {container}", container):
            attrs: dict[str, Any] = api.inspect_container(container)
        limit = (attrs.get("Config") or {}).get("HealthMaxLogSize")
        return _parse_state(container, attrs.get("State") or {},
                            limit if isinstance(limit, int) and limit >= 0 else _HEALTH_OUTPUT_CHARS)

    @contextlib.contextmanager
    def client(self, what: str, timeout: float, container: str | None = None,
               waited: float | None = None) -> Iterator[Any]:
        """A low-level `docker.APIClient` for one call made elsewhere (apphub.reload.recreate), with
        `timeout` on it and its errors translated like this class's own: `what` names what was being
        done, `container` the container a 404 means is missing (None: quote the engine instead)."""
        with self._api(timeout) as api, self._translate(what, container, waited=waited):
            yield api

    # -- plumbing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _api(self, timeout: float) -> Iterator[Any]:
        self._check_socket()
        version = self._negotiate()
        api = docker.APIClient(base_url=self.url, version=version, timeout=timeout)
        try:
            yield api
        finally:
            api.close()

    def _check_socket(self) -> None:
        """Connect to a unix socket once ourselves: when that fails, the SDK's UnixHTTPConnection
        leaves its socket open (docker/transport/unixconn.py connect()), one leak per failed call."""
        if not self.url.startswith("unix://"):
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(min(self.timeout, _PING_TIMEOUT))
            try:
                probe.connect(self.url.removeprefix("unix://"))
            except OSError as exc:
                raise BackendUnavailable(
                    f"the container engine at {self.url} cannot be reached: {_root_cause(exc)}"
                ) from exc

    def _negotiate(self) -> str:
        """The API version to speak: the engine's, capped at what this SDK knows."""
        with self._lock:
            if self._version is not None:
                return self._version
            api = docker.APIClient(base_url=self.url, version=docker.constants.MINIMUM_DOCKER_API_VERSION,
                                   timeout=self.timeout)
            try:
                with self._translate("version query"):
                    info: dict[str, Any] = api.version(api_version=False)
            finally:
                api.close()
            offered = str(info.get("ApiVersion") or docker.constants.DEFAULT_DOCKER_API_VERSION)
            known = docker.constants.DEFAULT_DOCKER_API_VERSION
            self._version = min(offered, known, key=_version_key)
            self._engine_name = engine_name(info)
            return self._version

    @contextlib.contextmanager
    def _translate(self, what: str, container: str | None = None, waited: float | None = None) -> Iterator[None]:
        """Map the SDK's, requests' and the socket's exceptions onto ReloadError / BackendUnavailable."""
        try:
            yield
        except (ReloadError, BackendUnavailable):
            raise
        except docker.errors.NotFound as exc:
            if container is not None and "no such exec" not in _explanation(exc).lower():
                raise ReloadError(f"container {container} does not exist") from exc
            raise ReloadError(f"{what}: the engine at {self.url} answered: {_explanation(exc)}") from exc
        except docker.errors.APIError as exc:
            raise ReloadError(f"{what}: the engine answered {_status_code(exc)}: {_explanation(exc)}") from exc
        except (requests.exceptions.Timeout, TimeoutError) as exc:
            seconds = waited if waited is not None else self.timeout
            if waited is not None and self._answers():
                # The engine is alive: what we waited for (a stop, an exec'd command) was slow.
                raise ReloadError(f"{what} did not finish within {seconds:g} s") from exc
            raise BackendUnavailable(
                f"the container engine at {self.url} did not answer within {seconds:g} s ({what})"
            ) from exc
        except (requests.exceptions.ConnectionError, OSError) as exc:
            raise BackendUnavailable(
                f"the container engine at {self.url} cannot be reached: {_root_cause(exc)}"
            ) from exc
        except docker.errors.DockerException as exc:
            raise ReloadError(f"{what}: {exc}") from exc

    def _answers(self) -> bool:
        api = docker.APIClient(base_url=self.url, version=self._version or docker.constants.MINIMUM_DOCKER_API_VERSION,
                               timeout=_PING_TIMEOUT)
        try:
            api.ping()
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            api.close()
        return True


def container_strategies(engine: ContainerEngine) -> dict[str, ReloadFn]:
    """The reload callables `container-restart`, `container-signal` and `container-exec` on `engine`."""

    def restart(service: str, action: ActionSpec) -> None:
        assert isinstance(action, ContainerRestartAction), action
        with _for_service(service, action.strategy):
            engine.restart(action.container, action.grace, action.timeout)

    def signal(service: str, action: ActionSpec) -> None:
        assert isinstance(action, ContainerSignalAction), action
        with _for_service(service, action.strategy):
            engine.signal(action.container, action.signal)

    def run(service: str, action: ActionSpec) -> None:
        assert isinstance(action, ContainerExecAction), action
        with _for_service(service, action.strategy):
            engine.exec(action.container, action.command, action.timeout)

    strategies: dict[str, ReloadFn] = {
        "container-restart": restart,
        "container-signal": signal,
        "container-exec": run,
    }
    return strategies


class ContainerProbe:
    """The `container` health probe: running, and `healthy` if the container has a healthcheck."""

    def __init__(self, engine: ContainerEngine) -> None:
        self.engine = engine

    def check(self, service: str, spec: HealthSpec) -> str | None:
        name = spec.container
        if name is None:
            return "no container named in the health spec"
        try:
            # One look must not outlast the gate's own timeout; BackendUnavailable goes up (the checker reports it).
            state = self.engine.state(name, timeout=min(self.engine.timeout, spec.timeout))
        except ReloadError as exc:
            return str(exc)
        if not state.running:
            return f"container {name} is {_describe_status(state)}"
        if state.health is None or state.health == "healthy":
            return None
        if state.last_check is None:
            reason = f"container {name} is running, health {state.health}: no healthcheck has run since it started"
            if self.engine.is_podman:
                reason += (" (Podman runs healthchecks from systemd timers, which this host may not have;"
                           f" `podman healthcheck run {name}` runs one)")
            return reason
        return (f"container {name} is running, health {state.health} (failing streak {state.failing_streak});"
                f" last check: {_describe_check(state.last_check, state.output_limit)}")


@contextlib.contextmanager
def _for_service(service: str, strategy: str) -> Iterator[None]:
    try:
        yield
    except ReloadError as exc:
        raise ReloadError(f"service {service}: {strategy}: {exc}") from exc
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"service {service}: {strategy}: {exc}") from exc


def engine_name(version: dict[str, Any]) -> str:
    """The names of the engine's components in its `GET /version` ("Podman Engine", "Engine", ...)."""
    return " ".join(str(part.get("Name", "")) for part in version.get("Components") or [] if isinstance(part, dict))


def env_of(attrs: dict[str, Any]) -> dict[str, str]:
    """`Config.Env` of an inspection as NAME -> value (`NAME` alone, which Docker allows, is empty)."""
    found = {}
    for entry in (attrs.get("Config") or {}).get("Env") or []:
        name, _, value = str(entry).partition("=")
        found[name] = value
    return found


def _parse_state(name: str, state: dict[str, Any], output_limit: int = _HEALTH_OUTPUT_CHARS) -> ContainerState:
    health = state.get("Health") or {}
    # Podman reports Health with Status "" when there is no healthcheck; Docker leaves it out
    # (and "none" is Docker's word for a disabled one).
    health_status = str(health.get("Status") or "") or None
    if health_status == "none":
        health_status = None
    started_at = _parse_time(state.get("StartedAt"))
    runs = [_parse_run(entry) for entry in health.get("Log") or [] if isinstance(entry, dict)]
    if started_at is not None:
        # Earlier runs survive a restart on Podman; they say nothing about this start.
        runs = [run for run in runs if run.started is None or run.started >= started_at]
    return ContainerState(
        name=name,
        status=str(state.get("Status") or "unknown"),
        health=health_status,
        exit_code=int(state.get("ExitCode") or 0),
        error=str(state.get("Error") or ""),
        started_at=started_at,
        failing_streak=int(health.get("FailingStreak") or 0),
        last_check=runs[-1] if runs else None,
        output_limit=output_limit,
    )


def _parse_run(entry: dict[str, Any]) -> HealthCheckRun:
    code = entry.get("ExitCode")
    return HealthCheckRun(
        exit_code=int(code) if isinstance(code, int) else None,
        output=str(entry.get("Output") or ""),
        started=_parse_time(entry.get("Start")),
    )


_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def _parse_time(text: Any) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Go trims trailing zeros); None for Go's zero time or garbage."""
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP.match(text.strip())
    if match is None or text.startswith("0001-"):
        return None
    seconds, fraction, zone = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    try:
        return datetime.fromisoformat(f"{seconds}.{micros}{'+00:00' if zone in (None, 'Z') else zone}")
    except ValueError:
        return None


def _describe_status(state: ContainerState) -> str:
    text = state.status
    if state.status in ("exited", "stopped", "dead"):
        text += f" (exit code {state.exit_code})"
    if state.error:
        text += f": {state.error}"
    return text


def _describe_check(run: HealthCheckRun, limit: int) -> str:
    """The exit code and the check's output in whole lines; a last line the engine may have cut
    (the output reaches the engine's limit, or ends in Docker's "...") is left out."""
    lines = run.output.splitlines()
    cut = bool(lines) and ((0 < limit <= len(run.output)) or run.output.endswith("..."))
    if cut:
        lines = lines[:-1]
    output = " | ".join(line.strip() for line in lines if line.strip())
    if cut:
        output += (" | " if output else "") + "(the rest, cut by the engine, is not shown)"
    return f"exit code {run.exit_code}" + (f": {output}" if output else "")


def _read_frames(stream: Any, deadline: float) -> bytes:
    """The output of an attached exec (Docker's multiplexed frames: 8-byte header, then the payload).

    TimeoutError when the deadline passes first. Only the last 64 KiB are kept (the tail is what
    an error quotes), from the first whole line in them.
    """
    output = bytearray()
    dropped = False
    while True:
        header = _read_exactly(stream, 8, deadline)
        if len(header) < 8:
            return _whole_lines(bytes(output), dropped)
        length = int.from_bytes(header[4:8], "big")
        output += _read_exactly(stream, length, deadline)
        if len(output) > _OUTPUT_BYTES:
            del output[:-_OUTPUT_BYTES]
            dropped = True


def _whole_lines(output: bytes, dropped: bool) -> bytes:
    """`output` without its first line when bytes before it were dropped: that line is cut."""
    if not dropped:
        return output
    _, newline, rest = output.partition(b"\n")
    return rest if newline else b""


def _read_exactly(stream: Any, size: int, deadline: float) -> bytes:
    raw = getattr(stream, "_sock", stream)  # SocketIO (unix, http) wraps the socket that has the timeout
    data = bytearray()
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the exec did not finish in time")
        raw.settimeout(remaining)
        chunk = stream.read(size - len(data)) if hasattr(stream, "read") else raw.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _close_stream(stream: Any) -> None:
    # The HTTP response owns the buffered reader over the stream; the socket itself must be closed
    # too, or it lingers until garbage collection.
    response = getattr(stream, "_response", None)
    for closable in (response, stream, getattr(stream, "_sock", None)):
        if closable is not None:
            with contextlib.suppress(OSError, ValueError):
                closable.close()


def _tail(output: bytes) -> str:
    """The last lines of the output, whole."""
    text = output.decode("utf-8", errors="replace").strip()
    if not text:
        return "(no output)"
    return "\n".join(text.splitlines()[-_TAIL_LINES:])


def _status_code(exc: docker.errors.APIError) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", errors="replace")
    return str(explanation or exc).strip()


def _root_cause(exc: BaseException) -> str:
    """The OS-level reason buried in requests' and urllib3's wrappers ("No such file or directory")."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    found: OSError | None = None
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            if isinstance(current, tuple):
                pending.extend(current)
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, requests.exceptions.RequestException) \
                and current.strerror:
            found = current
        pending.extend([current.__cause__, current.__context__, *current.args])
    if found is not None:
        return f"{type(found).__name__}: {found.strerror}"
    return str(exc)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])
