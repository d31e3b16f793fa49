"""A real git remote over smart HTTP on loopback, served the way Gitea serves one.

dulwich's WSGI application speaks the git protocol for the bare repositories that `git init --bare`
made under `root/{owner}/{name}.git`; in front of it a small WSGI function checks `Authorization`
the way Gitea does (Basic with the token as password, or `token TOKEN`) and answers 401 with
`WWW-Authenticate: Basic realm="Gitea"` otherwise. wsgiref serves it from threads on 127.0.0.1.

Faults for the tests: `down()` / `up()` (connections refused, then the same port again), `slow(s)`,
`diverge(branch)` (a commit on the remote that our history lacks: the next push is a real
non-fast-forward rejection) and `reject_pushes(True)` (the branch diverges as each push starts).
Everything asked is kept in `requests` and `raw_requests`, so a test can tell whether the token
was ever in a URL. Another WSGI application can share the port under a path prefix (`mount`):
the Gitea API stand-in of `gitea_standin.py` sits under /api/v1, as in Gitea.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from dulwich.server import FileSystemBackend
from dulwich.web import make_wsgi_chain

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

OWNER = "websoft9"
REPO = "apphub-config"
USER = "websoft9"
TOKEN = "8c5e2f0a4b7d9e1f3a6c8b0d2e4f6a8c0b1d3e5f"  # the shape of a Gitea access token: 40 hex digits

# Gitea's git routes: /{owner}/{repo}.git/... or without the .git suffix.
_GIT_ROUTE = re.compile(
    r"^/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?"
    r"(?P<rest>/(?:info/refs|HEAD|objects/.+|git-upload-pack|git-receive-pack))$"
)
_RAW_TARGET = "apphub.raw_target"
_IDENTITY = {"GIT_AUTHOR_NAME": "Someone Else", "GIT_AUTHOR_EMAIL": "someone@example.com",
             "GIT_COMMITTER_NAME": "Someone Else", "GIT_COMMITTER_EMAIL": "someone@example.com"}


class SeenRequest(NamedTuple):
    method: str
    path: str
    had_valid_auth: bool


@dataclass(frozen=True)
class RawRequest:
    """A request as it came: `target` is the path and query exactly as sent, not decoded."""

    method: str
    target: str
    authorization: str | None


def token_of(authorization: str | None) -> str | None:
    """The token an `Authorization` header carries, read as Gitea reads it (services/auth/basic.go, oauth2.go).

    Basic: the password is the token, or the user name is when the password is empty or
    `x-oauth-basic`; the user name is not checked against the token's owner. `token X` and `bearer X`.
    """
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() in ("token", "bearer"):
        return credential.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(credential.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user if password in ("", "x-oauth-basic") else password) or None


def basic_authorization(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


class _ClosingBackend(FileSystemBackend):
    """dulwich opens a repository several times per request and never closes them: we do."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.opened: list[Any] = []

    def open_repository(self, path: str | bytes) -> Any:
        # dulwich.web asks for "/owner/name.git"; FileSystemBackend joins that to its root with
        # os.path.join, which keeps the absolute path alone, and then refuses it as outside the root.
        relative = os.fsdecode(path).lstrip("/")
        repo = super().open_repository(relative)
        self.opened.append(repo)
        return repo

    def close(self) -> None:
        for repo in self.opened:
            repo.close()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False  # down() must not wait for a request that sleeps in slow()
    allow_reuse_address = True  # up() listens on the same port again while old connections linger

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the resolver for the host's FQDN; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a test's timeout, down() during a slow request) is not a server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        environ[_RAW_TARGET] = self.path
        return environ


