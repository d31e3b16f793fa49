"""Who is calling: the `x-api-key` header, checked against the named keys and Websoft9's key.

Named keys (`ahk_...`) are stored hashed and carry a role. Websoft9's key lives encrypted in
`config.ini` as `[api_key] key`, because its clients fetch it with `apphub getkey`; it is accepted
as an admin key (DESIGN §10). Both comparisons run in constant time.
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
from apphub.keys import WEBSOFT9_KEY, Role, has_role

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


def core_of(request: HTTPConnection) -> Core:
    core: Core = request.app.state.core
    return core


def authenticate(core: Core, presented: str | None) -> Principal:
    if not presented:
        raise Unauthenticated("No API Key provided")
    if presented.startswith("ahk_"):
        key = core.keys.verify(presented)
        if key is not None:
            return Principal(key.name, key.role, key.service)
        raise Unauthenticated("Invalid API Key")
    try:
        snapshot = core.config.last_good()
        legacy = snapshot.secret(*WEBSOFT9_KEY) if snapshot is not None else None
    except ApphubError:
        # A config.ini that does not parse, or a damaged key, accepts no Websoft9 key; and the
        # caller, not yet authenticated, must learn nothing about the file.
        legacy = None
    if legacy and hmac.compare_digest(legacy.reveal().encode(), presented.encode("utf-8", "replace")):
        return Principal(LEGACY_ACTOR, "admin")
    raise Unauthenticated("Invalid API Key")


OPEN_PATHS = frozenset({"/healthz"})
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
    """Checks `x-api-key` before routing and before the body is read.

    So a caller without a valid key gets 401 for anything but /healthz, and learns nothing else:
    not whether a route exists, nor whether its body would have parsed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope) if scope["type"] == "http" else HTTPConnection(scope)
        try:
            principal = authenticate(core_of(request), request.headers.get("x-api-key"))
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
        if principal is None:
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
