"""What every stand-in shares: a real HTTP server on loopback that records, checks and answers requests.

A stand-in is a small in-memory imitation of one product's HTTP API (Gitea, Portainer, Nginx Proxy Manager,
Cockpit), serving exactly the calls the initialisers make, as the product's official specification defines
them. `StandIn` owns the server, the recording, the spec check and the misbehaviour knobs; a subclass owns
the product: its routes (`ROUTES`, handler methods that take a `Call` and return a `Reply`), its error body
shape (`error_body`) and product facts the spec leaves out (`problems_of`).

The server is `http.server.ThreadingHTTPServer` on 127.0.0.1 and a free port, in a daemon thread: it starts
in about a millisecond, which matters because a benchmark starts the stand-ins many times.
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

from tests.standins.spec import Spec

# Requests under this prefix drive the stand-in itself (the Gitea CLI bridge); they are not product calls,
# so they are neither recorded nor checked.
CONTROL_PREFIX = "/__standin/"
# The longest a serving loop waits on a connection that was ready and then went away before accept().
ACCEPT_TIMEOUT = 0.05


@dataclass
class Recorded:
    """One request as the stand-in received it, and what it answered (status None: dropped, or not yet)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # the parsed body, None when there is none or it is not JSON
    status: int | None = None
    response: Any = None


@dataclass
class Call:
    """What a route handler gets: the request, the named groups of its route pattern, its spec problems."""

    request: Recorded
    params: dict[str, str]
    problems: list[str]


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, or bytes sent as they are; None sends no body
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    message: str | None


class StandIn:
    """Base of the stand-ins: a live server with `url`, `requests`, `violations` and misbehaviour knobs.

    Use it as a context manager (or call `stop()`); the server runs from construction on. A subclass calls
    `super().__init__()` first and then sets up its state: nobody knows the port before the constructor returns.
    """

    # (method, path regex matched against the whole path, name of the handler method)
    ROUTES: ClassVar[list[tuple[str, str, str]]] = []
    # Operations the product has that its spec leaves out, documented in service-apis.md: not violations.
    FACT_OPERATIONS: ClassVar[set[tuple[str, str]]] = set()
    spec: ClassVar[Spec | None] = None

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._lock = threading.RLock()
        self._drops = 0
        self._delay = 0.0
        self._failures: list[_Failure] = []
        self._routes = [(method, re.compile(pattern), getattr(self, name)) for method, pattern, name in self.ROUTES]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.timeout = ACCEPT_TIMEOUT
        self._server.standin = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # serve_forever() notices shutdown() only at its next poll (20 ms with a 20 ms poll, per stand-in per
        # stop); a wake-up socket makes stop() immediate.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"{type(self).__name__} {self.url}")
        self._thread.start()
        self._stopped = False

    # -- the knobs -----------------------------------------------------------------------------------

    def down_for(self, n: int) -> None:
        """The next n requests get their connection closed with no response at all."""
        with self._lock:
            self._drops = n

    def slow(self, seconds: float) -> None:
        """Every request waits this long before it is answered (0 turns it off)."""
        self._delay = seconds

    def fail_next(self, method: str, path_regex: str, status: int = 500, times: int = 1,
                  message: str | None = None) -> None:
        """Answer the next `times` requests whose whole path matches with `status` and an error body, doing nothing."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, times, message))

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        """The recorded requests with this method whose whole path (without the query) matches."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and pattern.fullmatch(r.path)]

    def answers_off_spec(self) -> list[str]:
        """The stand-in's own successful answers that its spec does not allow: how the stand-ins are tested.

        Only 2xx answers: the specs document few error answers (NPM's none), whose shapes come from the facts.
        """
        if self.spec is None:
            return []
        problems = []
        with self._lock:
            answered = [r for r in self.requests if r.status is not None and 200 <= r.status < 300
                        and not isinstance(r.response, bytes)]
        for request in answered:
            found = self.spec.find(request.method, request.path)
            if found is not None:
                problems += [f"{request.method} {request.path} -> {request.status}: {problem}"
                             for problem in found[0].response_problems(request.status or 0, request.response)]
        return problems

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._wake_writer.send(b"x")
        self._thread.join(timeout=5)
        self._server.server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # -- what a product implements --------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        """The product's error body for this status and message."""
        raise NotImplementedError

    def problems_of(self, request: Recorded) -> list[str]:
        """What is wrong with a request: by default, what the spec says; products add their facts."""
        if (request.method, request.path) in self.FACT_OPERATIONS or self.spec is None:
            return []
        return self.spec.check(request)[1]

    def body_errors(self, request: Recorded) -> list[str]:
        """Where the body breaks the operation's schema (for products that validate bodies against it themselves)."""
        found = self.spec.find(request.method, request.path) if self.spec is not None else None
        return found[0].body_problems(request) if found is not None else []

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, self.error_body(status, message), headers or {})

    def not_found(self, request: Recorded) -> Reply:
        return self.error(404, "Not Found")

    # -- serving --------------------------------------------------------------------------------------

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = [key.fileobj for key, _ in selector.select()]
                if self._wake_reader in ready:
                    return
                self._server.handle_request()  # one connection, handled in its own thread

    def _answer(self, request: Recorded) -> Reply | None:
        """The reply to a request, or None to drop the connection without one."""
        if self._delay:
            time.sleep(self._delay)
        with self._lock:
            control = request.path.startswith(CONTROL_PREFIX)
            problems: list[str] = []
            if not control:
                self.requests.append(request)
                try:
                    problems = self.problems_of(request)
                except Exception:
                    problems = [f"{request.method} {request.path}: the spec check crashed:\n{traceback.format_exc()}"]
                self.violations.extend(problems)
            if self._drops > 0 and not control:
                self._drops -= 1
                return None
            failure = next((f for f in self._failures if f.times > 0 and f.method == request.method
                            and f.pattern.fullmatch(request.path)), None)
            if failure is not None:
                failure.times -= 1
                reply = self.error(failure.status, failure.message or _reason(failure.status))
            else:
                reply = self.dispatch(request, problems)
            request.status, request.response = reply.status, reply.body
            return reply

    def dispatch(self, request: Recorded, problems: list[str]) -> Reply:
        """The reply of the route the request matches; a product extends it with its middleware."""
        handler: Callable[[Call], Reply] | None = None
        for method, pattern, candidate in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                handler = candidate
                params = match.groupdict()
                break
        if handler is None:
            return self.not_found(request)
        try:
            return handler(Call(request, params, problems))
        except Exception:
            # A bug in the stand-in must fail the test that met it, not pass as a product error.
            self.violations.append(f"{request.method} {request.path}: the stand-in crashed:\n{traceback.format_exc()}")
            return self.error(500, "stand-in error")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one write: sent as two small segments, Nagle and the client's delayed ACK held
    # each answer back by 40 ms. handle_one_request() flushes after each request.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # the tests' output stays quiet
        return

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        standin: StandIn = self.server.standin  # type: ignore[attr-defined]
        body = self._read_body()
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = Recorded(self.command, split.path, dict(parse_qsl(split.query, keep_blank_values=True)), headers,
                           body, parsed)
        reply = standin._answer(request)
        if reply is None:
            self.close_connection = True  # no status line, no headers: the client sees the connection drop
            return
        self._send(reply)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        if reply.body is None:
            payload = b""
        elif isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if payload:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