class GitRemote:
    """A git server on 127.0.0.1 with repositories under `root`; `owner`/`repo` name the default one.

    `create=False` leaves the default repository out (info/refs answers 404 until `create_repo`).
    Use it as a context manager, or `start()` and `stop()`.
    """

    def __init__(self, root: Path, *, owner: str = OWNER, repo: str = REPO, user: str = USER,
                 token: str = TOKEN, create: bool = True, port: int = 0) -> None:
        self.root = Path(root)
        self.owner = owner
        self.repo = repo
        self.user = user
        self.token = token
        self.host = "127.0.0.1"
        self.port = port
        self.requests: list[SeenRequest] = []
        self.raw_requests: list[RawRequest] = []
        self.diverged: list[str] = []
        self._delay = 0.0
        self._reject_branch: str | None = None
        self._mounts: list[tuple[str, WSGIApp]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._git_lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        if create and not self.has_repo(owner, repo):
            self.create_repo(owner, repo)

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.url_of(self.owner, self.repo)

    @property
    def bare_path(self) -> Path:
        return self.bare_path_of(self.owner, self.repo)

    def url_of(self, owner: str, name: str) -> str:
        return f"{self.base_url}/{owner}/{name}.git"

    def bare_path_of(self, owner: str, name: str) -> Path:
        # Gitea keeps repositories on disk in lower case and finds them whatever the case of the URL.
        return self.root / owner.lower() / f"{name.lower()}.git"

    # -- credentials -------------------------------------------------------------------------------

    def is_valid(self, authorization: str | None) -> bool:
        return token_of(authorization) == self.token

    def authorization(self, token: str | None = None, user: str | None = None) -> str:
        """The `Authorization: Basic` value a client sends (this remote's user and token by default)."""
        return basic_authorization(user or self.user, self.token if token is None else token)

    def client_env(self, token: str | None = None, user: str | None = None,
                   base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for the git CLI that sends the credential in a header and asks nothing.

        No system or global git configuration (no credential helper of the machine), no askpass.
        """
        env = dict(os.environ if base is None else base)
        for name in ("GIT_ASKPASS", "SSH_ASKPASS", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            env.pop(name, None)
        env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
                    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: {self.authorization(token, user)}"})
        return env

    def targets_containing(self, secret: str | None = None) -> list[str]:
        """The request targets (path and query) in which the token appeared, plainly or URL-encoded."""
        secret = self.token if secret is None else secret
        return [seen.target for seen in self.raw_requests
                if secret in seen.target or secret in urllib.parse.unquote(seen.target)]

    # -- repositories ------------------------------------------------------------------------------

    def has_repo(self, owner: str, name: str) -> bool:
        return (self.bare_path_of(owner, name) / "HEAD").is_file()

    def create_repo(self, owner: str, name: str, *, default_branch: str = "main",
                    object_format: str = "sha1") -> Path:
        """A new empty bare repository (FileExistsError if there is one)."""
        path = self.bare_path_of(owner, name)
        if path.exists():
            raise FileExistsError(f"repository {owner}/{name} exists at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._git(None, "init", "--quiet", "--bare", f"--initial-branch={default_branch}",
                  f"--object-format={object_format}", str(path))
        return path

    def heads(self, owner: str | None = None, name: str | None = None) -> dict[str, str]:
        """Branch name -> commit id, read from the bare repository."""
        out = self._git(self._bare(owner, name), "for-each-ref", "--format=%(refname:strip=2) %(objectname)",
                        "refs/heads")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def log(self, branch: str = "main", owner: str | None = None, name: str | None = None) -> list[str]:
        """The branch's commit ids, newest first ([] when the branch does not exist)."""
        bare = self._bare(owner, name)
        if branch not in self.heads(owner, name):
            return []
        return self._git(bare, "log", "--format=%H", f"refs/heads/{branch}", "--").split()

    def add_commit(self, branch: str = "main", files: dict[str, str] | None = None, message: str = "",
                   owner: str | None = None, name: str | None = None) -> str:
        """Commit `files` (path -> text) on top of the branch in the bare repository, as another client would."""
        bare = self._bare(owner, name)
        with self._git_lock:
            parent = self.heads(owner, name).get(branch)
            with tempfile.TemporaryDirectory() as scratch:
                index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
                if parent is not None:
                    self._git(bare, "read-tree", parent, env=index)
                for path, text in (files or {}).items():
                    blob = self._git(bare, "hash-object", "-w", "--stdin", stdin=text).strip()
                    self._git(bare, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
                tree = self._git(bare, "write-tree", env=index).strip()
            parents = ["-p", parent] if parent is not None else []
            commit = self._git(bare, "commit-tree", tree, *parents, "-m", message or "A commit made on the remote",
                               env=_IDENTITY).strip()
            self._git(bare, "update-ref", f"refs/heads/{branch}", commit, parent or "0" * len(commit))
        return commit

    def diverge(self, branch: str = "main", owner: str | None = None, name: str | None = None) -> str:
        """Put on the branch a commit that our history does not have: the next push is a non-fast-forward."""
        number = len(self.diverged) + 1
        commit = self.add_commit(branch, {f"REMOTE-CHANGE-{number}.md": f"Edited on the server ({number}).\n"},
                                 f"Edited on the server ({number})", owner, name)
        self.diverged.append(commit)
        return commit

    # -- faults ------------------------------------------------------------------------------------

    def slow(self, seconds: float) -> None:
        """Wait this long before answering each request (0 to stop)."""
        self._delay = seconds

    def reject_pushes(self, enabled: bool = True, branch: str = "main") -> None:
        """While enabled, the branch diverges as each push begins: every push is rejected as a non-fast-forward."""
        self._reject_branch = branch if enabled else None

    def down(self) -> None:
        """Close the listening socket: new connections are refused until `up()`."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def up(self, timeout: float = 5.0) -> None:
        """Listen again, on the same port."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- serving -----------------------------------------------------------------------------------

    def mount(self, prefix: str, app: WSGIApp) -> None:
        """Serve `app` for the paths under `prefix` (e.g. "/api/v1"), before the git routes."""
        self._mounts.append((prefix.rstrip("/"), app))

    def start(self) -> GitRemote:
        with self._lock:
            if self._server is None:
                server = _Server((self.host, self.port), _Handler)
                server.set_app(self._app)
                self.port = int(server.server_address[1])
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                          name=f"git-remote-{self.port}", daemon=True)
                thread.start()
                self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> GitRemote:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        authorization = environ.get("HTTP_AUTHORIZATION")
        valid = self.is_valid(authorization)
        self.requests.append(SeenRequest(method, path, valid))
        self.raw_requests.append(RawRequest(method, environ.get(_RAW_TARGET, path), authorization))
        if self._delay:
            time.sleep(self._delay)
        for prefix, app in self._mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return app(environ, start_response)
        route = _GIT_ROUTE.match(path)
        if route is None:
            return _plain(environ, start_response, "404 Not Found", "Not found.\n")
        if not valid:
            return _plain(environ, start_response, "401 Unauthorized", "Unauthorized\n",
                          [("WWW-Authenticate", 'Basic realm="Gitea"')])
        owner, name = route["owner"], route["name"]
        if not self.has_repo(owner, name):
            return _plain(environ, start_response, "404 Not Found", "Repository not found.\n")
        service = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("service", [""])[0]
        if self._reject_branch is not None and route["rest"] == "/info/refs" and service == "git-receive-pack":
            self.diverge(self._reject_branch, owner, name)
        environ = {**environ, "PATH_INFO": f"/{owner.lower()}/{name.lower()}.git{route['rest']}"}
        backend = _ClosingBackend(str(self.root))
        try:
            # Read the answer out while the backend is open: dulwich writes most of it through
            # start_response's write() and yields the rest.
            return list(make_wsgi_chain(backend)(environ, start_response))
        finally:
            backend.close()

    def _bare(self, owner: str | None, name: str | None) -> Path:
        return self.bare_path_of(owner or self.owner, name or self.repo)

    def _git(self, bare: Path | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
        command = ["git"] if bare is None else ["git", f"--git-dir={bare}"]
        full_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **(env or {})}
        done = subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, env=full_env,
                              check=False, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed in {bare}: {done.stderr.strip()}")
        return done.stdout


def _plain(environ: dict[str, Any], start_response: Callable[..., Any], status: str, text: str,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    # Read the body the client sent before answering: closing a socket with unread data resets
    # the connection, and the client would see a reset instead of our status.
    read_body(environ)
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


def read_body(environ: dict[str, Any]) -> bytes:
    """The body of a WSGI request (its Content-Length bytes)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""
