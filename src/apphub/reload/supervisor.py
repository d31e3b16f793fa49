"""supervisord as a reload backend: restart or signal a program over its XML-RPC API, and a health
probe that a program is RUNNING.

supervisord speaks XML-RPC over HTTP, on a unix socket (`[unix_http_server]`) or TCP
(`[inet_http_server]`). The unix socket needs a transport whose HTTP connection connects an
`AF_UNIX` socket; this is how `supervisorctl` does it (`supervisor.xmlrpc.SupervisorTransport`),
written again here because the `supervisor` package is not one of our dependencies.

Every call carries a socket timeout, so a supervisord that accepts and then never answers fails
the reload as BackendUnavailable instead of hanging the sync thread. Each call opens its own
connection: the engine reloads independent services in parallel, and an `xmlrpc.client.ServerProxy`
is not safe to share between threads (supervisord itself serves many connections at once).

A program's stderr is quoted in whole lines, never cut inside one: it can print a secret, and the
sync engine masks secrets before it shortens a message (apphub.sync.redact, issue 8).
"""

from __future__ import annotations

import http.client
import socket
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

from apphub.errors import BackendUnavailable, ReloadError, SyncError
from apphub.reload.base import ActionSpec, ReloadFn
from apphub.reload.health import HealthSpec

# supervisor/xmlrpc.py `Faults`: the XML-RPC fault codes supervisord answers with.
FAULT_NAMES = {
    1: "UNKNOWN_METHOD", 2: "INCORRECT_PARAMETERS", 3: "BAD_ARGUMENTS", 4: "SIGNATURE_UNSUPPORTED",
    6: "SHUTDOWN_STATE", 10: "BAD_NAME", 11: "BAD_SIGNAL", 20: "NO_FILE", 21: "NOT_EXECUTABLE", 30: "FAILED",
    40: "ABNORMAL_TERMINATION", 50: "SPAWN_ERROR", 60: "ALREADY_STARTED", 70: "NOT_RUNNING", 80: "SUCCESS",
    90: "ALREADY_ADDED", 91: "STILL_RUNNING", 92: "CANT_REREAD",
}
_FAULT_MEANINGS = {
    "BAD_NAME": "the program is not in supervisord's config",
    "BAD_SIGNAL": "supervisord does not know that signal",
    "NO_FILE": "the program's command does not exist",
    "NOT_EXECUTABLE": "the program's command is not executable",
    "ABNORMAL_TERMINATION": "the program exited before it had been up for its startsecs",
    # Also what a program that exits within its startsecs gets: supervisord sets spawnerr to
    # "Exited too quickly" when it goes to BACKOFF, and startProcess reports that as SPAWN_ERROR.
    "SPAWN_ERROR": "supervisord could not get the program running",
    "NOT_RUNNING": "the program is not running",
    "ALREADY_STARTED": "the program is already running",
    "FAILED": "supervisord reports a failure",
}
_NOT_RUNNING = 70
_SHUTDOWN_STATE = 6
_TAIL_BYTES = 2000
_TAIL_LINES = 3


class SupervisorRestartAction(ActionSpec):
    strategy: Literal["supervisor-restart"]
    program: str


class SupervisorSignalAction(ActionSpec):
    strategy: Literal["supervisor-signal"]
    program: str
    signal: str = "HUP"


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix stream socket (the Host header says `localhost`)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """xmlrpc's transport with a timeout on every socket operation, over TCP or a unix socket."""

    def __init__(self, socket_path: str | None, timeout: float) -> None:
        super().__init__()
        self._socket_path = socket_path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        cached_host, cached = self._connection
        if cached is not None and host == cached_host:
            return cached
        # get_host_info takes `user:pass@` off the host and turns it into an Authorization header.
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        if self._socket_path is not None:
            connection: http.client.HTTPConnection = UnixHTTPConnection(self._socket_path, self._timeout)
        else:
            connection = http.client.HTTPConnection(chost, timeout=self._timeout)
        self._connection = host, connection
        return connection


