"""Gitea stand-in: health, version, access tokens, repositories and webhooks of Gitea 1.26.3 (service-apis.md §1.3-1.5).

Spec: `gitea-v1.26.3-swagger-v1.json` (Swagger 2.0), extract `tests/fixtures/standin-specs/gitea.json`.
The first admin cannot be made over HTTP: real Gitea makes it with `gitea admin user create` inside the
container, so the stand-in takes that command's argv on `POST /__standin/admin-user-create` (see
`gitea_cli.py` and `gitea-cli.sh`), and tests can call `add_admin` directly.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.standins import gitea_cli
from tests.standins.base import Call, Recorded, Reply, StandIn
from tests.standins.gitea_json import hook_json, repo_json, user_json
from tests.standins.spec import Spec, load_document

VERSION = "1.26.3"
CATEGORIES = ("activitypub", "admin", "misc", "notification", "organization", "package", "issue", "repository", "user")
VALID_SCOPES = {"all", "public-only"} | {f"{level}:{kind}" for level in ("read", "write") for kind in CATEGORIES}
HOOK_TYPES = {"dingtalk", "discord", "gitea", "gogs", "msteams", "slack", "telegram", "feishu", "wechatwork",
              "packagist"}
REPO = r"/api/v1/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


def _carries_header_token(request: Recorded) -> bool:
    # Gitea takes "token <t>" and "bearer <t>", the scheme word in any case (service-apis.md §1.4).
    scheme = request.headers.get("authorization", "").split(" ")[0].lower()
    return scheme in ("token", "bearer")


def _hook_option_with_required_config() -> dict[str, Any]:
    # The spec says only in prose that config needs "url" and "content_type" (CreateHookOptionConfig's
    # description); Gitea answers 422 without them, so the check holds clients to it.
    option: dict[str, Any] = copy.deepcopy(load_document("gitea")["definitions"]["CreateHookOption"])
    option["properties"]["config"] = {"type": "object", "required": ["content_type", "url"],
                                      "additionalProperties": {"type": "string"}}
    return option


HEADER_OR_BASIC = [["AuthorizationHeaderToken"], ["BasicAuth"]]
SPEC = Spec(
    "gitea",
    body_overrides={"repoCreateHook": _hook_option_with_required_config()},
    # The spec lists every scheme globally (query tokens, deprecated since 1.23, and Sudo/OTP headers, which
    # are no credentials on their own). What Gitea really wants, per service-apis.md §1.4: Basic only for the
    # token calls, nothing for the version, a header token or Basic for the rest (anonymous for public repos).
    security_overrides={
        "getVersion": [[]],
        "userCreateToken": [["BasicAuth"]], "userGetTokens": [["BasicAuth"]], "userDeleteAccessToken": [["BasicAuth"]],
        "userGetCurrent": HEADER_OR_BASIC, "createCurrentUserRepo": HEADER_OR_BASIC, "repoGet": [[], *HEADER_OR_BASIC],
        "repoListHooks": HEADER_OR_BASIC, "repoGetHook": HEADER_OR_BASIC, "repoCreateHook": HEADER_OR_BASIC,
        "repoEditHook": HEADER_OR_BASIC, "repoDeleteHook": HEADER_OR_BASIC,
    },
    scheme_checks={"AuthorizationHeaderToken": _carries_header_token},
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply


class GiteaStandIn(StandIn):
    """Gitea at `url` (the API under /api/v1, health at /api/healthz)."""

    ROUTES = [
        ("GET", r"/api/healthz", "healthz"),
        ("GET", r"/api/v1/version", "version"),
        ("GET", r"/api/v1/user", "current_user"),
        ("GET", r"/api/v1/users/(?P<username>[^/]+)/tokens", "list_tokens"),
        ("POST", r"/api/v1/users/(?P<username>[^/]+)/tokens", "create_token"),
        ("DELETE", r"/api/v1/users/(?P<username>[^/]+)/tokens/(?P<token>[^/]+)", "delete_token"),
        ("POST", r"/api/v1/user/repos", "create_repo"),
        ("GET", REPO, "get_repo"),
        ("GET", REPO + "/hooks", "list_hooks"),
        ("POST", REPO + "/hooks", "create_hook"),
        ("GET", REPO + r"/hooks/(?P<id>\d+)", "get_hook"),
        ("PATCH", REPO + r"/hooks/(?P<id>\d+)", "edit_hook"),
        ("DELETE", REPO + r"/hooks/(?P<id>\d+)", "delete_hook"),
        ("POST", r"/__standin/admin-user-create", "cli_admin_user_create"),
    ]
    # /api/healthz is outside /api/v1 and so outside the swagger file (service-apis.md §1.5).
    FACT_OPERATIONS = {("GET", "/api/healthz")}
    spec = SPEC

    def __init__(self) -> None:
        super().__init__()  # serves from here on, but nobody knows the port before we return
        self._users: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, list[dict[str, Any]]] = {}
        self._repos: dict[tuple[str, str], dict[str, Any]] = {}
        self._hooks: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._healthy = True
        self._next_id = 1

    # -- test helpers ---------------------------------------------------------------------------------

    def add_admin(self, username: str, password: str, email: str, must_change_password: bool = False) -> None:
        """An admin, as `gitea admin user create --admin` makes one."""
        self._add_user(username, password, email, admin=True, must_change_password=must_change_password)

    def unhealthy(self, failing: bool = True) -> None:
        """/api/healthz answers 424 with a failed database ping (or, with False, passes again)."""
        self._healthy = not failing

    @property
    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(user) for user in self._users.values()]

    @property
    def tokens(self) -> dict[str, list[dict[str, Any]]]:
        """Per user login: each token's name, scopes and sha1."""
        with self._lock:
            return {self._users[key]["login"]: [{k: t[k] for k in ("id", "name", "scopes", "sha1")} for t in tokens]
                    for key, tokens in self._tokens.items()}

    @property
    def repos(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(repo) for repo in self._repos.values()]

    @property
    def hooks(self) -> dict[str, list[dict[str, Any]]]:
        """Per "owner/repo": its hooks as Gitea stores them (config with the secret)."""
        with self._lock:
            return {f"{self._repos[key]['owner']}/{self._repos[key]['name']}": [copy.deepcopy(h) for h in hooks]
                    for key, hooks in self._hooks.items()}

    # -- the product ------------------------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "url": f"{self.url}/api/swagger"}

    def not_found(self, request: Recorded) -> Reply:
        return self.error(404, "not found")

    def healthz(self, call: Call) -> Reply:
        status = "pass" if self._healthy else "fail"
        checks = {"database:ping": [{"status": status, "time": _now()}],
                  "cache:ping": [{"status": "pass", "time": _now()}]}
        body = {"status": status, "description": "Gitea: Git with a cup of tea", "checks": checks}
        return Reply(200 if self._healthy else 424, body, content_type="application/health+json")

    def version(self, call: Call) -> Reply:
        return self._guarded(call, None, lambda doer: Reply(200, {"version": VERSION}), required=False)

    def current_user(self, call: Call) -> Reply:
        return self._guarded(call, ("user", False), lambda doer: Reply(200, user_json(self.url, doer["user"])))

    def list_tokens(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            owner = self._token_owner(doer, call.params["username"])
            tokens = self._tokens[owner["login"].lower()]
            return Reply(200, [{k: v for k, v in t.items() if k != "sha1"} for t in tokens])

        return self._guarded(call, None, answer, basic_only=True)

    def create_token(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            owner = self._token_owner(doer, call.params["username"])
            body = call.request.json if isinstance(call.request.json, dict) else {}
            name = body.get("name")
            if not isinstance(name, str) or not name:
                return self.error(422, "[Name]: Required")
            scopes = [s.strip() for entry in body.get("scopes") or [] for s in str(entry).split(",") if s.strip()]
            wrong = [s for s in scopes if s not in VALID_SCOPES]
            if wrong:
                return self.error(400, f"invalid access token scope provided: invalid access token scope: {wrong[0]}")
            if not scopes:
                return self.error(400, "access token must have a scope")
            if any(t["name"] == name for t in self._tokens[owner["login"].lower()]):
                return self.error(400, "access token name has been used already")
            return Reply(201, self._make_token(owner["login"], name, scopes))

        return self._guarded(call, None, answer, basic_only=True)

    def delete_token(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            owner = self._token_owner(doer, call.params["username"])
            tokens = self._tokens[owner["login"].lower()]
            wanted = call.params["token"]
            found = next((t for t in tokens if str(t["id"]) == wanted), None) or next(
                (t for t in tokens if t["name"] == wanted), None)
            if found is None:
                return self.error(404, "The target couldn't be found.")
            tokens.remove(found)
            return Reply(204)

        return self._guarded(call, None, answer, basic_only=True)

    def create_repo(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            body = call.request.json if isinstance(call.request.json, dict) else {}
            name = body.get("name")
            if not isinstance(name, str) or not name:
                return self.error(422, "[Name]: Required")
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
                return self.error(422, "[Name]: AlphaDashDot")
            if name in (".", "..", "-"):
                return self.error(422, f"name is reserved [name: {name}]")
            for suffix in (".git", ".wiki", ".rss", ".atom"):
                if name.lower().endswith(suffix):
                    return self.error(422, f"name pattern is not allowed [pattern: *{suffix}]")
            owner = doer["user"]["login"]
            key = (owner.lower(), name.lower())
            if key in self._repos:
                return self.error(409, "The repository with the same name already exists.")
            self._repos[key] = {"id": self._new_id(), "owner": owner, "name": name,
                                "description": body.get("description", ""), "private": bool(body.get("private")),
                                "template": bool(body.get("template")), "empty": not body.get("auto_init"),
                                "default_branch": body.get("default_branch") or "main",
                                "object_format_name": body.get("object_format_name") or "sha1", "created": _now()}
            self._hooks[key] = []
            return Reply(201, self._repo_json(self._repos[key], doer["user"]))

        return self._guarded(call, ("repository", True), answer)

    def get_repo(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any] | None) -> Reply:
            return Reply(200, self._repo_json(self._repo(call, doer), doer["user"] if doer else None))

        return self._guarded(call, ("repository", False), answer, required=False)

    def list_hooks(self, call: Call) -> Reply:
        return self._guarded(call, ("repository", False), lambda doer: Reply(
            200, [hook_json(h) for h in self._hooks[self._admin_repo(call, doer)]]))

    def get_hook(self, call: Call) -> Reply:
        return self._guarded(call, ("repository", False),
                             lambda doer: Reply(200, hook_json(self._hook(call, doer))))

    def create_hook(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            key = self._admin_repo(call, doer)
            body = call.request.json if isinstance(call.request.json, dict) else {}
            config: dict[str, Any] = body["config"] if isinstance(body.get("config"), dict) else {}
            # routers/api/v1/utils/hook.go checkCreateHookOption, in its order.
            if body.get("type") not in HOOK_TYPES:
                return self.error(422, "Invalid hook type")
            for option in ("url", "content_type"):
                if option not in config:
                    return self.error(422, f"Missing config option: {option}")
            if config["content_type"] not in ("json", "form"):
                return self.error(422, "Invalid content type")
            if not re.match(r"https?://[^/\s]+", config["url"]):
                return self.error(422, "Invalid url")
            hook = {"id": self._new_id(), "type": body["type"], "name": body.get("name", ""),
                    "config": {k: str(v) for k, v in config.items()}, "events": body.get("events") or ["push"],
                    "branch_filter": body.get("branch_filter", ""),
                    "authorization_header": body.get("authorization_header", ""),
                    # CreateHookOption.active defaults to false: a hook made without it never fires.
                    "active": bool(body.get("active", False)), "created_at": _now(), "updated_at": _now()}
            self._hooks[key].append(hook)
            return Reply(201, hook_json(hook))

        return self._guarded(call, ("repository", True), answer)

    def edit_hook(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            hook = self._hook(call, doer)
            body = call.request.json if isinstance(call.request.json, dict) else {}
            config = {**hook["config"], **{k: str(v) for k, v in (body.get("config") or {}).items()}}
            if config.get("content_type") not in ("json", "form"):
                return self.error(422, "Invalid content type")
            hook["config"] = config
            for name in ("events", "active", "branch_filter", "authorization_header", "name"):
                if name in body:
                    hook[name] = body[name]
            hook["updated_at"] = _now()
            return Reply(200, hook_json(hook))

        return self._guarded(call, ("repository", True), answer)

    def delete_hook(self, call: Call) -> Reply:
        def answer(doer: dict[str, Any]) -> Reply:
            hook = self._hook(call, doer)
            self._hooks[self._admin_repo(call, doer)].remove(hook)
            return Reply(204)

        return self._guarded(call, ("repository", True), answer)

    def cli_admin_user_create(self, call: Call) -> Reply:
        argv = call.request.json.get("argv") if isinstance(call.request.json, dict) else None
        if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
            return Reply(400, {"error": 'the body must be {"argv": [strings]}'})
        result = gitea_cli.admin_user_create(
            argv, user_exists=lambda name: name.lower() in self._users, has_users=bool(self._users),
            create=self._add_user, create_token=lambda user, name, scopes: self._make_token(user, name, scopes)["sha1"])
        if call.request.query.get("format") == "text":  # for gitea-cli.sh, which has no JSON parser
            return Reply(200, f"{result.exit_code}\n{result.output}".encode(), content_type="text/plain; charset=utf-8")
        return Reply(200, {"exit_code": result.exit_code, "output": result.output})

    # -- authentication and permissions ---------------------------------------------------------------

    def _guarded(self, call: Call, scope: tuple[str, bool] | None, answer: Callable[[Any], Reply], *,
                 required: bool = True, basic_only: bool = False) -> Reply:
        """Run `answer(doer)` once the caller has passed Gitea's checks, in Gitea's order."""
        try:
            doer = self._authenticate(call.request)
            if doer is not None and doer["user"]["must_change_password"]:
                return self.error(403, "You must change your password. Change it at: "
                                       f"{self.url}/user/change_password")
            if basic_only and (doer is None or doer["via"] != "basic"):
                return self.error(401, "auth required")
            if doer is None and required:
                return self.error(401, "token is required")
            if doer is not None and scope is not None and doer["via"] == "token":
                category, write = scope
                wanted = f"{'write' if write else 'read'}:{category}"
                if not ({"all", f"write:{category}"} & doer["scopes"] or (not write and wanted in doer["scopes"])):
                    return self.error(403, "token does not have at least one of required scope(s), "
                                           f"required=[{wanted}], token scope={','.join(sorted(doer['scopes']))}")
            return answer(doer)
        except _Refused as refused:
            return refused.reply

    def _authenticate(self, request: Recorded) -> dict[str, Any] | None:
        authorization = request.headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        token = request.query.get("token") or request.query.get("access_token")
        if scheme.lower() == "basic":
            try:
                login, _, password = base64.b64decode(credentials).decode().partition(":")
            except ValueError:
                raise _Refused(self.error(401, "invalid basic authentication")) from None
            user = self._users.get(login.lower())
            if user is not None and password == user["password"]:
                return {"user": user, "via": "basic", "scopes": {"all"}}
            token = password  # Gitea also takes a token as the Basic password, as a token
        elif scheme.lower() in ("token", "bearer"):
            token = credentials.strip()
        if not token:
            if authorization:
                raise _Refused(self.error(401, "invalid username, password or token"))
            return None
        for key, tokens in self._tokens.items():
            for entry in tokens:
                if entry["sha1"] == token:
                    entry["last_used_at"] = _now()
                    return {"user": self._users[key], "via": "token", "scopes": set(entry["scopes"])}
        raise _Refused(self.error(401, "invalid username, password or token"))

    def _token_owner(self, doer: dict[str, Any], username: str) -> dict[str, Any]:
        owner = self._users.get(username.lower())
        if owner is None:
            raise _Refused(self.error(404, "user does not exist"))
        if owner is not doer["user"] and not doer["user"]["is_admin"]:
            raise _Refused(self.error(403, "doer should be the site admin or be same as the contextUser"))
        return owner

    def _repo(self, call: Call, doer: dict[str, Any] | None) -> dict[str, Any]:
        repo = self._repos.get((call.params["owner"].lower(), call.params["repo"].lower()))
        user = doer["user"] if doer else None
        visible = repo is not None and (not repo["private"] or (user is not None and (
            user["is_admin"] or user["login"].lower() == repo["owner"].lower())))
        if not visible:
            raise _Refused(self.error(404, "The target couldn't be found."))
        return repo  # type: ignore[return-value]

    def _admin_repo(self, call: Call, doer: dict[str, Any]) -> tuple[str, str]:
        repo = self._repo(call, doer)
        if not (doer["user"]["is_admin"] or doer["user"]["login"].lower() == repo["owner"].lower()):
            message = "user should be an owner or a collaborator with admin write of a repository"
            raise _Refused(self.error(403, message))
        return repo["owner"].lower(), repo["name"].lower()

    def _hook(self, call: Call, doer: dict[str, Any]) -> dict[str, Any]:
        hooks = self._hooks[self._admin_repo(call, doer)]
        found = next((h for h in hooks if h["id"] == int(call.params["id"])), None)
        if found is None:
            raise _Refused(self.error(404, "The target couldn't be found."))
        return found

    # -- state -------------------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _add_user(self, username: str, password: str, email: str, *, admin: bool, must_change_password: bool) -> None:
        with self._lock:
            self._users[username.lower()] = {"id": len(self._users) + 1, "login": username, "email": email,
                                             "password": password, "is_admin": admin,
                                             "must_change_password": must_change_password, "created": _now()}
            self._tokens[username.lower()] = []

    def _make_token(self, login: str, name: str, scopes: list[str]) -> dict[str, Any]:
        sha1 = secrets.token_hex(20)
        token = {"id": self._new_id(), "name": name, "sha1": sha1, "token_last_eight": sha1[-8:],
                 "scopes": list(dict.fromkeys(scopes)), "created_at": _now(), "last_used_at": _now()}
        self._tokens[login.lower()].append(token)
        return dict(token)

    def _repo_json(self, repo: dict[str, Any], viewer: dict[str, Any] | None) -> dict[str, Any]:
        return repo_json(self.url, repo, self._users[repo["owner"].lower()], viewer)
