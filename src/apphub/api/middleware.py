"""Pure ASGI middleware: a request id on every request, a body size limit, an access log that
never writes a secret (Websoft9's legacy PUT carries the value in the query string), and the refusal
of a path whose names hold an encoded slash.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apphub.api.problems import LEGACY_PREFIX, legacy_error, problem
from apphub.store.secrets import MASK

access_logger = logging.getLogger("apphub.access")

MAX_BODY_BYTES = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Query parameters whose values are never logged.
_REDACTED_PARAMETERS = frozenset({"value", "x-api-key", "api_key", "key_value", "csrf_token"})


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-ID when it is sane), logs it when done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                state = scope.get("state", {})
                access_logger.info(
                    '%s "%s %s" %d %.1fms actor=%s request_id=%s',
                    _client(scope),
                    scope["method"],
                    redacted_target(scope),
                    status,
                    (time.perf_counter() - started) * 1000,
                    state.get("actor", "-"),
                    request_id,
                )


class BodyLimitMiddleware:
    """Refuses a request body over `limit` bytes with 413, before it is read into memory."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, send)
            return
        if declared is None and _header(scope, b"transfer-encoding") is not None:
            # A chunked body has no Content-Length. Read it all (up to the limit) before the route
            # runs, so that a route that never reads its body (Websoft9's PUT) is refused as well.
            chunks: list[bytes] = []
            received = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                received += len(message.get("body", b""))
                if received > self.limit:
                    await self._refuse(scope, send)
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"the request body is larger than {self.limit} bytes"
        path = scope.get("path", "")
        if path == "/api/settings" or path.startswith("/api/settings/"):
            body: dict[str, Any] = {"message": "Invalid Request", "details": detail}
            media_type = b"application/json"
        else:
            body = {"type": "urn:apphub:problem:body-too-large", "title": "Body too large", "status": 413,
                    "detail": detail}
            media_type = b"application/problem+json"
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", media_type), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class EncodedSlashMiddleware:
    """Answers a path with an encoded slash (`%2F`) in one of its segments before routing: 404 naming it.

    Routing reads the decoded path, where `a%2Fb` is two segments: `PUT /api/v1/settings/%2F` was
    redirected to the batch route, and `DELETE /api/v1/settings/gitea%2Fuser_email` would remove a
    key the client never named. No section or key name holds a `/` (validate.NAME_PATTERN), so no
    route serves such a path. Websoft9's routes answer as Websoft9 does for a section it lacks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = _encoded_slash_segment(scope) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(LEGACY_PREFIX + "/"):
            response = legacy_error(400, "Invalid Request", f"Section:{name} does not exist")
        else:
            target = scope.get("raw_path", b"").decode("latin-1")
            response = problem(404, "Not Found", f"no route {scope['method']} {target}: {name!r} is not a section "
                               "or key name (it holds an encoded '/', %2F, and no name does)",
                               slug="not-found", instance=target, request_id=scope.get("state", {}).get("request_id"))
        await response(scope, receive, send)


def _encoded_slash_segment(scope: Scope) -> str | None:
    """The first segment of the request path that holds `%2F`, decoded; None when none does."""
    raw_path: bytes = scope.get("raw_path") or b""
    if b"%2f" not in raw_path.lower():
        return None
    for segment in raw_path.decode("latin-1").split("/"):
        if "%2f" in segment.lower():
            return unquote(segment)
    return None


def redacted_target(scope: Scope) -> str:
    """The request path and query for a log line, with secret-bearing parameters masked."""
    path: str = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return path
    pairs = [(name, MASK if name.lower() in _REDACTED_PARAMETERS else value)
             for name, value in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='*')}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
