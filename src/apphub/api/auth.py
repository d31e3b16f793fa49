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

from apphub.api.keys import Role, has_role
from apphub.core import Core
from apphub.errors import Forbidden, SecretError, Unauthenticated

LEGACY_KEY = ("api_key", "key")
LEGACY_ACTOR = "api_key"

# Declared for the OpenAPI document (the "Authorize" button); the check itself is below.
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="An apphub API key")


@dataclass(frozen=True)
class Principal:
    """The caller: the key's name (the audit actor) and its role."""

    name: str
    role: Role


def core_of(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


def authenticate(core: Core, presented: str | None) -> Principal:
    if not presented:
        raise Unauthenticated("No API Key provided")
    if presented.startswith("ahk_"):
        key = core.keys.verify(presented)
        if key is not None:
            return Principal(key.name, key.role)
        raise Unauthenticated("Invalid API Key")
    try:
        legacy = core.config.snapshot().secret_values.get(LEGACY_KEY)
    except SecretError:
        legacy = None
    if legacy and hmac.compare_digest(legacy.reveal().encode(), presented.encode("utf-8", "replace")):
        return Principal(LEGACY_ACTOR, "admin")
    raise Unauthenticated("Invalid API Key")


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that lets a request through when its key has at least `role`."""

    async def dependency(request: Request, presented: str | None = Security(api_key_header)) -> Principal:
        principal = authenticate(core_of(request), presented)
        request.state.actor = principal.name
        if not has_role(principal.role, role):
            raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; this needs '{role}'")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


def check_may_change(principal: Principal, sections: Mapping[str, Iterable[str]]) -> None:
    """Setting Websoft9's key is setting an admin credential: only an admin may do it."""
    section, key = LEGACY_KEY
    if principal.role != "admin" and key in sections.get(section, ()):
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; "
                        f"changing [{section}] {key} (an admin credential) needs 'admin'")


require_read = require("read")
require_write = require("write")
require_admin = require("admin")
