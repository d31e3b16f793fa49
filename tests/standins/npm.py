"""Nginx Proxy Manager stand-in: the first-run and user calls of NPM 2.15.1 (service-apis.md §3.3, §3.5).

Spec: `npm-openapi-v2.15.1-dereferenced.json` (OpenAPI 3.1), extract `tests/fixtures/standin-specs/npm.json`.
NPM validates request bodies against that same schema (ajv) and answers 400 when one does not fit, so the
stand-in does too. From 2.13.0 there is no default user: `POST /api/users` is open while no user exists
("setup mode"); `NpmStandIn(version=(2, 12, 0))` instead starts with `admin@example.com` / `changeme`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.standins.base import Call, Recorded, Reply, StandIn
from tests.standins.spec import Spec

DEFAULT_EMAIL = "admin@example.com"
DEFAULT_PASSWORD = "changeme"
# 2.13.0 introduced the setup wizard and dropped the default user.
FIRST_WITHOUT_DEFAULT_USER = (2, 13, 0)
PERMISSIONS = {"visibility": "all", "proxy_hosts": "manage", "redirection_hosts": "manage", "dead_hosts": "manage",
               "streams": "manage", "access_lists": "manage", "certificates": "manage"}
USER_FIELDS = ("id", "created_on", "modified_on", "is_disabled", "email", "name", "nickname", "avatar", "roles")
USER = r"/api/users/(?P<user>me|\d+)"


def sends_exact_bearer(request: Recorded) -> bool:
    # lib/express/jwt.js takes the token only after the exact word "Bearer " and ignores anything else, so
    # "bearer x" (legal for RFC 7235) is no token at all for NPM (service-apis.md §3.3).
    return re.fullmatch(r"Bearer \S+", request.headers.get("authorization", "")) is not None


SPEC = Spec("npm", scheme_checks={"bearerAuth": sends_exact_bearer})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jwt_like(user_id: int) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": "api", "attrs": {"id": user_id}, "scope": ["user"], "jti": secrets.token_hex(8)}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(32)}"


class NpmStandIn(StandIn):
    """Nginx Proxy Manager at `url` (the API under /api): setup mode, tokens, users, passwords."""

    ROUTES = [
        ("GET", r"/api/", "health"),
        ("GET", r"/api", "redirect_to_slash"),
        ("POST", r"/api/users", "create_user"),
        ("POST", r"/api/tokens", "request_token"),
        ("GET", USER, "get_user"),
        ("PUT", USER, "update_user"),
        ("PUT", USER + "/auth", "set_password"),
    ]
    # nginx in the image answers /api with a redirect to /api/ (service-apis.md §3.5); the spec has no /api.
    FACT_OPERATIONS = {("GET", "/api")}
    spec = SPEC

    def __init__(self, version: tuple[int, int, int] = (2, 15, 1)) -> None:
        super().__init__()  # serves from here on, but nobody knows the port before we return
        self.version = version
        self._users: list[dict[str, Any]] = []
        self._tokens: dict[str, int] = {}
        if version < FIRST_WITHOUT_DEFAULT_USER:
            self.add_user(DEFAULT_EMAIL, DEFAULT_PASSWORD)

    # -- test helpers ---------------------------------------------------------------------------------

    def add_user(self, email: str, password: str, name: str = "Administrator", nickname: str = "Admin",
                 roles: list[str] | None = None) -> dict[str, Any]:
        """A user as if made earlier (an admin unless `roles` says otherwise)."""
        digest = hashlib.md5(email.lower().strip().encode(), usedforsecurity=False).hexdigest()  # Gravatar's key
        with self._lock:
            now = _now()
            user = {"id": len(self._users) + 1, "created_on": now, "modified_on": now, "is_disabled": False,
                    "email": email.lower().strip(), "name": name, "nickname": nickname,
                    "avatar": f"//www.gravatar.com/avatar/{digest}?default=mm",
                    "roles": list(roles if roles is not None else ["admin"]), "password": password}
            self._users.append(user)
            return dict(user)

    @property
    def users(self) -> list[dict[str, Any]]:
        """Every user, with its current password under "password" (NPM itself would never show it)."""
        with self._lock:
            return [dict(user) for user in self._users]

    @property
    def token_count(self) -> int:
        return len(self._tokens)

    # -- the product ------------------------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": status, "message": message}}

    def problems_of(self, request: Recorded) -> list[str]:
        # Setup mode: while no user exists, POST /api/users is open to anyone, whatever the spec's security says.
        if request.method == "POST" and request.path == "/api/users" and not self._users:
            return SPEC.check(request, check_auth=False)[1]
        return super().problems_of(request)

    def health(self, call: Call) -> Reply:
        major, minor, revision = self.version
        return Reply(200, {"status": "OK", "setup": bool(self._users),
                           "version": {"major": major, "minor": minor, "revision": revision}})

    def redirect_to_slash(self, call: Call) -> Reply:
        return Reply(302, b"", {"Location": "/api/"}, content_type="text/html")

    def create_user(self, call: Call) -> Reply:
        body = call.request.json if isinstance(call.request.json, dict) else {}
        if self._users:
            doer = self._bearer_user(call.request)
            if doer is None or "admin" not in doer["roles"]:
                return self.error(403, "Permission Denied")
        else:
            # routes/users.js: in setup mode the first user is forced to be an enabled admin.
            body = {**body, "is_disabled": False, "roles": sorted({*body.get("roles", []), "admin"})}
        invalid = self._schema_error(call.request)
        if invalid:
            return invalid
        email = str(body["email"]).lower().strip()
        if any(user["email"] == email for user in self._users):
            return self.error(400, f"Email address already in use - {email}")
        auth = body.get("auth") or {}
        self.add_user(email, str(auth.get("secret", "")), body["name"], body["nickname"], body.get("roles", []))
        if body.get("is_disabled"):
            self._users[-1]["is_disabled"] = True
        return Reply(201, {**self._public(self._users[-1]), "permissions": dict(PERMISSIONS)})

    def request_token(self, call: Call) -> Reply:
        invalid = self._schema_error(call.request)
        if invalid:
            return invalid
        body = call.request.json
        email = str(body["identity"]).lower().strip()
        user = next((u for u in self._users if u["email"] == email and not u["is_disabled"]), None)
        if user is None or not user["password"] or user["password"] != body["secret"]:
            return self.error(400, "Invalid email or password")
        token = _jwt_like(user["id"])
        self._tokens[token] = user["id"]
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return Reply(200, {"token": token, "expires": expires})

    def get_user(self, call: Call) -> Reply:
        found = self._doer_and_target(call)
        return found if isinstance(found, Reply) else Reply(200, self._public(found[1]))

    def update_user(self, call: Call) -> Reply:
        found = self._doer_and_target(call)
        if isinstance(found, Reply):
            return found
        target = found[1]
        invalid = self._schema_error(call.request)
        if invalid:
            return invalid
        changes = dict(call.request.json)
        if "email" in changes:
            changes["email"] = str(changes["email"]).lower().strip()
            if any(u["email"] == changes["email"] and u is not target for u in self._users):
                return self.error(400, f"Email address already in use - {changes['email']}")
        target.update(changes, modified_on=_now())
        return Reply(200, self._public(target))

    def set_password(self, call: Call) -> Reply:
        found = self._doer_and_target(call)
        if isinstance(found, Reply):
            return found
        doer, target = found
        invalid = self._schema_error(call.request)
        if invalid:
            return invalid
        body = call.request.json
        # internal/user.js setPassword: changing your own password needs the current one, an admin changing
        # someone else's does not.
        if target is doer and target["password"]:
            if not body.get("current"):
                return self.error(400, "Current password was not supplied")
            if body["current"] != target["password"]:
                return self.error(400, "Invalid email or password")
        target.update(password=body["secret"], modified_on=_now())
        return Reply(200, True)

    # -- helpers ----------------------------------------------------------------------------------------

    def _schema_error(self, request: Recorded) -> Reply | None:
        errors = self.body_errors(request)
        return self.error(400, f"data/{errors[0]}") if errors else None

    def _bearer_user(self, request: Recorded) -> dict[str, Any] | None:
        if not sends_exact_bearer(request):
            return None
        user_id = self._tokens.get(request.headers["authorization"][len("Bearer "):])
        return next((u for u in self._users if u["id"] == user_id and not u["is_disabled"]), None)

    def _doer_and_target(self, call: Call) -> tuple[dict[str, Any], dict[str, Any]] | Reply:
        """The caller and the user of /users/{id|me} it names, or the refusal."""
        doer = self._bearer_user(call.request)
        if doer is None:
            return self.error(403, "Permission Denied")
        wanted = call.params["user"]
        target = doer if wanted == "me" else next((u for u in self._users if u["id"] == int(wanted)), None)
        if target is None:
            return self.error(404, f"Not Found - {wanted}")
        if target is not doer and "admin" not in doer["roles"]:
            return self.error(403, "Permission Denied")
        return doer, target

    @staticmethod
    def _public(user: dict[str, Any]) -> dict[str, Any]:
        return {name: user[name] for name in USER_FIELDS}
