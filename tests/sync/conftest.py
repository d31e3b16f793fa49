"""Fixtures for the sync engine's core loop: real files, real processes, real loopback HTTP servers.

`world` is an initialised data folder prepared the way an operator would:

- `schema.d/web.yaml` names the sections `web` (port: restart, title: reload, motd: hot, a secret
  `admin_password`, a secret `api_token` whose value only the schema default gives) and `db`;
- `system.ini [sync]`: `roots` is the test's own `srv` folder, a short debounce, no drift timer;
- `config.ini` holds `[web]` and `[db]`, written through the store (the secret stored encrypted);
- `services.yaml` and `templates/` are written by each test with `world.manifest(...)`.

Services reload with the `exec` strategy running `reload.sh`, a real shell script that appends one
line per reload to a log: the service, when the reload began and ended, and (optionally) what the
service's file held at that moment. Reloads are counted exactly from that log, their order and
overlap read from its timestamps, and a reload can be made to fail while a file holds a pattern.

`HttpService` is a real HTTP server on loopback (a thread): `GET /health` answers the status a
test sets, `POST /reload` is counted; stopping it leaves a port nobody listens on.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets as random
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.reload.build import build_backends
from apphub.store.inistore import WriteResult
from apphub.sync.engine import SyncEngine
from tests.cli.conftest import audit_rows
from tests.conftest import free_port

TEST_ACTOR = Actor("sync-test", "test")
ADMIN_PASSWORD = "Adm1n-pw-Quux-77"
API_TOKEN_DEFAULT = "tok-default-Zq81x"  # a secret only the schema's default gives

WEB_SCHEMA = f"""\
config:
  sections:
    web:
      description: the demo web service
      keys:
        port: {{type: port, default: 8080, apply: restart}}
        title: {{type: string, default: "Demo", apply: reload}}
        motd: {{type: string, default: "hello", apply: hot}}
        admin_password: {{type: string, secret: true, min_length: 8, apply: restart}}
        api_token: {{type: string, secret: true, default: "{API_TOKEN_DEFAULT}", apply: restart}}
    db:
      description: the demo database
      keys:
        port: {{type: port, default: 5432, apply: restart}}
        name: {{type: string, default: "app", apply: reload}}
"""

# $1 service, $2 log, $3 seconds to sleep, $4 a file to quote in the log (or -), $5 a pattern:
# while that file holds it, the reload fails (exit 1, with a message on stderr) (or -).
RELOAD_SH = textwrap.dedent("""\
    #!/bin/sh
    start=$(date +%s.%N)
    sleep "$3"
    content=-
    if [ "$4" != - ]; then content=$(tr -d ' \\n' < "$4"); fi
    echo "$1 $start $(date +%s.%N) $content" >> "$2"
    if [ "$5" != - ] && grep -q -- "$5" "$4"; then
        echo "cannot load $4: $5 is refused" >&2
        exit 1
    fi
    exit 0
""")


@dataclass(frozen=True)
class Reload:
    """One line of the reload log."""

    service: str
    start: float
    end: float
    content: str


# Secrets whose fragments are searched for (issue 8): letters that no message of apphub's strings
# four of together (HTTP, RUNNING, SIGKILL, SPAWN_ERROR...; paths and versions are lower case).
SECRET_ALPHABET = "QXZJVWY"


def make_secret(length: int) -> str:
    return "".join(random.choice(SECRET_ALPHABET) for _ in range(length))


def fragments(secret: str, text: str, size: int = 4) -> list[str]:
    """The runs of `size` characters of `secret` that `text` holds (any longer run holds one).

    A fragment is 4 characters or more: 1 to 3 are noise (`QX` occurs by chance anywhere).
    """
    return sorted({secret[i:i + size] for i in range(len(secret) - size + 1) if secret[i:i + size] in text})


@contextlib.contextmanager
def read_only(path: Path, how: str = "chattr") -> Iterator[str]:
    """`path` (a folder or a file) made read-only for real, and always made writable again.

    `chattr`: the immutable flag (not even root may create, rename or delete in it), or where the
    file system does not take it, a read-only bind mount; `mount`: the read-only bind mount. Yields
    which of the two was made.
    """
    if os.geteuid() != 0:
        pytest.skip("making a folder read-only for root needs root (chattr +i or a bind mount)")
    if how == "chattr" and subprocess.run(["/usr/bin/chattr", "+i", str(path)], capture_output=True,
                                          check=False).returncode == 0:
        try:
            yield "chattr +i"
        finally:
            subprocess.run(["/usr/bin/chattr", "-i", str(path)], check=True)
        return
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"{path}: neither chattr +i nor a bind mount works here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, check=True)
        yield "read-only bind mount"
    finally:
        subprocess.run(["umount", str(path)], check=True)


def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "the condition") -> None:
    """Poll `condition` every 10 ms until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.01)


