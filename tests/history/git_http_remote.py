"""A real git remote over smart HTTP on loopback, as a Gitea push looks, with Gitea's repository API.

Git itself answers the git requests: `git http-backend` (the CGI program git ships) behind a small
HTTP server that checks `Authorization: Basic user:token` as Gitea does (401 with a Basic
challenge otherwise). The same port serves a stand-in of Gitea's repository API under /api/v1
(GET /user, GET /repos/{owner}/{repo}, POST /user/repos, POST /orgs/{org}/repos) that answers as
`reference/gitea-v1.26.3-swagger-v1.json` says and checks every request against it: what does
not match is kept in `spec_violations`. Faults for the tests: down (connections refused), slow,
and a branch that diverges (the next push is a real non-fast-forward rejection).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import free_port

SWAGGER = Path(__file__).resolve().parents[1] / "fixtures" / "gitea-v1.26.3-swagger-repos.json"
_JSON_TYPES = {"string": str, "boolean": bool, "integer": int, "object": dict, "array": list}


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None


@dataclass
class GitRemote:
    """The server's state: the repositories under `root` (owner/name.git), who may push, faults."""

    root: Path
    user: str = "websoft9"
    token: str = "gitea-token-0123456789abcdef"
    orgs: set[str] = field(default_factory=lambda: {"websoft9-org"})
    port: int = 0
    delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    spec_violations: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, owner: str = "websoft9", name: str = "apphub-config") -> str:
        return f"{self.base}/{owner}/{name}.git"

    def bare(self, owner: str = "websoft9", name: str = "apphub-config") -> Path:
        return self.root / owner / f"{name}.git"

    def create_repo(self, owner: str = "websoft9", name: str = "apphub-config") -> Path:
        path = self.bare(owner, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
        subprocess.run(["git", "--git-dir", str(path), "config", "http.receivepack", "true"], check=True)
        return path

    def log(self, branch: str = "main", owner: str = "websoft9", name: str = "apphub-config") -> list[str]:
        done = subprocess.run(["git", "--git-dir", str(self.bare(owner, name)), "log", "--format=%H", branch],
                              capture_output=True, text=True, check=False)
        return done.stdout.split() if done.returncode == 0 else []

    def diverge(self, branch: str = "main", owner: str = "websoft9", name: str = "apphub-config") -> str:
        """Put a commit on the remote's branch that our history does not have."""
        bare = str(self.bare(owner, name))
        tree = subprocess.run(["git", "--git-dir", bare, "mktree"], input=b"", capture_output=True,
                              check=True).stdout.decode().strip()
        parents = self.log(branch, owner, name)[:1]
        env = {**os.environ, "GIT_AUTHOR_NAME": "someone", "GIT_AUTHOR_EMAIL": "s@example.com",
               "GIT_COMMITTER_NAME": "someone", "GIT_COMMITTER_EMAIL": "s@example.com"}
        command = ["git", "--git-dir", bare, "commit-tree", tree, "-m", "made on the remote"]
        for parent in parents:
            command += ["-p", parent]
        commit = subprocess.run(command, capture_output=True, check=True, env=env).stdout.decode().strip()
        subprocess.run(["git", "--git-dir", bare, "update-ref", f"refs/heads/{branch}", commit], check=True)
        return commit

    # -- serving --------------------------------------------------------------------------------

    def start(self) -> GitRemote:
        remote = self

        class Handler(_Handler):
            owner = remote

        # A port of free_port()'s, not the kernel's: `down` then `up` rebinds it, and in between no
        # other test (another pytest-xdist worker) and no outgoing connection may take it.
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port or free_port()), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                self.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    stop = down

    def authorised(self, header: str | None) -> bool:
        if header is None:
            return False
        if header.startswith("token "):
            return header[len("token "):] == self.token
        if header.startswith("Basic "):
            try:
                user, _, secret = base64.b64decode(header[len("Basic "):]).decode().partition(":")
            except ValueError:
                return False
            return secret == self.token and user in (self.user, "apphub", "oauth2")
        return False


