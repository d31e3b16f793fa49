"""Who is calling: the `x-api-key` header, checked against the named keys and Websoft9's key, or
the web console's session cookie, exchanged once for such a key.

Named keys (`ahk_...`) are stored hashed and carry a role. Websoft9's key lives encrypted in
`config.ini` as `[api_key] key`, because its clients fetch it with `apphub getkey`; it is accepted
as an admin key (DESIGN §10). Both comparisons run in constant time. A session holds for as long
as the key it was exchanged for does, and every request with it must carry its token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from apphub.api.problems import apphub_error_response
from apphub.core import Core
from apphub.errors import ApphubError, AuthError, FieldError, Forbidden, Unauthenticated
from apphub.keys import WEBSOFT9_KEY, Role, has_role, hash_key
from apphub.web.sessions import COOKIE_NAME, CSRF_HEADER, Session, SessionStore

LEGACY_ACTOR = "api_key"

# Declared for the OpenAPI document (the "Authorize" button); the check itself is below.
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="An apphub API key")


@dataclass(frozen=True)
class Principal:
    """The caller: the key's name (the audit actor), its role, and the one service it may read
    when it is a service's key."""

    name: str
    role: Role
    service: str | None = None
    session: Session | None = None  # signed in to the web console with a cookie, not a header


def core_of(request: HTTPConnection) -> Core:
    core: Core = request.app.state.core
    return core


def _websoft9_key(core: Core) -> str | None:
    """The plaintext of Websoft9's key as config.ini holds it now, or None."""
    try:
        snapshot = core.config.last_good()
        legacy = snapshot.secret(*WEBSOFT9_KEY) if snapshot is not None else None
    except ApphubError:
        # A config.ini that does not parse, or a damaged key, accepts no Websoft9 key; and the
        # caller, not yet authenticated, must learn nothing about the file.
        return None
    return legacy.reveal() if legacy else None


def authenticate(core: Core, presented: str | None) -> Principal:
    if not presented:
        raise Unauthenticated("No API Key provided")
    if presented.startswith("ahk_"):
        key = core.keys.verify(presented)
        if key is not None:
            return Principal(key.name, key.role, key.service)
        raise Unauthenticated("Invalid API Key")
    legacy = _websoft9_key(core)
    if legacy and hmac.compare_digest(legacy.encode(), presented.encode("utf-8", "replace")):
        return Principal(LEGACY_ACTOR, "admin")
    raise Unauthenticated("Invalid API Key")


def key_still_valid(core: Core, session: Session) -> bool:
    """Whether the key a session was opened with still opens the API: not revoked, and for
    Websoft9's key, not replaced since (`apphub genkey`)."""
    if session.key_name == LEGACY_ACTOR:
        legacy = _websoft9_key(core)
        return legacy is not None and hmac.compare_digest(hash_key(legacy), session.key_hash)
    key = core.keys.by_hash(session.key_hash)
    return key is not None and key.service is None and key.name == session.key_name


# EventSource cannot send a header: the status stream takes the session's token in its query.
STREAM_PATH = "/api/v1/sync/events"
TOKEN_PARAMETER = "csrf_token"  # noqa: S105 (the name of a query parameter)


def session_principal(sessions: SessionStore, core: Core, cookie: str, token: str | None) -> Principal:
    """The caller of a request that carries the console's cookie, or AuthError: the session
    ended (expired, signed out, its key revoked), or the request lacks the session's token.

    Every request needs the token, reads too: a browser sends a cookie to every site of the host
    name whatever its port, so another web app on the same host (Gitea, Portainer...) gets the
    cookie. It never gets the token, which the page keeps in its own origin's storage."""
    session = sessions.find(cookie)
    if session is None or not key_still_valid(core, session):
        raise Unauthenticated("the console session has ended (expired, signed out, or its key was revoked): "
                              "sign in again")
    if not session.csrf_matches(token):
        raise Forbidden(f"a request with the console's session cookie needs the session's {CSRF_HEADER} header "
                        "(the token the sign-in answered)")
    return Principal(session.key_name, session.role, session=session)


def caller_of(request: HTTPConnection) -> Principal:
    """Who sends `request`: its `x-api-key`, or else the console's cookie and token (AuthError if neither)."""
    presented = request.headers.get("x-api-key")
    cookie = request.cookies.get(COOKIE_NAME)
    if presented is None and cookie:
        token = request.headers.get(CSRF_HEADER)
        if token is None and request.url.path == STREAM_PATH:
            token = request.query_params.get(TOKEN_PARAMETER)
        return session_principal(request.app.state.sessions, core_of(request), cookie, token)
    return authenticate(core_of(request), presented)


