"""Nginx Proxy Manager: its first admin, that admin's email and password, a token (service-apis.md §3).

Since 2.13 a fresh NPM has no user at all: while `GET /api/` says `"setup": false`, anyone may
`POST /api/users` once, and that user becomes the admin. Before 2.13 a fresh NPM had
`admin@example.com` / `changeme`; apphub makes that account the configured one. The account is
then proved by logging in with it, as every later run does.
"""

from __future__ import annotations

from typing import Any

from apphub.errors import NeedsOperator, ServiceError, ServiceRefused
from apphub.services.base import Check, CheckTimer, ProductContext
from apphub.services.http import ProductClient
from apphub.services.steps import Done, Step

LEGACY_ADMIN = ("admin@example.com", "changeme")  # NPM 2.12 and older, on a fresh install


class NginxProxyManager:
    name = "nginx_proxy_manager"
    title = "Nginx Proxy Manager"

    def __init__(self, context: ProductContext) -> None:
        self.context = context
        self.email = context.text("user_name")
        self.password = context.text("user_pwd")
        self.setup_done: bool | None = None
        self.token: str | None = None

    def secrets(self) -> list[str]:
        return [secret for secret in (self.password, self.token, LEGACY_ADMIN[1]) if secret]

    def _client(self) -> ProductClient:
        return self.context.client(self.context.text("base_url"), secrets=self.secrets())

    def steps(self) -> list[Step]:
        return [
            Step("reach", "GET /api/ answers with status OK", self._reach),
            Step("admin", "the configured email and password are NPM's admin (created on a fresh install)",
                 self._admin),
            Step("token", "log in with them and obtain a token", self._login),
        ]

    def _reach(self) -> Done:
        with self._client() as client:
            status = self._status(client)
        self.setup_done = bool(status.get("setup"))
        state = "has its admin" if self.setup_done else "has no user yet (setup mode)"
        return Done(False, f"Nginx Proxy Manager {_version(status)} answers and {state}")

    def _admin(self) -> Done:
        with self._client() as client:
            if not self._status(client).get("setup"):
                client.call("POST", "/users", what="creating the first admin", expect=(201,), json_body={
                    "name": "Administrator", "nickname": self.context.text("nike_name") or "Admin",
                    "email": self.email, "roles": ["admin"], "is_disabled": False,
                    "auth": {"type": "password", "secret": self.password},
                })
                return Done(True, f"created the first admin {self.email}")
            if self._token(client, self.email, self.password) is not None:
                return Done(False, f"the admin {self.email} exists and its password is the configured one")
            legacy = self._token(client, *LEGACY_ADMIN)
            if legacy is None:
                raise ServiceRefused(
                    f"nginx_proxy_manager: neither {self.email} with the configured password nor NPM's old default "
                    f"{LEGACY_ADMIN[0]} can log in: set [nginx_proxy_manager] user_name and user_pwd to an admin "
                    "account of this NPM (apphub setconfig ...)", 400)
            self._adopt_legacy_admin(client, legacy)
        return Done(True, f"made NPM's default admin {LEGACY_ADMIN[0]} into {self.email} with the configured password")

    def _adopt_legacy_admin(self, client: ProductClient, token: str) -> None:
        bearer = {"Authorization": f"Bearer {token}"}
        me = client.json(client.call("GET", "/users/me", what="reading the default admin", headers=bearer),
                         what="reading the default admin")
        user = f"/users/{me['id']}"
        client.call("PUT", user, what="setting the admin's email", headers=bearer, json_body={
            "email": self.email, "nickname": self.context.text("nike_name") or "Admin"})
        client.call("PUT", f"{user}/auth", what="setting the admin's password", headers=bearer, json_body={
            "type": "password", "current": LEGACY_ADMIN[1], "secret": self.password})

    def _login(self) -> Done:
        with self._client() as client:
            token = self._token(client, self.email, self.password)
            if token is None:
                raise ServiceRefused(f"nginx_proxy_manager: {self.email} cannot log in with the configured password",
                                     400)
            bearer = {"Authorization": f"Bearer {token}"}
            me = client.json(client.call("GET", "/users/me", what="reading the logged-in user", headers=bearer),
                             what="reading the logged-in user")
        if "admin" not in (me.get("roles") or []):
            raise ServiceRefused(f"nginx_proxy_manager: {self.email} logs in but is not an admin", 403)
        return Done(False, f"logged in as {self.email} (admin); token obtained")

    def _status(self, client: ProductClient) -> dict[str, Any]:
        # The trailing slash matters: nginx answers /api with a redirect (service-apis.md §3.5).
        response = client.call("GET", "/", what="reading its status")
        status = client.json(response, what="reading its status")
        if not isinstance(status, dict) or status.get("status") != "OK":
            raise ServiceRefused(f"nginx_proxy_manager: GET /api/ did not say status OK: {status!r}"[:300], 200)
        return status

    def _token(self, client: ProductClient, identity: str, secret: str) -> str | None:
        """A token for these credentials, or None when NPM says they are wrong."""
        try:
            response = client.call("POST", "/tokens", what=f"logging in as {identity}",
                                   json_body={"identity": identity, "secret": secret})
        except ServiceRefused as exc:
            if exc.status in (400, 401, 403):
                return None
            raise
        body = client.json(response, what="logging in")
        if body.get("requires_2fa"):
            raise NeedsOperator(f"nginx_proxy_manager: {identity} has two-factor authentication on; apphub cannot "
                                "log in with it: turn it off for this account, or give apphub another admin")
        token = str(body.get("token") or "")
        if not token:
            raise ServiceRefused("nginx_proxy_manager: POST /api/tokens answered without a token", 200)
        client.add_secret(token)
        if identity == self.email:
            self.token = token
        return token

    def check(self) -> Check:
        timer, version = CheckTimer(self.name), None
        try:
            with self._client() as client:
                status = self._status(client)
                version = _version(status)
                if not status.get("setup"):
                    return timer.result("unhealthy", version=version, authenticated=False,
                                        reason="it has no admin yet (apphub init-services creates it)")
                if self._token(client, self.email, self.password) is None:
                    return timer.result("unhealthy", version=version, authenticated=False,
                                        reason=f"{self.email} cannot log in with the configured password")
        except NeedsOperator as exc:
            return timer.result("unhealthy", version=version, authenticated=False, reason=str(exc))
        except ServiceError as exc:
            return timer.failed(exc, version)
        return timer.result("healthy", version=version, authenticated=True)


def _version(status: dict[str, Any]) -> str:
    found = status.get("version")
    if isinstance(found, dict):
        return ".".join(str(found.get(part, "?")) for part in ("major", "minor", "revision"))
    return "unknown"