def fault_name(fault: xmlrpc.client.Fault) -> str:
    """supervisord's name of a fault (`BAD_NAME`), from its code or else the text before the colon."""
    name = FAULT_NAMES.get(fault.faultCode)
    if name is None:
        name = str(fault.faultString).split(":", 1)[0].strip() or f"fault {fault.faultCode}"
    return name


class SupervisorClient:
    """The few supervisord calls a reload needs, each with a timeout and translated errors.

    `url` is `unix:///path/to/supervisor.sock` (or `unix://user:pass@/path.sock` when the socket
    server has a username) or `http://[user:pass@]host:port` for `[inet_http_server]`.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"supervisord URL {self._shown(url)!r} names no socket: use unix:///path/to.sock")
            self._socket_path: str | None = parts.path
            # `user:pass@` stays in the RPC URL: xmlrpc turns it into the Basic Authorization header.
            credentials = parts.netloc if parts.netloc.endswith("@") else ""
            self._rpc_url = f"http://{credentials}localhost/RPC2"
        elif parts.scheme == "http":
            if not parts.hostname:
                raise ValueError(f"supervisord URL {self._shown(url)!r} names no host")
            self._socket_path = None
            self._rpc_url = parts._replace(path=parts.path.rstrip("/") or "/RPC2").geturl()
        else:
            raise ValueError(f"supervisord URL {self._shown(url)!r} must start with unix:// or http://")
        self.url = self._shown(url)
        self.timeout = timeout

    @staticmethod
    def _shown(url: str) -> str:
        """The URL with its password masked, for messages and logs."""
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@" + parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=netloc).geturl()

    # -- the calls -------------------------------------------------------------------------------

    def restart(self, program: str, timeout: float) -> None:
        """Stop the program (a stopped one is fine) and start it; returns once supervisord has it RUNNING.

        supervisord has no restart call: this is what `supervisorctl restart` does. RUNNING means
        up for the program's `startsecs`, so a program that dies at once fails here, not later.
        """
        deadline = time.monotonic() + timeout
        try:
            self._call_within(program, "stopProcess", deadline, timeout, program, True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != _NOT_RUNNING:
                raise self._reload_error(program, "stop", fault) from fault
        try:
            self._call_within(program, "startProcess", deadline, timeout, program, True)
        except xmlrpc.client.Fault as fault:
            raise self._reload_error(program, "start", fault) from fault

    def signal(self, program: str, signal: str) -> None:
        """Send `signal` (a name such as HUP, or a number) to the running program."""
        try:
            self._call("signalProcess", program, signal)
        except xmlrpc.client.Fault as fault:
            raise self._reload_error(program, f"send {signal} to", fault) from fault

    def state(self, program: str) -> dict[str, Any]:
        """supervisord's getProcessInfo: statename, pid, spawnerr, exitstatus, description, ..."""
        try:
            info = self._call("getProcessInfo", program)
        except xmlrpc.client.Fault as fault:
            raise self._reload_error(program, "look up", fault, with_details=False) from fault
        if not isinstance(info, dict):
            raise BackendUnavailable(f"supervisord at {self.url} answered getProcessInfo with {info!r}")
        return info

    def daemon(self) -> tuple[str, str]:
        """supervisord's own version and state name (RUNNING when it is up and serving)."""
        try:
            version = self._call("getSupervisorVersion")
            state = self._call("getState")
        except xmlrpc.client.Fault as fault:
            raise BackendUnavailable(f"supervisord at {self.url} refused getState: {fault.faultString}") from fault
        return str(version), str(state.get("statename") if isinstance(state, dict) else state)

    def call(self, program: str, method: str, *args: Any, deadline: float, budget: float) -> Any:
        """Any supervisord method about `program`, to end by `deadline` (time.monotonic()) of an action
        given `budget` seconds. Faults pass through for the caller to judge (`fault_error` words one);
        a slow program is a ReloadError, an unreachable or hung supervisord BackendUnavailable."""
        return self._call_within(program, method, deadline, budget, *args)

    def fault_error(self, program: str, doing: str, fault: xmlrpc.client.Fault) -> ReloadError:
        """The ReloadError for `fault` met when trying to `doing` the program, worded as the calls
        above word theirs (with its state and last stderr lines when it did not stay up)."""
        return self._reload_error(program, doing, fault)

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """One XML-RPC call on a connection of its own; Faults pass through, the rest is translated."""
        proxy = xmlrpc.client.ServerProxy(
            self._rpc_url, transport=_Transport(self._socket_path, timeout or self.timeout), allow_none=True
        )
        with proxy, self._unavailable(method):
            try:
                return getattr(proxy.supervisor, method)(*args)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode == _SHUTDOWN_STATE:
                    raise BackendUnavailable(
                        f"supervisord at {self.url} is shutting down (SHUTDOWN_STATE); try again once it is back"
                    ) from fault
                raise

    def _call_within(self, program: str, method: str, deadline: float, budget: float, *args: Any) -> Any:
        """A call that must end by `deadline`: a timeout means a hung supervisord only if it also
        fails a quick follow-up question; otherwise the program is what is slow (a long `startsecs`
        or `stopwaitsecs`), and that is the reload's failure, not the backend's."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReloadError(f"supervisord program {program!r}: {method} not begun: the {budget:g} s timeout is spent")
        try:
            return self._call(method, *args, timeout=remaining)
        except BackendUnavailable as exc:
            if not isinstance(exc.__cause__, TimeoutError):
                raise
            try:
                info = self._call("getProcessInfo", program, timeout=min(self.timeout, 2.0))
            except (BackendUnavailable, xmlrpc.client.Fault):
                raise exc from exc.__cause__
            raise ReloadError(
                f"supervisord program {program!r}: {method} did not finish within {budget:g} s "
                f"(the program is {info.get('statename', '?')})"
            ) from exc

    @contextmanager
    def _unavailable(self, method: str) -> Iterator[None]:
        where = f"supervisord at {self.url}"
        try:
            yield
        except TimeoutError as exc:  # socket.timeout is TimeoutError
            raise BackendUnavailable(f"{where} did not answer {method} within the timeout ({exc or 'timed out'})") \
                from exc
        except FileNotFoundError as exc:
            raise BackendUnavailable(f"{where} cannot be reached: the socket does not exist (is it running?)") \
                from exc
        except ConnectionRefusedError as exc:
            raise BackendUnavailable(f"{where} cannot be reached: connection refused (is it running?)") from exc
        except xmlrpc.client.ProtocolError as exc:
            hint = " (check the username and password in the URL)" if exc.errcode == 401 else ""
            raise BackendUnavailable(f"{where} refused {method}: HTTP {exc.errcode} {exc.errmsg}{hint}") from exc
        except OSError as exc:  # before HTTPException: a dropped connection (RemoteDisconnected) is both
            raise BackendUnavailable(f"{where} cannot be reached: {exc}") from exc
        except (http.client.HTTPException, ExpatError) as exc:
            # Not the exception's text: http.client quotes the bytes it could not parse, escaped.
            raise BackendUnavailable(f"{where} gave an answer that is not XML-RPC to {method} "
                                     f"({type(exc).__name__})") from exc

    def _reload_error(self, program: str, doing: str, fault: xmlrpc.client.Fault, with_details: bool = True) \
            -> ReloadError:
        name = fault_name(fault)
        meaning = _FAULT_MEANINGS.get(name)
        text = str(fault.faultString)
        message = f"supervisord could not {doing} program {program!r}: {name}"
        message += f" ({meaning})" if meaning else ""
        # supervisord's fault text is "NAME: detail"; keep the detail when it adds something.
        detail = text.split(":", 1)[1].strip() if ":" in text else ""
        if detail and detail != program:
            message += f": {detail}"
        if with_details and name in ("ABNORMAL_TERMINATION", "SPAWN_ERROR", "NOT_RUNNING", "FAILED"):
            message += self._what_happened(program)
        return ReloadError(message)

    def _what_happened(self, program: str) -> str:
        """The program's state, spawn error, exit status and last stderr lines, as best we can tell."""
        try:
            info = self._call("getProcessInfo", program, timeout=min(self.timeout, 2.0))
        except (SyncError, xmlrpc.client.Fault):
            return ""
        parts = [f"state {info.get('statename', '?')}"]
        # supervisord reports exitstatus 0 after "Exited too quickly" (it keeps None there), so the
        # status is only worth quoting when there is no spawnerr ("Bad exit code N" carries it).
        if info.get("spawnerr"):
            parts.append(f"spawn error: {info['spawnerr']}")
        elif info.get("statename") == "EXITED":
            parts.append(f"exit status {info.get('exitstatus')}")
        tail = self._stderr_tail(program)
        if tail:
            parts.append(f"stderr: {tail}")
        return "; " + "; ".join(parts)

    def _stderr_tail(self, program: str) -> str:
        """The last distinct lines of the program's stderr log (stdout when stderr is redirected), whole."""
        for method in ("tailProcessStderrLog", "tailProcessStdoutLog"):
            try:
                answer = self._call(method, program, 0, _TAIL_BYTES, timeout=min(self.timeout, 2.0))
            except (SyncError, xmlrpc.client.Fault):
                continue
            text = str(answer[0]) if isinstance(answer, list) and answer else ""
            lines = text.splitlines()
            # [text, offset, overflow]: overflow means the log is longer than the bytes asked for,
            # so the first line is the end of a line cut at an arbitrary byte: not quoted.
            if isinstance(answer, list) and len(answer) > 2 and answer[2] and lines:
                lines = lines[1:]
            # The log spans every start attempt: keep each distinct line once, at its last place.
            kept = list(dict.fromkeys(reversed([line.strip() for line in lines if line.strip()])))
            kept.reverse()
            if kept:
                return " | ".join(kept[-_TAIL_LINES:])
        return ""


