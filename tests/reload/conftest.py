"""A real supervisord per test, with programs the test writes, and loopback HTTP servers.

`start_supervisord(programs)` runs Debian's `/usr/bin/supervisord -n -c CONF` as a child process,
with a config of the test's own: the XML-RPC interface on a unix socket (and on a loopback TCP port
with a username and password), logs in the test's folder, and `[program:NAME]` sections from
`programs`. It waits for the socket to accept, and at the end stops supervisord (which stops its
programs) and kills anything left over.

The socket lives in a short folder under /tmp: a unix socket path must stay under 108 bytes, and
pytest's tmp_path for a long test name does not.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apphub.reload.supervisor import SupervisorClient
from tests.conftest import free_port

SUPERVISORD = "/usr/bin/supervisord"
PYTHON = sys.executable
RPC_USER = "apphub"
RPC_PASSWORD = "s3cret-rpc-pw"

# A small HTTP service: GET answers 200 with its pid; SIGHUP appends a line to a marker file.
SERVER_PY = textwrap.dedent("""\
    import http.server, os, signal, sys

    port, marker = int(sys.argv[1]), sys.argv[2]

    def on_hup(signum, frame):
        with open(marker, "a") as handle:
            handle.write(f"HUP {os.getpid()}\\n")

    signal.signal(signal.SIGHUP, on_hup)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = str(os.getpid()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
""")

# A service whose configuration is broken: says why on stderr and exits at once.
FAILS_PY = textwrap.dedent("""\
    import sys
    print("starting", flush=True)
    sys.stderr.write("config error: listen port is missing in /srv/api/app.json\\n")
    sys.exit(3)
""")

# A service that stays up past its startsecs, then exits with status 4.
EXITS_LATER_PY = textwrap.dedent("""\
    import sys, time
    time.sleep(float(sys.argv[1]))
    sys.exit(4)
""")


@dataclass
class Supervisord:
    """One running supervisord of a test."""

    process: subprocess.Popen[bytes]
    folder: Path
    socket_path: Path
    http_port: int
    log: Path
    orphans: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def http_url(self) -> str:
        return f"http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{self.http_port}"

    def client(self, timeout: float = 10.0) -> SupervisorClient:
        return SupervisorClient(self.url, timeout=timeout)

    def wait_state(self, program: str, *states: str, within: float = 15.0) -> dict[str, object]:
        """Poll until the program is in one of `states`; fail the test with its last state otherwise."""
        client = self.client()
        deadline = time.monotonic() + within
        while True:
            info = client.state(program)
            if info["statename"] in states:
                return info
            if time.monotonic() > deadline:
                pytest.fail(f"program {program} stayed {info['statename']}, never {states}: {info}")
            time.sleep(0.05)

    def kill_hard(self) -> None:
        """SIGKILL supervisord, as a crash would; its programs (now orphans) are killed at teardown."""
        client = self.client(timeout=2.0)
        for name in self.program_names():
            with contextlib.suppress(Exception):
                pid = int(client.state(name)["pid"])
                if pid:
                    self.orphans.append(pid)
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop supervisord the clean way (SIGTERM): it stops its programs and removes its socket."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def program_names(self) -> list[str]:
        conf = (self.folder / "supervisord.conf").read_text()
        return [line[len("[program:"):-1] for line in conf.splitlines() if line.startswith("[program:")]


def _write_config(folder: Path, socket_path: Path, http_port: int, programs: dict[str, str]) -> Path:
    (folder / "logs").mkdir()
    sections = [
        textwrap.dedent(f"""\
            [unix_http_server]
            file={socket_path}
            chmod=0700

            [inet_http_server]
            port=127.0.0.1:{http_port}
            username={RPC_USER}
            password={RPC_PASSWORD}

            [supervisord]
            nodaemon=true
            logfile={folder}/supervisord.log
            pidfile={folder}/supervisord.pid
            childlogdir={folder}/logs
            loglevel=info

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
            """)
    ]
    for name, body in programs.items():
        sections.append(f"[program:{name}]\n" + textwrap.dedent(body).strip() + "\n")
    conf = folder / "supervisord.conf"
    conf.write_text("\n".join(sections))
    return conf


def _wait_for_socket(daemon: Supervisord, within: float = 15.0) -> None:
    """Wait until supervisord answers an XML-RPC call, not merely until its socket accepts: it opens
    its sockets before it installs its signal handlers, and a SIGTERM in between kills it without
    its clean shutdown (the socket file stays)."""
    deadline = time.monotonic() + within
    while True:
        if daemon.process.poll() is not None:
            log = daemon.log.read_text() if daemon.log.exists() else ""
            pytest.fail(f"supervisord exited with {daemon.process.returncode}:\n{log}")
        if daemon.socket_path.exists():
            try:
                with xmlrpc.client.ServerProxy(f"{daemon.http_url}/RPC2") as proxy:
                    proxy.supervisor.getState()
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            pytest.fail(f"supervisord did not answer on {daemon.socket_path} within {within} s")
        time.sleep(0.02)


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, Path]:
    """The programs' scripts, written into the test's folder."""
    written = {}
    for name, text in {"server": SERVER_PY, "fails": FAILS_PY, "exits_later": EXITS_LATER_PY}.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        written[name] = path
    return written


@pytest.fixture
def start_supervisord(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Supervisord]]:
    """Start a real supervisord with the given `[program:NAME]` bodies; stopped at teardown."""
    if not os.path.exists(SUPERVISORD):
        pytest.fail(f"{SUPERVISORD} is missing: install the Debian package `supervisor` (scripts/setup.sh --test)")
    started: list[tuple[Supervisord, str]] = []

    def start(programs: dict[str, str]) -> Supervisord:
        short = tempfile.mkdtemp(prefix="apphub-sv-")
        socket_path = Path(short) / "supervisor.sock"
        folder = tmp_path / f"supervisord-{len(started)}"
        folder.mkdir()
        port = free_port()
        conf = _write_config(folder, socket_path, port, programs)
        log = folder / "supervisord.out"
        with log.open("wb") as out:
            process = subprocess.Popen([SUPERVISORD, "-n", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                       cwd=folder)
        daemon = Supervisord(process, folder, socket_path, port, log)
        started.append((daemon, short))
        _wait_for_socket(daemon)
        return daemon

    yield start
    for daemon, short in started:
        # Teardown kills rather than stops: a clean supervisord shutdown takes about 2 s each.
        if daemon.process.poll() is None:
            daemon.kill_hard()
        for pid in daemon.orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(short, ignore_errors=True)


def server_program(scripts: dict[str, Path], port: int, marker: Path, *, autostart: bool = True,
                   startsecs: int = 1, extra: str = "") -> str:
    """The `[program:x]` body of the HTTP service."""
    return f"""\
        command={PYTHON} {scripts['server']} {port} {marker}
        autostart={'true' if autostart else 'false'}
        startsecs={startsecs}
        autorestart=false
        stopsignal=TERM
        stopwaitsecs=5
        {extra}
        """


# -- loopback HTTP servers for the hook and the probes --------------------------------------------


@dataclass
class Loopback:
    """A real HTTP server on 127.0.0.1 in a thread; `respond` decides each answer, `requests` records them."""

    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    respond: Callable[[str, str], tuple[int, str]] = lambda method, path: (200, "ok")
    delay: float = 0.0
    content_type: str | None = None


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    state = Loopback(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.requests.append((self.command, self.path))
            state.headers.append({name.lower(): value for name, value in self.headers.items()})
            if state.delay:
                time.sleep(state.delay)
            status, body = state.respond(self.command, self.path)
            data = body.encode()
            self.send_response(status)
            if state.content_type is not None:
                self.send_header("Content-Type", state.content_type)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
