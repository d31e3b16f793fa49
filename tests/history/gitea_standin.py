"""A stand-in of Gitea's repository API, on the port of a `GitRemote` under /api/v1 as in Gitea.

It serves what the history's push needs: `GET /user`, `GET /repos/{owner}/{repo}`,
`POST /user/repos` and `POST /orgs/{org}/repos`; creating a repository makes its bare repository,
so git can push to it at once. Every request is checked against Gitea's own description of its API
(`shared/reference/gitea-v1.26.3-swagger-v1.json`, or the extract of it in tests/fixtures): an
operation the document does not have, an undeclared query parameter, a body that its definition
refuses (checked with jsonschema_rs, which schemathesis brings), a property the definition does not
declare (Gitea ignores it silently, which hides a typo), and a token in the URL all go into
`spec_violations`. The answers are checked against the document too, strictly: no property it
does not declare.

Where Gitea does more than the document says, the stand-in does as Gitea does: a body Gitea's
binding refuses answers 422 (the document gives createOrgRepo no 422), an existing repository 409
for an organisation too (nor a 409), and a repository name must be alpha-dash-dot (the document
says only "string").
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jsonschema_rs

from tests.history.remote_server import GitRemote, read_body, token_of

SPEC_NAME = "gitea-v1.26.3-swagger-v1.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]
# The whole document where shared/ is beside the clone; else the extract the repository carries.
SPEC_CANDIDATES = (_REPO_ROOT.parent / "shared" / "reference" / SPEC_NAME,
                   _REPO_ROOT / "tests" / "fixtures" / "gitea-v1.26.3-swagger-repos.json")

SERVED = {("get", "/user"), ("get", "/repos/{owner}/{repo}"), ("post", "/user/repos"), ("post", "/orgs/{org}/repos")}
# Query parameters every operation takes (the document's securityDefinitions of type apiKey in query).
_CREDENTIAL_QUERY = {"token", "access_token"}
# Gitea's binding of CreateRepoOption.Name: Required;AlphaDashDot;MaxSize(100), and IsUsableRepoName.
_NAME = re.compile(r"^[\w.-]{1,100}$")
_RESERVED_NAMES = {".", "..", "-"}
_RESERVED_SUFFIXES = (".git", ".wiki", ".rss", ".atom")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    params: dict[str, str]
    spec: dict[str, Any]


class GiteaSpec:
    """Gitea's API document (Swagger 2.0): its operations by method and path, and its definitions as JSON Schemas."""

    def __init__(self, path: Path) -> None:
        self.source = path
        self.document: dict[str, Any] = json.loads(path.read_text())
        self.base_path: str = self.document.get("basePath", "/api/v1")
        self._routes = [(re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"),
                         template, item) for template, item in self.document["paths"].items()]
        self._validators: dict[tuple[str, bool], Any] = {}

    @classmethod
    def load(cls) -> GiteaSpec:
        for path in SPEC_CANDIDATES:
            if path.is_file():
                return cls(path)
        raise FileNotFoundError(f"Gitea's API document is in none of {[str(path) for path in SPEC_CANDIDATES]}")

    @property
    def complete(self) -> bool:
        """Whether this is the whole document (the extract knows only the four operations served)."""
        return self.source.name == SPEC_NAME

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation for a path under basePath; a literal segment wins over a parameter (/user/repos)."""
        found = [(len(match.groupdict()), template, match.groupdict(), item[method.lower()])
                 for pattern, template, item in self._routes
                 if method.lower() in item and (match := pattern.match(path))]
        if not found:
            return None
        _, template, params, spec = min(found, key=lambda entry: entry[0])
        decoded = {name: urllib.parse.unquote(value) for name, value in params.items()}
        return Operation(method.lower(), template, decoded, spec)

    def body_definition(self, operation: Operation) -> str | None:
        for parameter in operation.spec.get("parameters", []):
            if parameter.get("in") == "body":
                return str(parameter["schema"]["$ref"]).rsplit("/", 1)[-1]
        return None

    def query_parameters(self, operation: Operation) -> set[str]:
        return {str(parameter["name"]) for parameter in operation.spec.get("parameters", [])
                if parameter.get("in") == "query"}

    def response_definition(self, operation: Operation, status: int) -> str | None:
        response = operation.spec.get("responses", {}).get(str(status))
        if response is None:
            return None
        if "$ref" in response:
            response = self.document["responses"][response["$ref"].rsplit("/", 1)[-1]]
        reference = response.get("schema", {}).get("$ref")
        return str(reference).rsplit("/", 1)[-1] if reference else None

    def check(self, definition: str, instance: Any, *, strict: bool = False) -> list[str]:
        """What in `instance` the definition refuses; `strict` also names every property it does not declare."""
        key = (definition, strict)
        if key not in self._validators:
            definitions = self.document["definitions"]
            if strict:
                definitions = _closed(copy.deepcopy(definitions))
            self._validators[key] = jsonschema_rs.Draft4Validator(
                {"$ref": f"#/definitions/{definition}", "definitions": definitions}, validate_formats=True)
        problems = []
        for error in self._validators[key].iter_errors(instance):
            where = "/".join(str(part) for part in error.instance_path)
            problems.append(f"{definition}{' at ' + where if where else ''}: {error.message}")
        return problems


def _closed(schema: Any) -> Any:
    """Every object schema without additionalProperties made closed (Swagger 2.0 leaves them open)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _closed(value)
    elif isinstance(schema, list):
        for value in schema:
            _closed(value)
    return schema