class _Handler(BaseHTTPRequestHandler):
    owner: GitRemote
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        remote = self.owner
        header = self.headers.get("Authorization")
        remote.requests.append(Seen(self.command, self.path, header))
        if remote.delay:
            time.sleep(remote.delay)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._chunked()
        if self.path.startswith("/api/v1/"):
            self._api(body, remote.authorised(header))
            return
        if not remote.authorised(header):
            self._answer(401, b"Unauthorized\n", {"WWW-Authenticate": 'Basic realm="Gitea"'})
            return
        self._git(body)

    def _chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    # -- git: git http-backend as CGI -------------------------------------------------------------

    def _git(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        match = re.match(r"^/([^/]+)/([^/]+\.git)(/.*)$", path)
        if match is None or not (self.owner.root / match[1] / match[2]).is_dir():
            self._answer(404, b"Not found\n")
            return
        env = {"GIT_PROJECT_ROOT": str(self.owner.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "REQUEST_METHOD": self.command, "QUERY_STRING": query, "REMOTE_USER": self.owner.user,
               "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "GIT_HTTP_MAX_REQUEST_BUFFER": "100M"}
        done = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        content_type = headers.pop("Content-Type", "application/octet-stream")
        self._answer(status, payload, headers, content_type)

    # -- Gitea's API -------------------------------------------------------------------------------

    def _api(self, body: bytes, authorised: bool) -> None:
        path = self.path.partition("?")[0]
        operation = _spec().operation(self.command.lower(), path[len("/api/v1"):])
        if operation is None:
            self.owner.spec_violations.append(f"{self.command} {path}: no such operation in Gitea's API")
            self._json(404, {"message": "not found"})
            return
        if not authorised:
            self._json(401, {"message": "token is required"})
            return
        template, spec, params = operation
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                self.owner.spec_violations.append(f"{self.command} {path}: the body is not JSON")
                self._json(422, {"message": "invalid JSON"})
                return
        problems = _spec().check_body(spec, payload)
        if problems:
            self.owner.spec_violations += [f"{self.command} {template}: {problem}" for problem in problems]
            self._json(422, {"message": "; ".join(problems)})
            return
        self._gitea(template, params, payload)

    def _gitea(self, template: str, params: dict[str, str], payload: Any) -> None:
        remote = self.owner
        if template == "/user":
            self._json(200, _user(remote.user))
        elif template == "/repos/{owner}/{repo}":
            found = remote.bare(params["owner"], params["repo"]).is_dir()
            self._json(200, _repository(params["owner"], params["repo"], remote.base)) if found else \
                self._json(404, {"message": "repository does not exist"})
        elif template in ("/user/repos", "/orgs/{org}/repos"):
            owner = remote.user if template == "/user/repos" else params["org"]
            if template != "/user/repos" and owner not in remote.orgs:
                self._json(404, {"message": "organization does not exist"})
                return
            if remote.bare(owner, payload["name"]).is_dir():
                self._json(409, {"message": "The repository with the same name already exists."})
                return
            remote.create_repo(owner, payload["name"])
            self._json(201, _repository(owner, payload["name"], remote.base, private=bool(payload.get("private"))))
        else:
            self._json(404, {"message": "not served by the stand-in"})

    def _json(self, status: int, body: Any) -> None:
        self._answer(status, json.dumps(body).encode(), content_type="application/json")


def _user(login: str) -> dict[str, Any]:
    return {"id": 1, "login": login, "username": login, "full_name": "", "email": f"{login}@example.com"}


def _repository(owner: str, name: str, base: str, *, private: bool = True) -> dict[str, Any]:
    return {"id": 1, "name": name, "full_name": f"{owner}/{name}", "private": private, "empty": True,
            "owner": _user(owner), "clone_url": f"{base}/{owner}/{name}.git", "html_url": f"{base}/{owner}/{name}",
            "default_branch": "main"}


class _Swagger:
    """Gitea's OpenAPI (Swagger 2.0) document: operations by method and path, body checks."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = json.loads(SWAGGER.read_text())

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
            found = re.match(pattern, path)
            if found and method in item:
                return template, item[method], found.groupdict()
        return None

    def check_body(self, operation: dict[str, Any], payload: Any) -> list[str]:
        bodies = [parameter for parameter in operation.get("parameters", []) if parameter.get("in") == "body"]
        if not bodies:
            return [] if payload is None else ["the operation takes no body"]
        schema = self._resolve(bodies[0]["schema"])
        if payload is None:
            return ["the body is missing"] if bodies[0].get("required") else []
        if not isinstance(payload, dict):
            return ["the body is not an object"]
        problems = [f"'{name}' is required" for name in schema.get("required", []) if name not in payload]
        properties = schema.get("properties", {})
        for name, value in payload.items():
            if name not in properties:
                problems.append(f"'{name}' is not a property of the body")
                continue
            expected = _JSON_TYPES.get(properties[name].get("type", ""))
            if expected is not None and (not isinstance(value, expected) or (expected is int and
                                                                              isinstance(value, bool))):
                problems.append(f"'{name}' must be of type {properties[name]['type']}")
            if "enum" in properties[name] and value not in properties[name]["enum"]:
                problems.append(f"'{name}' must be one of {properties[name]['enum']}")
        return problems

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        reference = schema.get("$ref")
        if reference is None:
            return schema
        found: dict[str, Any] = self.document
        for part in reference.lstrip("#/").split("/"):
            found = found[part]
        return found


_SWAGGER: list[_Swagger] = []


def _spec() -> _Swagger:
    if not _SWAGGER:
        _SWAGGER.append(_Swagger())
    return _SWAGGER[0]