def still_authenticated(request: HTTPConnection) -> bool:
    """Whether what authenticated `request` still does (a long request, the status stream, asks
    again: a session signed out or a key revoked since must not go on being served)."""
    try:
        caller_of(request)
    except AuthError:
        return False
    return True


OPEN_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
# The console's files (nothing secret in them: the page asks the API for everything) and its sign-in.
OPEN_PREFIXES = ("/assets/",)
SIGN_IN = ("POST", "/api/v1/session")


def is_open(method: str, path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or (method, path) == SIGN_IN


# What a service's key may call: its own configuration bundle and its dependencies' health.
SERVICE_KEY_ROUTES = ("config", "dependencies")


def check_service_key(principal: Principal, method: str, path: str) -> None:
    """A service's key reads that service's routes and nothing else (Forbidden naming both)."""
    if principal.service is None:
        return
    allowed = {f"/api/v1/services/{principal.service}/{route}" for route in SERVICE_KEY_ROUTES}
    if method not in ("GET", "HEAD") or path not in allowed:
        raise Forbidden(f"the key '{principal.name}' belongs to the service '{principal.service}': it may only "
                        f"GET /api/v1/services/{principal.service}/config and /dependencies")


class AuthenticationMiddleware:
    """Checks `x-api-key` (or else the console's session cookie) before routing and before the
    body is read.

    So a caller without a valid key gets 401 for anything but /healthz, the console's files and
    its sign-in, and learns nothing else: not whether a route exists, nor whether its body would
    have parsed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or is_open(scope.get("method", "GET"), scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        request = Request(scope) if scope["type"] == "http" else HTTPConnection(scope)
        try:
            principal = caller_of(request)
            check_service_key(principal, scope.get("method", "GET"), scope["path"])
        except AuthError as exc:
            if scope["type"] == "websocket":  # no route serves one yet; a future one is closed too
                await send({"type": "websocket.close", "code": 1008, "reason": str(exc)})
            else:
                assert isinstance(request, Request)
                await apphub_error_response(request, exc)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["actor"] = principal.name
        await self.app(scope, receive, send)


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets a request through when its key has at least `role`."""

    # The header parameter is there for the OpenAPI document; the middleware has checked it.
    async def dependency(request: Request, presented: str | None = Security(api_key_header)) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # the sign-in route has no principal yet: it needs none
            principal = authenticate(core_of(request), presented)
        if not has_role(principal.role, role):
            raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; this needs '{role}'")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


def check_may_change(principal: Principal, sections: Mapping[str, Iterable[str]]) -> None:
    """Setting Websoft9's key is setting an admin credential: only an admin may do it."""
    section, key = WEBSOFT9_KEY
    if principal.role != "admin" and key in sections.get(section, ()):
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; "
                        f"changing [{section}] {key} (an admin credential) needs 'admin'")


def check_may_compare_secrets(principal: Principal, is_secret: Callable[[str, str], bool],
                              sections: Mapping[str, Iterable[str]], what: str) -> None:
    """What judges or previews a proposal without writing it answers differently when a proposed
    secret equals the stored one (nothing to change, a version that does not move, a `distinct`
    warning): an oracle for guessing secrets, with nothing written nor audited. Only for an admin,
    who may read the secrets anyway."""
    secrets = [f"[{section}] {key}" for section, keys in sections.items() for key in keys if is_secret(section, key)]
    if secrets and principal.role != "admin":
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; {what} with secret values "
                        f"({', '.join(secrets)}) needs 'admin'")


def findings_shown_to(principal: Principal, findings: list[FieldError],
                      is_secret: Callable[[FieldError], bool]) -> list[FieldError]:
    """The findings as `principal` may read them: about a secret, for anyone but an admin, only
    where it is and how grave, not what it says (that two passwords are equal, that one is weak)."""
    if principal.role == "admin":
        return findings
    return [FieldError(finding.section, finding.key, "secret", "a problem with this secret (an admin key is told "
                       "what)", None, finding.file, finding.line, finding.severity) if is_secret(finding) else finding
            for finding in findings]


require_read = require("read")
require_write = require("write")
require_admin = require("admin")
