"""Portainer: its admin, a login, the local Docker environment registered once (service-apis.md §2).

A fresh Portainer takes its admin from `POST /api/users/admin/init`, within 5 minutes of its
start; after that it disables itself (every call answers 303 `redirect-reason: AdminInitTimeout`)
until it is restarted. 2.43 and later also want the setup token their log prints at start, in
`X-Setup-Token`. Portainer has no configuration file: everything here is its API.
"""

from __future__ import annotations

from typing import Any

import httpx

from apphub.errors import NeedsOperator, ServiceError, ServiceRefused
from apphub.services.base import Check, CheckTimer, ProductContext
from apphub.services.http import ProductClient
from apphub.services.steps import Done, Step

LOCAL_DOCKER = 1  # EndpointCreationType and Endpoint.Type of a local Docker environment
ENVIRONMENT_NAME = "local"


class Portainer:
    name = "portainer"
    title = "Portainer"

    def __init__(self, context: ProductContext) -> None:
        self.context = context
        self.user = context.text("user_name")
        self.password = context.text("user_pwd")
        self.setup_token = context.text("setup_token")
        self.jwt: str | None = None

    def secrets(self) -> list[str]:
        return [secret for secret in (self.password, self.setup_token, self.jwt) if secret]

    def _client(self) -> ProductClient:
        return self.context.client(self.context.text("base_url"), secrets=self.secrets())

    def steps(self) -> list[Step]:
        return [
            Step("reach", "GET /api/system/status answers with its version", self._reach),
            Step("admin", "the configured admin exists (created while Portainer allows it)", self._admin),
            Step("login", "log in as that admin", self._login),
            Step("environment", "the local Docker environment is registered", self._environment),
        ]

    def _reach(self) -> Done:
        with self._client() as client:
            version = self._version(client)
        return Done(False, f"Portainer {version} answers")

    def _admin(self) -> Done:
        with self._client() as client:
            check = client.call("GET", "/users/admin/check", what="asking whether an admin exists",
                                expect=(204, 404, 303))
            self._not_timed_out(check)
            if check.status_code == 204:
                return Done(False, "an admin exists")
            headers = {"X-Setup-Token": self.setup_token} if self.setup_token else None
            try:
                created = client.call("POST", "/users/admin/init", what="creating the admin", headers=headers,
                                      json_body={"Username": self.user, "Password": self.password},
                                      expect=(200, 409))
            except ServiceRefused as exc:
                if exc.status == 403:
                    raise NeedsOperator(
                        "portainer: it asks for the setup token it printed in its log at start (Portainer 2.43+): "
                        "set it with apphub setconfig --section portainer --key setup_token --value <token>, then "
                        "apphub init-services --service portainer") from None
                raise
        if created.status_code == 409:  # another client was quicker, between the check and the init
            return Done(False, "an admin exists (Portainer says it is already initialised)")
        return Done(True, f"created the admin {self.user}")

    def _login(self) -> Done:
        with self._client() as client:
            self.jwt = self._jwt(client)
        if self.jwt is None:
            raise ServiceRefused(f"portainer: {self.user} cannot log in with the configured password "
                                 "(the admin was created with another one)", 422)
        return Done(False, f"logged in as {self.user}")

    def _environment(self) -> Done:
        if self.jwt is None:
            self._login()
        bearer = {"Authorization": f"Bearer {self.jwt}"}
        with self._client() as client:
            listed = client.json(client.call("GET", "/endpoints", what="listing the environments", headers=bearer),
                                 what="listing the environments")
            # Type 1 is any Docker API environment; the local one is the engine's socket (or pipe).
            local = [endpoint for endpoint in listed if endpoint.get("Type") == LOCAL_DOCKER
                     and str(endpoint.get("URL", "")).startswith(("unix://", "npipe://"))]
            if local:
                return Done(False, f"the local Docker environment {local[0].get('Name')!r} is registered")
            form = {"Name": (None, ENVIRONMENT_NAME), "EndpointCreationType": (None, str(LOCAL_DOCKER))}
            client.call("POST", "/endpoints", what="registering the local Docker environment", headers=bearer,
                        files=form)
        return Done(True, f"registered the local Docker environment {ENVIRONMENT_NAME!r}")

    def _version(self, client: ProductClient) -> str:
        response = client.call("GET", "/system/status", what="reading its status", expect=(200, 303))
        self._not_timed_out(response)
        status: dict[str, Any] = client.json(response, what="reading its status")
        return str(status.get("Version") or status.get("version") or "unknown")

    def _jwt(self, client: ProductClient) -> str | None:
        try:
            response = client.call("POST", "/auth", what=f"logging in as {self.user}",
                                   json_body={"Username": self.user, "Password": self.password})
        except ServiceRefused as exc:
            if exc.status == 422:
                return None
            raise
        jwt = str(client.json(response, what="logging in").get("jwt") or "")
        client.add_secret(jwt)
        return jwt or None

    @staticmethod
    def _not_timed_out(response: httpx.Response) -> None:
        if response.status_code == 303:
            raise NeedsOperator(
                "portainer: its 5 minutes for creating the first admin have passed "
                f"(redirect-reason: {response.headers.get('redirect-reason', '?')}); restart its container, then "
                "apphub init-services --service portainer within 5 minutes")

    def check(self) -> Check:
        timer, version = CheckTimer(self.name), None
        try:
            with self._client() as client:
                version = self._version(client)
                authenticated = self._jwt(client) is not None
        except NeedsOperator as exc:
            return timer.result("unhealthy", version=version, authenticated=False, reason=str(exc))
        except ServiceError as exc:
            return timer.failed(exc, version)
        if not authenticated:
            return timer.result("unhealthy", version=version, authenticated=False,
                                reason=f"{self.user} cannot log in with the configured password")
        return timer.result("healthy", version=version, authenticated=True)
