"""Gitea: the configured admin, apphub's API token, the history repository, a webhook (service-apis.md §1).

Gitea has no API or environment variable that creates its first admin once the installer is
locked: its own CLI does (`gitea admin user create`), run as the `git` user in its container,
which apphub can do through the engine's exec. Without a container to run it in, the step says
so and shows the one command that does it (the password comes from `apphub getconfig`, never
printed). A token can only be created with HTTP Basic auth; its plaintext is shown once, so it is
stored at once in config.ini as a secret, and a token of the same name that apphub lost is
replaced. The repository is created empty: apphub pushes its own history into it.
"""

from __future__ import annotations

import secrets
import shlex
from typing import Any

from apphub.errors import ApphubError, NeedsOperator, ServiceError, ServiceRefused
from apphub.services.base import Check, CheckTimer, ProductContext, web_root
from apphub.services.http import ProductClient, mask
from apphub.services.steps import Done, Step

TOKEN_NAME = "apphub"  # noqa: S105 - the token's name in Gitea, not a secret
# What apphub's token does: create and read its repository and hooks (repository), read the
# user and create a repository of its own (user). Nothing on the site's administration.
TOKEN_SCOPES = ["write:repository", "write:user"]
API_SUFFIX = "/api/v1"


class Gitea:
    name = "gitea"
    title = "Gitea"

    def __init__(self, context: ProductContext) -> None:
        self.context = context
        self.user = context.text("user_name")
        self.password = context.text("user_pwd")
        self.token = context.text("api_token")

    def secrets(self) -> list[str]:
        return [secret for secret in (self.password, self.token, self.context.text("webhook_secret")) if secret]

    def _client(self, base: str | None = None) -> ProductClient:
        return self.context.client(base or self.context.text("base_url"), secrets=self.secrets())

    @property
    def _basic(self) -> tuple[str, str]:
        return (self.user, self.password)

    @property
    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def steps(self) -> list[Step]:
        return [
            Step("reach", "GET /api/healthz passes and the API tells its version", self._reach),
            Step("admin", "the configured admin exists (created with Gitea's CLI in its container)", self._admin),
            Step("token", "apphub has an API token of that admin", self._token),
            Step("repository", "the repository for the configuration history exists", self._repository),
            Step("webhook", "the configured webhook is on that repository and active", self._webhook),
        ]

    def _reach(self) -> Done:
        with self._client(web_root(self.context.text("base_url"), API_SUFFIX)) as client:
            health = self._health(client)
        with self._client() as client:
            version = self._version(client)
        return Done(False, f"Gitea {version} answers; its health check says {health}")

    def _admin(self) -> Done:
        with self._client() as client:
            user = self._user_by_password(client)
            if user is not None:
                if not user.get("is_admin"):
                    raise ServiceRefused(f"gitea: {self.user} exists but is not a site admin; make it one "
                                         "(Site Administration > User Accounts) or configure another user", 403)
                return Done(False, f"the admin {self.user} exists and its password is the configured one")
            return self._create_admin()

    def _create_admin(self) -> Done:
        # The password reaches the CLI through the exec's environment: an argv is in the engine's
        # events and in the container's process list.
        command = ["sh", "-c", 'exec gitea admin user create --admin --username "$1" --password "$APPHUB_PASSWORD" '
                   '--email "$2" --must-change-password=false', "gitea-admin", self.user,
                   self.context.text("user_email")]
        shown = ("gitea admin user create --admin --username " + shlex.quote(self.user) + " --password "
                 "\"$(apphub getconfig --section gitea --key user_pwd)\" --email "
                 + shlex.quote(self.context.text("user_email")) + " --must-change-password=false")
        container = str(self.context.system.get("gitea_container") or "")
        by_hand = f"docker exec -u git {container or '<gitea container>'} {shown}"
        if not container or self.context.run_in_container is None:
            raise NeedsOperator("gitea: Gitea has no API that creates its first admin, and no container to run its "
                                f"CLI in is configured (system.ini [services] gitea_container); run: {by_hand}")
        try:
            exit_code, output = self.context.run_in_container(container, command, user="git", shown=shown,
                                                              environment={"APPHUB_PASSWORD": self.password})
        except ApphubError as exc:
            raise NeedsOperator(f"gitea: its CLI could not be run in the container {container} ({exc}); "
                                f"run: {by_hand}") from None
        if exit_code == 0:
            return Done(True, f"created the admin {self.user} with Gitea's CLI in the container {container}")
        if "already exists" in output:
            raise ServiceRefused(
                f"gitea: the user {self.user} exists, but the configured password is not its password; set it with "
                f"docker exec -u git {container} gitea admin user change-password --username {shlex.quote(self.user)} "
                "--password \"$(apphub getconfig --section gitea --key user_pwd)\" --must-change-password=false", 409)
        said = mask(output.strip(), self.secrets())[-300:]  # masked whole, then shortened
        raise ServiceRefused(f"gitea: `{shown}` in the container {container} exited with {exit_code}: {said}", 500)

    def _token(self) -> Done:
        with self._client() as client:
            if self.token and self._token_works(client):
                return Done(False, f"the token in config.ini works for {self.user}")
            path = f"/users/{self.user}/tokens"
            body = {"name": TOKEN_NAME, "scopes": TOKEN_SCOPES}
            try:
                created = client.call("POST", path, what="creating apphub's token", auth=self._basic,
                                      expect=(201,), json_body=body)
            except ServiceRefused as exc:
                if exc.status != 400 or "used already" not in str(exc):
                    raise
                # A token named `apphub` whose plaintext is lost (Gitea shows it once): replace it.
                client.call("DELETE", f"{path}/{TOKEN_NAME}", what="deleting the lost token", auth=self._basic,
                            expect=(204,))
                created = client.call("POST", path, what="creating apphub's token", auth=self._basic,
                                      expect=(201,), json_body=body)
            token = str(client.json(created, what="creating apphub's token").get("sha1") or "")
        if not token:
            raise ServiceRefused("gitea: the created token came back without its sha1", 201)
        self.token = token
        self.context.save("config", {"gitea.api_token": token})
        if self._history_is_ours():  # the push used the token just replaced
            self.context.save("system", {"history.remote_token": token})
        return Done(True, f"created the token {TOKEN_NAME!r} ({', '.join(TOKEN_SCOPES)}) and stored it in "
                          "config.ini [gitea] api_token")

    def _repository(self) -> Done:
        repo = self.context.text("history_repo")
        with self._client() as client:
            found = client.call("GET", f"/repos/{self.user}/{repo}", what="looking up the history repository",
                                headers=self._bearer, expect=(200, 404))
            created = found.status_code == 404
            if created:
                client.call("POST", "/user/repos", what="creating the history repository", headers=self._bearer,
                            expect=(201,), json_body={
                                "name": repo, "private": True, "auto_init": False, "default_branch": "main",
                                "description": "Configuration history of apphub (each version is a commit)"})
        pointed = self._point_history_at()
        what = f"created the private repository {self.user}/{repo}" if created \
            else f"the repository {self.user}/{repo} exists"
        return Done(created or pointed, what + ("; the history is pushed to it" if pointed else ""))

    def _history_url(self) -> str:
        root = web_root(self.context.text("base_url"), API_SUFFIX)
        return f"{root}/{self.user}/{self.context.text('history_repo')}.git"

    def _history_is_ours(self) -> bool:
        return (self.context.system.get("history_remote_url") == self._history_url()
                and self.context.system.get("history_remote_user") == self.user)

    def _point_history_at(self) -> bool:
        """Push the history to the repository when system.ini names no remote yet."""
        if self.context.system.get("history_remote_url"):
            return False
        url = self._history_url()
        self.context.save("system", {"history.remote_url": url, "history.remote_user": self.user,
                                     "history.remote_token": self.token})
        return True

    def _webhook(self) -> Done:
        url = self.context.text("webhook_url")
        if not url:
            return Done(False, "no webhook is configured ([gitea] webhook_url is empty)")
        secret = self.context.text("webhook_secret")
        if not secret:
            secret = secrets.token_hex(32)
            self.context.save("config", {"gitea.webhook_secret": secret})
        hooks_path = f"/repos/{self.user}/{self.context.text('history_repo')}/hooks"
        wanted = {"type": "gitea", "active": True, "events": ["push"], "branch_filter": "*",
                  "config": {"url": url, "content_type": "json", "secret": secret}}
        with self._client() as client:
            client.add_secret(secret)
            listed = client.call("GET", hooks_path, what="listing the webhooks", headers=self._bearer)
            for hook in client.json(listed, what="listing the webhooks"):
                if (hook.get("config") or {}).get("url") != url:
                    continue
                if hook.get("active") and hook.get("events") == ["push"]:
                    return Done(False, f"the webhook to {url} exists and is active")
                client.call("PATCH", f"{hooks_path}/{hook['id']}", what="activating the webhook", headers=self._bearer,
                            json_body={key: wanted[key] for key in ("active", "events", "config")})
                return Done(True, f"activated the webhook to {url}")
            client.call("POST", hooks_path, what="adding the webhook", headers=self._bearer, expect=(201,),
                        json_body=wanted)
        return Done(True, f"added an active webhook to {url} (push events, signed with [gitea] webhook_secret)")

    def _health(self, client: ProductClient) -> str:
        response = client.call("GET", "/api/healthz", what="its health check", expect=(200, 424))
        body = client.json(response, what="its health check")
        status = str(body.get("status", "?")) if isinstance(body, dict) else "?"
        if response.status_code == 424 or status == "fail":
            failing = [name for name, runs in (body.get("checks") or {}).items()
                       if any(run.get("status") == "fail" for run in runs)]
            raise ServiceRefused(f"gitea: its health check fails ({', '.join(failing) or status})", 424)
        return status

    def _version(self, client: ProductClient) -> str:
        return str(client.json(client.call("GET", "/version", what="reading its version"),
                               what="reading its version").get("version", "unknown"))

    def _user_by_password(self, client: ProductClient) -> dict[str, Any] | None:
        response = client.call("GET", "/user", what=f"logging in as {self.user}", auth=self._basic, expect=(200, 401))
        if response.status_code == 401:
            return None
        found: dict[str, Any] = client.json(response, what=f"logging in as {self.user}")
        return found

    def _token_works(self, client: ProductClient) -> bool:
        response = client.call("GET", "/user", what="checking apphub's token", headers=self._bearer,
                               expect=(200, 401, 403))
        if response.status_code != 200:
            return False
        return bool(client.json(response, what="checking the token").get("login") == self.user)

    def check(self) -> Check:
        timer, version = CheckTimer(self.name), None
        try:
            with self._client() as client:
                version = self._version(client)
            with self._client(web_root(self.context.text("base_url"), API_SUFFIX)) as client:
                self._health(client)
            with self._client() as client:
                authenticated = self._token_works(client) if self.token \
                    else self._user_by_password(client) is not None
        except ServiceError as exc:
            return timer.failed(exc, version)
        if not authenticated:
            how = "apphub's token ([gitea] api_token)" if self.token else "the configured password"
            return timer.result("unhealthy", version=version, authenticated=False,
                                reason=f"{self.user} cannot log in with {how}")
        return timer.result("healthy", version=version, authenticated=True)