class SyncWorld:
    """A prepared data folder, a sync root, the reload script and its log."""

    def __init__(self, core: Core, tmp_path: Path) -> None:
        self.core = core
        self.data = core.data
        self.root = tmp_path / "srv"
        self.root.mkdir()
        self.log = tmp_path / "reloads.log"
        self.log.touch()
        self.script = tmp_path / "reload.sh"
        self.script.write_text(RELOAD_SH, encoding="utf-8")
        self.script.chmod(0o755)
        self.templates = self.data.root / "templates"
        self.templates.mkdir()

    # -- setting up ------------------------------------------------------------------------

    def path(self, relative: str) -> Path:
        return self.root / relative

    def exec_reload(self, name: str, *, quote: str | Path | None = None, sleep: float = 0.0,
                    fail_on: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """An `exec` action that logs one line per reload (see RELOAD_SH)."""
        return {"strategy": "exec", "timeout": timeout,
                "command": [str(self.script), name, str(self.log), f"{sleep:g}",
                            str(quote) if quote is not None else "-", fail_on or "-"]}

    def manifest(self, services: dict[str, Any], **top: Any) -> None:
        """Write services.yaml (atomically: a watcher never sees half of it)."""
        text = yaml.safe_dump({**top, "services": services}, sort_keys=False)
        temporary = self.data.root / ".services.yaml.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.data.root / "services.yaml")

    def template(self, name: str, text: str) -> Path:
        path = self.templates / name
        path.write_text(text, encoding="utf-8")
        return path

    def standard(self, **overrides: Any) -> None:
        """Two services: `web` (JSON, merge) and `db` (INI, merge), each reloaded by exec."""
        app, db = self.path("web/app.json"), self.path("db/db.ini")
        services: dict[str, Any] = {
            "web": {"files": [{"path": str(app), "format": "json", "mode": "merge",
                               "map": {"server.port": "${web.port}", "server.title": "${web.title}",
                                       "motd": "${web.motd}"}}],
                    "reload": self.exec_reload("web", quote=app), "drift": "repair"},
            "db": {"files": [{"path": str(db), "format": "ini", "mode": "merge",
                              "map": {"database.port": "${db.port}", "database.name": "${db.name}"}}],
                   "reload": self.exec_reload("db", quote=db)},
        }
        for name, override in overrides.items():
            services[name] = {**services.get(name, {}), **override}
        self.manifest(services)

    def set(self, section: str, **values: Any) -> WriteResult:
        """A write through the store, as the API makes it."""
        return self.core.config.update({section: values}, TEST_ACTOR)

    # -- observing --------------------------------------------------------------------------

    def reloads(self, service: str | None = None) -> list[Reload]:
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            name, start, end, content = line.split(" ", 3)
            if service is None or name == service:
                found.append(Reload(name, float(start), float(end), content))
        return found

    def audit(self, action: str) -> list[dict[str, Any]]:
        """Audit events of one action, oldest first."""
        return [dict(row) for row in audit_rows(self.data, "SELECT * FROM audit_events WHERE action = ? ORDER BY id",
                                                (action,))]

    def audit_changes(self, action: str) -> list[dict[str, Any]]:
        return [dict(row) for row in audit_rows(
            self.data, "SELECT e.id, c.section, c.key, c.change, c.old, c.new FROM audit_events e"
            " JOIN audit_changes c ON c.event_id = e.id WHERE e.action = ? ORDER BY e.id, c.position", (action,))]

    # -- running ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def engine(self, *, first_sync: bool = True, watch: bool = True) -> Iterator[SyncEngine]:
        """A started SyncEngine with the real backends; waits for its first sync; stopped on exit."""
        engine = SyncEngine(self.core, build_backends, watch=watch)
        engine.start()
        try:
            if first_sync:
                wait_until(lambda: engine.status.engine.syncs >= 1, 10, "the first sync")
            yield engine
        finally:
            engine.stop()

    def sync_now(self, engine: SyncEngine, *, full: bool = False, timeout: float = 10.0) -> Any:
        report = engine.wait(engine.request(immediate=True, full=full), timeout)
        assert report is not None, f"no sync report within {timeout:g} s"
        return report

    def settle(self, engine: SyncEngine, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the engine has run no round for `quiet` seconds (events all processed)."""
        deadline = time.monotonic() + timeout
        seen, since = engine.status.engine.syncs, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now = engine.status.engine.syncs
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
        raise AssertionError(f"the engine did not settle within {timeout:g} s")


def settle_api(admin: httpx.Client, quiet: float = 0.5, timeout: float = 60) -> None:
    """Wait until the engine behind the API `admin` talks to has run no round for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        syncs = admin.get("/api/v1/sync/status").json()["engine"]["syncs"]
        if syncs != seen:
            seen, since = syncs, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError(f"the engine did not settle within {timeout:g} s")


def make_world(core: Core, tmp_path: Path) -> SyncWorld:
    """Prepare `core`'s data folder (see the module docstring); no services.yaml yet."""
    made = SyncWorld(core, tmp_path)
    (core.data.schema_dir / "web.yaml").write_text(WEB_SCHEMA, encoding="utf-8")
    core.system.update({"sync": {"roots": str(made.root), "debounce_ms": 20, "drift_interval_s": 0}}, TEST_ACTOR)
    core.config.update({"web": {"port": 8081, "title": "Demo", "admin_password": ADMIN_PASSWORD},
                        "db": {"port": 5433}}, TEST_ACTOR)
    (made.root / "web").mkdir()
    (made.root / "db").mkdir()
    made.path("web/app.json").write_text('{\n  "server": {\n    "host": "0.0.0.0"\n  },\n  "workers": 4\n}\n',
                                         encoding="utf-8")
    made.path("db/db.ini").write_text("; the demo database\n[database]\nhost = 127.0.0.1\n", encoding="utf-8")
    return made


@pytest.fixture
def world(core: Core, tmp_path: Path) -> SyncWorld:
    """The prepared data folder (no services.yaml yet: call world.standard() or world.manifest())."""
    return make_world(core, tmp_path)


# -- a loopback HTTP service --------------------------------------------------------------------


@dataclass
class HttpService:
    """A real HTTP server on 127.0.0.1: GET /health answers `health_status`; POST /reload is counted."""

    port: int
    health_status: int = 200
    reload_status: int = 200
    reloads: list[float] = field(default_factory=list)
    health_checks: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int) -> None:
                body = b"ok" if status < 400 else b"not ready"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    service.health_checks += 1
                    self._answer(service.health_status)
                else:
                    self._answer(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path == "/reload":
                    service.reloads.append(time.time())
                    self._answer(service.reload_status)
                else:
                    self._answer(404)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"http-service-{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket: the port then refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@contextlib.contextmanager
def http_services() -> Iterator[Callable[[], HttpService]]:
    """A factory of started HttpServices, all stopped on exit."""
    started: list[HttpService] = []

    def make() -> HttpService:
        service = HttpService(free_port())
        service.start()
        started.append(service)
        return service

    try:
        yield make
    finally:
        for service in started:
            service.stop()


@pytest.fixture
def http_service() -> Iterator[Callable[[], HttpService]]:
    """A factory of started HttpServices, all stopped at the end of the test."""
    with http_services() as make:
        yield make