@dataclass
class ApiCall:
    """One request to the API and its answer."""

    method: str
    path: str
    status: int
    body: Any = None
    answer: Any = None


@dataclass
class _Repository:
    id: int
    owner: str
    name: str
    private: bool
    description: str = ""
    default_branch: str = "main"
    object_format_name: str = "sha1"
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


class GiteaStandin:
    """Gitea's repository API for `remote`'s user and token, mounted on its port under /api/v1.

    `orgs` are the organisations in which the user may create repositories; `foreign_orgs` exist
    but the user is no member (403). Other organisations do not exist (404).
    """

    def __init__(self, remote: GitRemote, *, orgs: Iterable[str] = ("websoft9-org",),
                 foreign_orgs: Iterable[str] = (), spec: GiteaSpec | None = None) -> None:
        self.remote = remote
        self.spec = spec or GiteaSpec.load()
        self.orgs = set(orgs)
        self.foreign_orgs = set(foreign_orgs)
        self.user_id = 1
        self.spec_violations: list[str] = []
        self.unserved: list[str] = []
        self.calls: list[ApiCall] = []
        self._repos: dict[tuple[str, str], _Repository] = {}
        self._ids = {name.lower(): number for number, name in enumerate(sorted(self.orgs | self.foreign_orgs), 2)}
        self._lock = threading.Lock()
        remote.mount(self.spec.base_path, self)

    @property
    def api_url(self) -> str:
        return self.remote.base_url + self.spec.base_path

    def user(self, login: str | None = None) -> dict[str, Any]:
        """A User as Gitea answers it (the authenticated user, or an organisation as a repository's owner)."""
        login = login or self.remote.user
        number = self.user_id if login.lower() == self.remote.user.lower() else self._ids.get(login.lower(), 0)
        return {"id": number, "login": login, "login_name": "", "source_id": 0, "full_name": "",
                "email": f"{login}@noreply.localhost", "avatar_url": f"{self.remote.base_url}/avatars/{number}",
                "html_url": f"{self.remote.base_url}/{login}", "language": "", "is_admin": False,
                "last_login": "1970-01-01T00:00:00Z", "created": "2026-01-01T00:00:00Z", "restricted": False,
                "active": True, "prohibit_login": False, "location": "", "website": "", "description": "",
                "visibility": "public", "followers_count": 0, "following_count": 0, "starred_repos_count": 0}

    def repository(self, owner: str, name: str) -> dict[str, Any] | None:
        """The Repository Gitea would answer for owner/name, or None when there is none."""
        if not self.remote.has_repo(owner, name):
            return None
        with self._lock:
            record = self._repos.get((owner.lower(), name.lower()))
            if record is None:  # made with remote.create_repo, not through the API
                record = self._repos[owner.lower(), name.lower()] = _Repository(
                    100 + len(self._repos), owner, name, private=True)
        base, full = self.remote.base_url, f"{record.owner}/{record.name}"
        return {"id": record.id, "owner": self.user(record.owner), "name": record.name, "full_name": full,
                "description": record.description, "empty": not self.remote.heads(owner, name),
                "private": record.private, "fork": False, "template": False, "mirror": False, "archived": False,
                "size": 0, "html_url": f"{base}/{full}", "url": f"{self.api_url}/repos/{full}",
                "clone_url": f"{base}/{full}.git", "ssh_url": f"git@{self.remote.host}:{full}.git",
                "default_branch": record.default_branch, "object_format_name": record.object_format_name,
                "created_at": record.created, "updated_at": record.created,
                "permissions": {"admin": True, "push": True, "pull": True}}

    # -- WSGI --------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        body = read_body(environ)
        status, answer, payload = self._handle(environ, method, path, body)
        self.calls.append(ApiCall(method, path, status, payload, answer))
        data = b"" if answer is None else json.dumps(answer).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json;charset=utf-8"), ("Content-Length", str(len(data)))])
        return [data]

    def _handle(self, environ: dict[str, Any], method: str, path: str, body: bytes) -> tuple[int, Any, Any]:
        where = f"{method} {path}"
        operation = self.spec.operation(method, path[len(self.spec.base_path):])
        if operation is None:
            self._violation(f"{where}: no such operation in Gitea's API"
                            + ("" if self.spec.complete else " (as far as the extract in tests/fixtures knows)"))
            return 404, self._error("Not found."), None
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if _CREDENTIAL_QUERY & set(query):
            # The document marks ?token= and ?access_token= "deprecated for removal in Gitea 1.23", and a
            # token in a URL ends up in logs: the stand-in takes a credential from the header only.
            names = ", ".join(sorted(_CREDENTIAL_QUERY & set(query)))
            self._violation(f"{where}: a credential in the URL's query ({names})")
        for name in sorted(set(query) - _CREDENTIAL_QUERY - {"sudo"} - self.spec.query_parameters(operation)):
            self._violation(f"{where}: query parameter {name!r} is not one of {operation.template}'s")
        if not self.remote.is_valid(environ.get("HTTP_AUTHORIZATION")):
            message = "token is required" if token_of(environ.get("HTTP_AUTHORIZATION")) is None else \
                "invalid username, password or token"
            return 401, self._error(message), None
        payload, refused = self._body(environ, where, operation, body)
        if refused is not None:
            return 422, self._error(refused), payload
        if (operation.method, operation.template) not in SERVED:
            self.unserved.append(f"{where} ({operation.template})")
            return 501, self._error(f"{operation.template} is not served by the stand-in"), payload
        status, answer = self._serve(operation, payload)
        definition = self.spec.response_definition(operation, status)
        if definition is not None:
            self.spec_violations += [f"{where}: the stand-in's answer {status}: {problem}"
                                     for problem in self.spec.check(definition, answer, strict=True)]
        return status, answer, payload

    def _body(self, environ: dict[str, Any], where: str, operation: Operation, body: bytes) -> tuple[Any, str | None]:
        """The body's JSON, and why Gitea's binding would refuse it (None when it would not)."""
        definition = self.spec.body_definition(operation)
        if definition is None:
            if body:
                self._violation(f"{where}: {operation.template} takes no body, {len(body)} bytes were sent")
            return None, None
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if body and content_type not in self.spec.document.get("consumes", ["application/json"]):
            self._violation(f"{where}: Content-Type {content_type!r}, not one the document consumes")
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            self._violation(f"{where}: the body is not JSON")
            return None, "the body is not JSON"
        if payload is None:
            self._violation(f"{where}: no body; {operation.template} takes a {definition}")
            return None, f"a {definition} is required"
        invalid = self.spec.check(definition, payload)
        self.spec_violations += [f"{where}: {problem}" for problem in invalid]
        if invalid:
            return payload, "; ".join(invalid)
        self.spec_violations += [f"{where}: {problem} (Gitea ignores it)"
                                 for problem in self.spec.check(definition, payload, strict=True)]
        return payload, None

    def _serve(self, operation: Operation, payload: Any) -> tuple[int, Any]:
        params = operation.params
        if operation.template == "/user":
            return 200, self.user()
        if operation.template == "/repos/{owner}/{repo}":
            found = self.repository(params["owner"], params["repo"])
            return (200, found) if found is not None else (404, self._error("The target couldn't be found."))
        owner = self.remote.user if operation.template == "/user/repos" else params["org"]
        if operation.template == "/orgs/{org}/repos":
            if owner.lower() in {org.lower() for org in self.foreign_orgs}:
                return 403, self._error("Given user is not allowed to create repository in organization.")
            if owner.lower() not in {org.lower() for org in self.orgs}:
                return 404, self._error("The target couldn't be found.")
        return self._create(owner, payload)

    def _create(self, owner: str, option: dict[str, Any]) -> tuple[int, Any]:
        name = option["name"]
        if not _NAME.match(name):
            return 422, self._error("[Name]: AlphaDashDot" if len(name) <= 100 else "[Name]: MaxSize")
        if name in _RESERVED_NAMES or name.lower().endswith(_RESERVED_SUFFIXES):
            return 422, self._error(f"name is reserved [name: {name}]")
        with self._lock:
            if self.remote.has_repo(owner, name):
                return 409, self._error("The repository with the same name already exists.")
            branch = option.get("default_branch") or "main"
            object_format = option.get("object_format_name") or "sha1"
            self.remote.create_repo(owner, name, default_branch=branch, object_format=object_format)
            self._repos[owner.lower(), name.lower()] = _Repository(
                100 + len(self._repos), owner, name, private=bool(option.get("private", False)),
                description=option.get("description", ""), default_branch=branch, object_format_name=object_format)
        if option.get("auto_init"):
            # Gitea makes a first commit (README.md): a history pushed afterwards is not a fast-forward.
            self.remote.add_commit(branch, {"README.md": f"# {name}\n\n{option.get('description', '')}\n"},
                                   "Initial commit", owner, name)
        return 201, self.repository(owner, name)

    def _error(self, message: str) -> dict[str, Any]:
        return {"message": message, "url": f"{self.remote.base_url}/api/swagger"}

    def _violation(self, text: str) -> None:
        self.spec_violations.append(text)
