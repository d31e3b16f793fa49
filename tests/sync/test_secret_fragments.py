"""No fragment of a secret, ever: a secret a service prints when it fails (a reload command's
output, a response body, a program's stderr, a health command's output) is masked whole, wherever
the text is then cut for display.

Every case is a service whose file apphub renders with one secret in it, padded so that the secret
straddles one of the places where text used to be cut before it was masked: the last 600
characters of a reload command's output, the 300 characters of a health probe's reason, the 200
characters of a response body, the last 500 characters of supervisord's stderr tail (and the
2000 bytes of that tail). The service's reload or probe quotes the file (`cat` to stderr, a
loopback server answering with it), exactly as a service that echoes its configuration does.
Several lengths of secret, and for each, several splits of it across the cut.

The criterion of a fragment: any 4 consecutive characters of a secret. One to three characters
are indistinguishable from noise (`QX` occurs by chance); four of the secrets' alphabet in a row
occur in no message of apphub's own (the alphabet avoids the letters of HTTP, RUNNING, SIGKILL,
SPAWN_ERROR... and every padding is lower case), so a hit is a leak, not chance. The places
searched: /api/v1/sync/status, /api/v1/audit, the apply journal, every log record, and the
`?wait=true` answer of the write that brought the secrets.
"""

from __future__ import annotations

import http.server
import json
import logging
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from apphub.core import Core
from apphub.db import Database
from apphub.sync.journal import Journal
from tests.conftest import serving
from tests.reload.conftest import Supervisord, scripts, start_supervisord
from tests.sync.conftest import TEST_ACTOR, SyncWorld, fragments, make_secret, make_world, settle_api, wait_until

__all__ = ["scripts", "start_supervisord"]  # fixtures, used by name

LENGTHS = (8, 13, 32)