def supervisor_strategies(client: SupervisorClient) -> dict[str, ReloadFn]:
    """The `supervisor-restart` and `supervisor-signal` strategies, both through `client`."""

    def restart(service: str, action: ActionSpec) -> None:
        if not isinstance(action, SupervisorRestartAction):
            raise ReloadError(f"service {service}: supervisor-restart was given a {action.strategy} action")
        with _naming(service, "supervisor-restart"):
            client.restart(action.program, action.timeout)

    def signal(service: str, action: ActionSpec) -> None:
        if not isinstance(action, SupervisorSignalAction):
            raise ReloadError(f"service {service}: supervisor-signal was given a {action.strategy} action")
        with _naming(service, "supervisor-signal"):
            client.signal(action.program, action.signal)

    return {"supervisor-restart": restart, "supervisor-signal": signal}


@contextmanager
def _naming(service: str, strategy: str) -> Iterator[None]:
    """Put the service and strategy in front of the client's message, keeping the error's class."""
    try:
        yield
    except (ReloadError, BackendUnavailable) as exc:
        raise type(exc)(f"service {service}: {strategy}: {exc}") from exc


class SupervisorProbe:
    """Probe for kind `supervisor`: healthy when the program is RUNNING.

    supervisord moves a program from STARTING to RUNNING only once it has stayed up for its
    `startsecs`, so RUNNING already means "up for startsecs".
    """

    def __init__(self, client: SupervisorClient) -> None:
        self._client = client

    def check(self, service: str, spec: HealthSpec) -> str | None:
        program = spec.supervisor
        if program is None:
            return None
        try:
            info = self._client.state(program)
        except ReloadError as exc:  # BAD_NAME; BackendUnavailable goes to the health checker as is
            return str(exc)
        return describe_state(program, info)


def describe_state(program: str, info: dict[str, Any]) -> str | None:
    """None for RUNNING, else one line saying what state the program is in and why."""
    state = str(info.get("statename", "UNKNOWN"))
    if state == "RUNNING":
        return None
    # "Exited too quickly" comes with exitstatus 0 (see SupervisorClient._what_happened).
    why = info.get("spawnerr") or f"last exit status {info.get('exitstatus')}"
    if state == "STARTING":
        detail = " (not yet up for its startsecs)"
    elif state == "BACKOFF":
        detail = f" (it did not stay up, supervisord will retry: {why})"
    elif state == "FATAL":
        detail = f" (supervisord gave up starting it: {why})"
    elif state == "EXITED":
        detail = f" with status {info.get('exitstatus')}"
    else:  # STOPPED, STOPPING, UNKNOWN
        detail = ""
    return f"program {program!r} is {state}{detail}"