def splits(length: int) -> list[int]:
    """How many of the secret's characters fall on the kept side of a cut: 1 to length - 1."""
    return sorted({1, 3, 4, length // 2, length - 4, length - 1} & set(range(1, length)))


def strings(value: Any) -> list[str]:
    """Every string in a JSON document (keys too), decoded: escapes say nothing about a leak."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings(item)]]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


# -- a service that answers with its own configuration -------------------------------------------


class EchoServer:
    """GET /NAME answers 503 and POST /NAME 500, each with the bytes of the file `files[NAME]`."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                try:
                    body = files[urlsplit(self.path).path.strip("/")].read_bytes()
                except (KeyError, OSError):
                    body = b"no configuration"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(503)

            def do_POST(self) -> None:
                self._answer(500)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="echo-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.stop()


# -- the cases -------------------------------------------------------------------------------------

CAT = 'cat "$0" >&2; exit 1'
REASON_CUT = 299  # a probe's reason was cut to 299 characters and "…"


@dataclass
class Case:
    """One service, one secret, one cut: `kept` characters of the secret on the side a cut kept."""

    kind: str
    length: int
    kept: int
    index: int
    secrets: tuple[str, str]  # the one at the start, the one the `?wait=true` write brings

    @property
    def name(self) -> str:
        return f"s{self.index}"

    def file(self, world: SyncWorld) -> Path:
        return world.path(f"{self.name}/out.txt")


def cases_of(kind: str) -> list[Case]:
    found = []
    if kind == "tcp-port":  # a probe that raises ValueError, whose text CPython cuts (`%.200R`)
        for length in (250, 400):
            found.append(Case(kind, length, 199, len(found), (make_secret(length), make_secret(length))))
        return found
    if kind == "http-hook-blanks":  # a secret with a run of blanks, whole within the body's 200
        for length in LENGTHS:
            pair = tuple(make_secret(length // 2) + "  " + make_secret(length - length // 2 - 2) for _ in "12")
            found.append(Case(kind, length, length, len(found), (pair[0], pair[1])))
        return found
    for length in LENGTHS:
        for kept in splits(length):
            found.append(Case(kind, length, kept, len(found), (make_secret(length), make_secret(length))))
    return found


def padding(case: Case, world: SyncWorld, echo: EchoServer) -> tuple[int, int, dict[str, Any]]:
    """(characters before the secret, after it, the manifest entry) that put the secret across the cut."""
    path = case.file(world)
    n, kept = case.length, case.kept
    files = [{"path": str(path), "template": f"{case.name}.j2"}]
    if case.kind == "exec":  # the last 600 characters of the command's output
        command = ["sh", "-c", CAT, str(path)]
        return 20, 600 - kept, {"files": files, "reload": {"strategy": "exec", "command": command, "timeout": 10}}
    if case.kind == "command-probe":  # the first 299 characters of the probe's reason
        command = ["sh", "-c", CAT, str(path)]
        prefix = f"command `{' '.join(command)}` failed with exit status 1: "
        health = {"command": command, "timeout": 0.2, "interval": 0.05}
        return REASON_CUT - len(prefix) - (n - kept), 40, {"files": files, "health": health}
    echo.files[case.name] = path
    if case.kind == "http-probe-body":  # the first 200 characters of the body (a short URL: within the 299)
        url = f"{echo.url}/{case.name}"
        assert len(f"GET {url} answered HTTP 503 Service Unavailable: ") + 200 < REASON_CUT
        health = {"http": url, "timeout": 0.2, "interval": 0.05}
        return 200 - (n - kept), 40, {"files": files, "health": health}
    if case.kind == "http-probe-reason":  # a long URL: the reason's cut falls inside the body's 200
        url = f"{echo.url}/{case.name}?padding={'p' * 120}"
        prefix = f"GET {url} answered HTTP 503 Service Unavailable: "
        assert REASON_CUT - len(prefix) < 200 - n
        health = {"http": url, "timeout": 0.2, "interval": 0.05}
        return REASON_CUT - len(prefix) - (n - kept), 40, {"files": files, "health": health}
    if case.kind == "tcp-port":  # an error that is not apphub's: int() of the port quotes it, cut
        health = {"tcp": "127.0.0.1:${leak." + case.name + "}", "timeout": 2, "interval": 0.05}
        return 0, 0, {"files": files, "health": health}
    if case.kind == "http-hook-blanks":  # blanks in the body were squeezed before masking
        reload = {"strategy": "http", "url": f"{echo.url}/{case.name}", "timeout": 5}
        return 20, 40, {"files": files, "reload": reload}
    if case.kind == "http-hook":  # the first 200 characters of the body
        reload = {"strategy": "http", "url": f"{echo.url}/{case.name}", "timeout": 5}
        return 200 - (n - kept), 40, {"files": files, "reload": reload}
    if case.kind == "supervisor":  # the last 500 characters of the program's stderr (its log under 2000 bytes)
        reload = {"strategy": "supervisor-restart", "program": case.name, "timeout": 20}
        return 100, 500 - kept, {"files": files, "reload": reload}
    if case.kind == "supervisor-window":  # the last 2000 bytes of its stderr log, which is longer
        reload = {"strategy": "supervisor-restart", "program": case.name, "timeout": 20}
        return 100, 1999 - kept, {"files": files, "reload": reload}
    raise AssertionError(case.kind)


def program(case: Case, world: SyncWorld) -> str:
    """The supervisord program of a case: prints its file to stderr and exits, every start."""
    return f"""\
        command=/bin/sh -c 'cat {case.file(world)} >&2; exit 3'
        autostart=false
        startsecs=3
        startretries=0
        autorestart=false
        """


def schema(cases: list[Case]) -> str:
    keys = "\n".join(f"        {case.name}: {{type: string, secret: true, apply: restart}}" for case in cases)
    return "config:\n  sections:\n    leak:\n      keys:\n" + keys + "\n"


# -- the run ---------------------------------------------------------------------------------------


def run_cases(world: SyncWorld, echo: EchoServer, cases: list[Case], caplog: pytest.LogCaptureFixture,
              supervisord: Supervisord | None = None) -> dict[str, str]:
    """Serve with the engine, let the first sync fail on the first secrets, write the second ones
    with `?wait=true`; every place a user or an operator reads, by name."""
    (world.data.schema_dir / "leak.yaml").write_text(schema(cases), encoding="utf-8")
    world.core.config.update({"leak": {case.name: case.secrets[0] for case in cases}}, TEST_ACTOR)
    if supervisord is not None:
        world.core.system.update({"sync": {"supervisor_url": supervisord.url}}, TEST_ACTOR)
    services = {}
    for case in cases:
        before, after, entry = padding(case, world, echo)
        assert min(before, after) >= 0, (case, before, after)
        reference = "{{ settings.leak." + case.name + " }}"
        world.template(f"{case.name}.j2", "a" * before + reference + "b" * after + "\n")
        case.file(world).parent.mkdir()
        services[case.name] = entry
    world.manifest(services)
    caplog.set_level(logging.DEBUG)
    admin_key = world.data.admin_key.read_text().strip()
    with serving(world.data) as server, server.client(admin_key) as admin:
        admin.timeout = httpx.Timeout(150)
        wait_until(lambda: admin.get("/api/v1/sync/status").json()["engine"]["syncs"] >= 1, 60, "the first sync")
        settle_api(admin)  # the file events of the first sync's writes and rollbacks are served, not raced
        written = admin.put("/api/v1/settings/leak?wait=true&wait_timeout=120",
                            json={case.name: case.secrets[1] for case in cases})
        assert written.status_code == 200, written.text
        report = written.json()["sync"]
        assert report["done"], report
        results = {service["service"]: service["result"] for service in report["services"]}
        assert results == {case.name: "failed" for case in cases}, results
        status = admin.get("/api/v1/sync/status").json()
        audit = admin.get("/api/v1/audit", params={"limit": 500}).json()
    database = Database(world.data.database)
    try:
        journal = {name: entry.error or "" for name, entry in Journal(database).entries().items()}
    finally:
        database.close()
    return {
        "the ?wait=true answer": "\n".join(strings(report)),
        "/api/v1/sync/status": "\n".join(strings(status)),
        "/api/v1/audit": "\n".join(strings(audit)),
        "the apply journal": "\n".join(journal.values()),
        "the log": "\n".join(record.getMessage() for record in caplog.records),
    }


def leaks(cases: list[Case], places: dict[str, str]) -> list[str]:
    found = []
    for case in cases:
        for secret in case.secrets:
            for place, text in places.items():
                shown = fragments(secret, text)
                if shown:
                    found.append(f"{case.kind} (length {case.length}, {case.kept} kept) in {place}: {shown}")
    return found


def assert_quoted(cases: list[Case], places: dict[str, str], marker: str) -> None:
    """The search finds what it looks for: the failures quote the services' output (padding)."""
    assert marker in places["/api/v1/sync/status"], places["/api/v1/sync/status"][:2000]


@pytest.fixture
def leak_world(core: Core, tmp_path: Path) -> SyncWorld:
    return make_world(core, tmp_path)


@pytest.mark.parametrize("kind", ["exec", "command-probe", "http-probe-body", "http-probe-reason", "http-hook",
                                  "http-hook-blanks", "tcp-port"])
def test_a_secret_across_a_cut_leaves_no_fragment(leak_world: SyncWorld, echo: EchoServer, kind: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cases = cases_of(kind)
    places = run_cases(leak_world, echo, cases, caplog)
    assert_quoted(cases, places, "unexpected ValueError" if kind == "tcp-port" else "aaaa")
    assert leaks(cases, places) == []


@pytest.mark.parametrize("kind", ["supervisor", "supervisor-window"])
def test_a_secret_across_supervisords_cuts_leaves_no_fragment(leak_world: SyncWorld, echo: EchoServer, kind: str,
                                                              start_supervisord: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    cases = cases_of(kind)
    daemon = start_supervisord({case.name: textwrap.dedent(program(case, leak_world)) for case in cases})
    places = run_cases(leak_world, echo, cases, caplog, daemon)
    # A line that the 2000 bytes of the log begin inside is not quoted at all (it was cut).
    assert_quoted(cases, places, "bbbb" if kind == "supervisor" else "No such file")
    assert leaks(cases, places) == []


def test_the_criterion_finds_a_fragment() -> None:
    secret = make_secret(13)
    assert fragments(secret, "x" + secret[5:9] + "y") == [secret[5:9]]
    assert fragments(secret, "x" + secret[5:8] + "y") == []
    assert json.dumps(fragments(secret, secret)) != "[]"
