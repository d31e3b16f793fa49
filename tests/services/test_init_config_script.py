"""init-config.sh against a stand-in of apphub's services API, no container: fast and exact.

The stand-in (Python's http.server on loopback, in a thread) answers as the contract says:
`GET /healthz`, `GET /api/v1/services/{name}/dependencies?format=text` (first line `ready` or
`waiting`, then `NAME HEALTH REASON...`) and `GET /api/v1/services/{name}/config?format=tar`
(`files/<path>` members with their modes, and `env` holding `export NAME='value'` lines), with
`x-api-key` checked: an unknown key is 401, a key of another service 403 with an RFC 9457 body.

The script runs three ways, since images differ: busybox sh with busybox wget only (a minimal
image; Debian's busybox wget has no -T, so the script's watchdog bounds each request), busybox
sh with curl, and dash with curl and GNU tools (a Debian-based image). Every run also checks
that neither the key nor a secret (a file's contents, an env value) reached its output.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "src" / "apphub" / "services" / "init-config.sh"
BUSYBOX = Path("/bin/busybox")
KEY = "ahk_0123456789ab_app-key-Secret_value-xyz"
OTHER_KEY = "ahk_ba9876543210_other-key-Secret_value"
SECRET = "s3cr3t-Pa$$ 'quoted' \"double\" `tick`"
FILE_SECRET = "password = file-Secret-Contents-42"
# What the script needs from busybox, as links in the busybox-only flavour's PATH.
APPLETS = ("sh", "wget", "tar", "mkdir", "cp", "mv", "rm", "sed", "grep", "cut", "tr", "cat", "date", "sleep",
           "mktemp", "chmod", "printf", "kill", "stat", "chown", "env")


def env_line(name: str, value: str) -> str:
    return f"export {name}='" + value.replace("'", "'\\''") + "'\n"


def config_tar(files: dict[str, tuple[str, int]], env: dict[str, str], *, extra: list[tarfile.TarInfo] | None = None,
               ) -> bytes:
    """The archive of GET .../config?format=tar: files/<path> with their modes, and env."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo("files/" + path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 1_000_000_000
            tar.addfile(info, io.BytesIO(data))
        data = "".join(env_line(name, value) for name, value in env.items()).encode()
        info = tarfile.TarInfo("env")
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
        for member in extra or []:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


APP_FILES = {
    "/etc/app/app.ini": (f"[db]\n{FILE_SECRET}\n", 0o600),
    "/etc/app/public.conf": ("listen = 8080\n", 0o644),
    "/srv/app/deep/er/run.sh": ("#!/bin/sh\necho hi\n", 0o755),
}
APP_ENV = {"APP_SECRET": SECRET, "APP_MODE": "prod", "APP_MULTI": "line one\nline two", "APP_EMPTY": ""}


def problem(status: int, detail: str) -> tuple[int, bytes, str]:
    title = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return status, json.dumps(body).encode(), "application/problem+json"


@dataclass
class StandIn:
    """apphub's side of the contract; tests change the answers while the script runs."""

    port: int
    keys: dict[str, str] = field(default_factory=lambda: {KEY: "app", OTHER_KEY: "other"})
    services: set[str] = field(default_factory=lambda: {"app", "dep", "other"})
    health: int = 200
    # (status, body): one per request, the last one repeated
    dependencies: list[tuple[int, str]] = field(default_factory=lambda: [(200, "ready\ndep healthy\n")])
    config: list[tuple[int, bytes, str]] = field(default_factory=list)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, route: str) -> int:
        return sum(1 for path, _ in self.requests if urlsplit(path).path.endswith(route))

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                stand_in.requests.append((self.path, self.headers.get("x-api-key")))
                status, body, kind = stand_in.answer(self.path, self.headers.get("x-api-key"))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def answer(self, target: str, key: str | None) -> tuple[int, bytes, str]:
        url = urlsplit(target)
        if url.path == "/healthz":
            return self.health, b'{"status":"ok"}', "application/json"
        parts = url.path.split("/")
        if len(parts) != 6 or parts[:4] != ["", "api", "v1", "services"]:
            return problem(404, f"no route {url.path}")
        name, what = parts[4], parts[5]
        if key not in self.keys:
            return problem(401, "a valid x-api-key header is required")
        if self.keys[key] != name:
            return problem(403, f"this key may read only service {self.keys[key]!r}, not {name!r}")
        if name not in self.services:
            return problem(404, f"no service {name!r} in services.yaml")
        if what == "dependencies" and url.query == "format=text":
            status, text = self.dependencies[0] if len(self.dependencies) == 1 else self.dependencies.pop(0)
            return status, text.encode(), "text/plain; charset=utf-8"
        if what == "config" and url.query == "format=tar":
            return self.config[0] if len(self.config) == 1 else self.config.pop(0)
        return problem(404, f"no route {url.path}?{url.query}")


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    served = StandIn(free_port(), config=[(200, config_tar(APP_FILES, APP_ENV), "application/x-tar")])
    served.start()
    try:
        yield served
    finally:
        served.stop()


@dataclass
class Flavour:
    name: str
    argv: list[str]
    path: str

    @property
    def keeps_error_bodies(self) -> bool:
        return "curl" in self.name


@pytest.fixture(scope="module")
def busybox_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.is_file():
        pytest.fail(f"these tests need {BUSYBOX}: apt-get install -y busybox-static")
    folder = tmp_path_factory.mktemp("busybox-bin")
    for applet in APPLETS:
        (folder / applet).symlink_to(BUSYBOX)
    return folder


@pytest.fixture(params=["busybox-wget", "busybox-curl", "dash-curl"])
def flavour(request: pytest.FixtureRequest, busybox_bin: Path) -> Flavour:
    name = request.param
    if "curl" in name and shutil.which("curl") is None:
        pytest.fail("these tests need curl: apt-get install -y curl")
    if name == "busybox-wget":
        return Flavour(name, [str(BUSYBOX), "sh", str(SCRIPT)], str(busybox_bin))
    if name == "busybox-curl":
        return Flavour(name, [str(BUSYBOX), "sh", str(SCRIPT)], f"{busybox_bin}:/usr/bin:/bin")
    dash = shutil.which("dash")
    if dash is None:
        pytest.fail("these tests need dash (Debian's /bin/sh)")
    return Flavour(name, [dash, str(SCRIPT)], "/usr/bin:/bin")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Script:
    """init-config.sh in one flavour, writing under `root`; `tmp` is its TMPDIR."""

    flavour: Flavour
    url: str
    root: Path
    tmp: Path
    out: Path

    def environment(self, **extra: str | None) -> dict[str, str]:
        environment = {"PATH": self.flavour.path, "TMPDIR": str(self.tmp), "APPHUB_URL": self.url,
                       "APPHUB_SERVICE": "app", "APPHUB_KEY": KEY, "APPHUB_ROOT": str(self.root),
                       "APPHUB_WAIT": "5", "APPHUB_DEPS_WAIT": "5", "LC_ALL": "C"}
        for name, value in extra.items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        return environment

    def start(self, *args: str, **extra: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.flavour.argv, *args], env=self.environment(**extra), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def finish(self, process: subprocess.Popen[str], started: float, timeout: float = 30) -> Run:
        stdout, stderr = process.communicate(timeout=timeout)
        run = Run(process.returncode, stdout, stderr, time.monotonic() - started)
        for secret in (KEY, OTHER_KEY, SECRET, FILE_SECRET, "line two"):
            assert secret not in run.stdout + run.stderr, f"{secret!r} printed: {run.stderr}"
        return run

    def run(self, *args: str, timeout: float = 30, **extra: str | None) -> Run:
        started = time.monotonic()
        return self.finish(self.start(*args, **extra), started, timeout)

    def echo_env(self) -> list[str]:
        """An original entrypoint that records its arguments and environment in `out`."""
        return ["sh", "-c", 'for a in "$@"; do printf "arg[%s]\\n" "$a"; done > "$0/args"; env > "$0/env";'
                ' printf "%s" "$APP_SECRET" > "$0/secret"; printf "%s" "$APP_MULTI" > "$0/multi"', str(self.out)]

    def leftovers(self) -> list[str]:
        """Temporary folders or staged files the script left behind."""
        staged = [str(p) for p in self.root.rglob("*.init-config.tmp")]
        return staged + [p.name for p in self.tmp.iterdir()]


@pytest.fixture
def script(flavour: Flavour, stand_in: StandIn, tmp_path: Path) -> Script:
    made = Script(flavour, stand_in.url, tmp_path / "root", tmp_path / "tmp", tmp_path / "out")
    for folder in (made.root, made.tmp, made.out):
        folder.mkdir()
    return made


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the normal start -----------------------------------------------------------------------


def test_writes_the_files_with_their_modes_and_execs_with_the_environment(script: Script, stand_in: StandIn) -> None:
    run = script.run(*script.echo_env(), "an arg with  spaces", "it's", "", "$HOME", "*")

    assert run.returncode == 0, run.stderr
    for path, (text, bits) in APP_FILES.items():
        written = script.root / path.lstrip("/")
        assert written.read_text() == text
        assert mode(written) == bits, path
    assert (script.out / "args").read_text() == "arg[an arg with  spaces]\narg[it's]\narg[]\narg[$HOME]\narg[*]\n"
    assert (script.out / "secret").read_text() == SECRET
    assert (script.out / "multi").read_text() == "line one\nline two"
    environment = (script.out / "env").read_text()
    assert "APP_MODE=prod\n" in environment
    assert "APP_EMPTY=\n" in environment
    assert KEY not in environment
    assert "APPHUB_KEY=" not in environment
    assert "APPHUB_SERVICE=app\n" in environment
    assert "service app: 3 file(s) and 4 variable(s) from apphub; starting sh" in run.stderr
    assert script.leftovers() == []
    assert stand_in.requests[0] == ("/healthz", None)
    assert [key for _, key in stand_in.requests[1:]] == [KEY, KEY]


def test_without_arguments_it_fetches_and_exits_0(script: Script) -> None:
    run = script.run()

    assert run.returncode == 0, run.stderr
    assert (script.root / "etc/app/app.ini").read_text() == APP_FILES["/etc/app/app.ini"][0]
    assert script.leftovers() == []


def test_a_file_is_replaced_by_rename_not_rewritten_in_place(script: Script) -> None:
    target = script.root / "etc/app/app.ini"
    target.parent.mkdir(parents=True)
    target.write_text("old\n")
    target.chmod(0o644)
    held = target.open()  # a reader that opened the old file keeps reading the old file
    before = target.stat().st_ino
    try:
        run = script.run()
        assert run.returncode == 0, run.stderr
        assert target.stat().st_ino != before
        assert held.read() == "old\n"
    finally:
        held.close()
    assert target.read_text() == APP_FILES["/etc/app/app.ini"][0]
    assert mode(target) == 0o600


def test_the_key_file_is_preferred_and_its_line_end_ignored(script: Script, stand_in: StandIn, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\r\n")
    run = script.run(APPHUB_KEY_FILE=str(key_file), APPHUB_KEY="not-the-key")

    assert run.returncode == 0, run.stderr
    assert {key for _, key in stand_in.requests[1:]} == {KEY}


def test_an_existing_file_keeps_its_owner_and_takes_the_archives_mode(script: Script) -> None:
    """As apphub's own sync: Gitea's app.ini is git's (uid 1000), and Gitea must still read it."""
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner takes root")
    target = script.root / "etc/app/app.ini"
    target.parent.mkdir(parents=True)
    target.write_text("old\n")
    os.chown(target, 1000, 1001)
    run = script.run()

    assert run.returncode == 0, run.stderr
    assert (target.stat().st_uid, target.stat().st_gid) == (1000, 1001)
    assert mode(target) == 0o600
    assert target.read_text() == APP_FILES["/etc/app/app.ini"][0]


def test_a_changed_mode_is_applied_to_an_existing_file(script: Script, stand_in: StandIn) -> None:
    target = script.root / "etc/app/public.conf"
    target.parent.mkdir(parents=True)
    target.write_text("old\n")
    target.chmod(0o666)
    run = script.run()

    assert run.returncode == 0, run.stderr
    assert mode(target) == 0o644


# -- waiting for apphub ----------------------------------------------------------------------


def test_waits_for_apphub_that_comes_up_late(script: Script, stand_in: StandIn) -> None:
    stand_in.stop()
    started = time.monotonic()
    process = script.start(*script.echo_env(), APPHUB_WAIT="20")
    time.sleep(1.5)
    stand_in.start()
    run = script.finish(process, started)

    assert run.returncode == 0, run.stderr
    assert f"init-config: waiting for apphub at {stand_in.url} (attempt 1): " in run.stderr
    assert (script.out / "secret").read_text() == SECRET


def test_apphub_that_answers_503_is_waited_for(script: Script, stand_in: StandIn) -> None:
    stand_in.health = 503
    threading.Timer(1.0, lambda: setattr(stand_in, "health", 200)).start()
    run = script.run()

    assert run.returncode == 0, run.stderr
    assert f"waiting for apphub at {stand_in.url} (attempt 1): HTTP 503" in run.stderr


def test_apphub_never_up_is_exit_69_within_the_wait(script: Script, stand_in: StandIn) -> None:
    stand_in.stop()
    run = script.run("sh", "-c", "exit 0", APPHUB_WAIT="2")

    assert run.returncode == 69, run.stderr
    assert f"init-config: apphub did not come up at {stand_in.url} within 2 s" in run.stderr
    assert "waiting for apphub" in run.stderr
    assert run.seconds < 2 + 2.5
    assert script.leftovers() == []


def test_apphub_that_accepts_but_never_answers_is_bounded(script: Script) -> None:
    """A connection that hangs (a stuck server, a half-open proxy): each request has a time limit."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        run = script.run(APPHUB_URL=url, APPHUB_WAIT="2", timeout=20)

    assert run.returncode == 69, run.stderr
    assert "no answer within" in run.stderr
    assert run.seconds < 2 + 3.5


# -- waiting for the dependencies ------------------------------------------------------------


def test_waits_until_the_dependencies_are_healthy(script: Script, stand_in: StandIn) -> None:
    waiting = "waiting\ndep down tcp: 127.0.0.1:4242: connection refused\ncache healthy\n"
    stand_in.dependencies = [(200, waiting)] * 4 + [(200, "ready\ndep healthy\ncache healthy\n")]
    run = script.run(*script.echo_env())

    assert run.returncode == 0, run.stderr
    assert ("init-config: waiting for the dependencies of service app (attempt 1): "
            "dep down (tcp: 127.0.0.1:4242: connection refused)") in run.stderr
    assert "cache" not in run.stderr
    assert stand_in.hits("/dependencies") == 5
    assert (script.out / "secret").read_text() == SECRET


def test_dependencies_never_healthy_is_exit_75_naming_them(script: Script, stand_in: StandIn) -> None:
    stand_in.dependencies = [(200, "waiting\r\ndep unhealthy http: 503 from /health\r\ndb unknown\r\n")]
    run = script.run("sh", "-c", "exit 0", APPHUB_DEPS_WAIT="2")

    assert run.returncode == 75, run.stderr
    assert ("the dependencies of service app did not become healthy within 2 s"
            in run.stderr), run.stderr
    assert "dep unhealthy (http: 503 from /health); db unknown" in run.stderr
    assert stand_in.hits("/config") == 0
    assert not (script.root / "etc").exists()


def test_apphub_failing_while_waiting_for_dependencies_is_retried(script: Script, stand_in: StandIn) -> None:
    stand_in.dependencies = [(500, "boom"), (200, "nonsense\n"), (200, "ready\n")]
    run = script.run()

    assert run.returncode == 0, run.stderr
    assert "(attempt 1): apphub: HTTP 500" in run.stderr
    assert "does not begin with 'ready' or 'waiting'" in run.stderr


# -- refusals --------------------------------------------------------------------------------


def test_a_key_of_another_service_is_exit_77_without_retry(script: Script, stand_in: StandIn) -> None:
    run = script.run("sh", "-c", "exit 0", APPHUB_KEY=OTHER_KEY)

    assert run.returncode == 77, run.stderr
    assert "apphub refused the key for service app (HTTP 403" in run.stderr
    if script.flavour.keeps_error_bodies:
        assert "this key may read only service 'other', not 'app'" in run.stderr
    assert "apphub services key app" in run.stderr
    assert stand_in.hits("/dependencies") == 1
    assert stand_in.hits("/config") == 0


def test_an_unknown_key_is_exit_77(script: Script, stand_in: StandIn) -> None:
    run = script.run(APPHUB_KEY="ahk_nothing_like_it")

    assert run.returncode == 77, run.stderr
    assert "apphub refused the key for service app (HTTP 401: not a valid key; check APPHUB_KEY)" in run.stderr
    assert stand_in.hits("/dependencies") == 1


def test_refused_at_the_config_is_exit_77(script: Script, stand_in: StandIn) -> None:
    stand_in.config = [problem(403, "key 'k' was revoked")]
    run = script.run()

    assert run.returncode == 77, run.stderr
    assert "apphub refused the key for service app (HTTP 403" in run.stderr
    assert stand_in.hits("/config") == 1


def test_no_such_service_is_exit_78(script: Script, stand_in: StandIn) -> None:
    stand_in.keys[KEY] = "nosuch"
    run = script.run(APPHUB_SERVICE="nosuch")

    assert run.returncode == 78, run.stderr
    assert "apphub has no service 'nosuch' (HTTP 404" in run.stderr
    assert stand_in.hits("/dependencies") == 1


@pytest.mark.parametrize(("unset", "set_", "message"), [
    ("APPHUB_URL", {}, "APPHUB_URL is not set"),
    ("APPHUB_SERVICE", {}, "APPHUB_SERVICE is not set"),
    ("APPHUB_KEY", {}, "no key for service app: set APPHUB_KEY_FILE"),
    (None, {"APPHUB_KEY_FILE": "/nonexistent/key"}, "APPHUB_KEY_FILE /nonexistent/key cannot be read (service app)"),
    (None, {"APPHUB_WAIT": "soon"}, "APPHUB_WAIT 'soon' is not a number of seconds"),
    (None, {"APPHUB_SERVICE": "../app"}, "APPHUB_SERVICE '../app' is not a service name"),
    (None, {"APPHUB_URL": "127.0.0.1:8080"}, "APPHUB_URL '127.0.0.1:8080' is not an http:// or https:// address"),
    (None, {"APPHUB_KEY": "two words"}, "the key in APPHUB_KEY holds characters a key cannot have"),
])
def test_configuration_errors_are_exit_78(script: Script, stand_in: StandIn, unset: str | None,
                                          set_: dict[str, str], message: str) -> None:
    overrides: dict[str, str | None] = {**({unset: None} if unset else {}), **set_}
    run = script.finish(script.start("sh", "-c", "exit 0", **overrides), time.monotonic())

    assert run.returncode == 78, run.stderr
    assert f"init-config: {message}" in run.stderr
    assert stand_in.requests == []


# -- the fetch -------------------------------------------------------------------------------


def test_a_failing_fetch_is_retried(script: Script, stand_in: StandIn) -> None:
    good = stand_in.config[0]
    stand_in.config = [(500, b"oops", "text/plain"), (502, b"", "text/plain"), good]
    run = script.run()

    assert run.returncode == 0, run.stderr
    assert "fetching the configuration of service app (attempt 1): HTTP 500" in run.stderr
    assert stand_in.hits("/config") == 3


def test_a_fetch_that_keeps_failing_is_exit_70(script: Script, stand_in: StandIn) -> None:
    stand_in.config = [(500, b"oops", "text/plain")]
    run = script.run("sh", "-c", "exit 0")

    assert run.returncode == 70, run.stderr
    assert "cannot fetch the configuration of service app from" in run.stderr
    assert "(5 attempts): HTTP 500" in run.stderr
    assert stand_in.hits("/config") == 5
    assert script.leftovers() == []


def test_an_answer_that_is_not_a_tar_is_exit_70(script: Script, stand_in: StandIn) -> None:
    stand_in.config = [(200, b"<html>a proxy's error page</html>" * 40, "text/html")]
    run = script.run()

    assert run.returncode == 70, run.stderr
    assert "the answer is not a tar archive" in run.stderr


@pytest.mark.parametrize("name", ["files/../../escaped", "/etc/escaped", "other/file"])
def test_a_member_outside_files_is_refused(script: Script, stand_in: StandIn, name: str, tmp_path: Path) -> None:
    member = tarfile.TarInfo(name)
    member.size = 1
    stand_in.config = [(200, config_tar(APP_FILES, {}, extra=[member]), "application/x-tar")]
    run = script.run()

    assert run.returncode == 70, run.stderr
    assert "apphub's archive for service app holds" in run.stderr
    assert not (tmp_path / "escaped").exists()
    assert not (script.root / "etc").exists()


def test_a_symlink_member_is_refused(script: Script, stand_in: StandIn) -> None:
    link = tarfile.TarInfo("files/etc/app/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    stand_in.config = [(200, config_tar({}, {}, extra=[link]), "application/x-tar")]
    run = script.run()

    assert run.returncode == 70, run.stderr
    assert "holds files/etc/app/link, which is not a regular file" in run.stderr


def test_a_folder_in_the_way_is_exit_73(script: Script) -> None:
    (script.root / "etc/app/app.ini").mkdir(parents=True)
    run = script.run()

    assert run.returncode == 73, run.stderr
    assert f"cannot write {script.root}/etc/app/app.ini: a folder is in the way" in run.stderr
    assert script.leftovers() == []


def test_a_service_without_files_or_variables_starts(script: Script, stand_in: StandIn) -> None:
    stand_in.config = [(200, config_tar({}, {}), "application/x-tar")]
    run = script.run("sh", "-c", 'echo started > "$0/started"', str(script.out))

    assert run.returncode == 0, run.stderr
    assert (script.out / "started").read_text() == "started\n"
    assert "0 file(s) and 0 variable(s)" in run.stderr


def test_the_exit_status_is_the_services_own(script: Script) -> None:
    run = script.run("sh", "-c", "exit 42")

    assert run.returncode == 42


def test_a_term_while_waiting_removes_the_temporary_folder(script: Script, stand_in: StandIn) -> None:
    stand_in.stop()
    started = time.monotonic()
    process = script.start(APPHUB_WAIT="30")
    deadline = time.monotonic() + 10
    while not os.listdir(script.tmp):  # its private folder exists: it is waiting
        assert time.monotonic() < deadline, "init-config.sh made no temporary folder"
        time.sleep(0.02)
    time.sleep(0.3)
    process.terminate()
    run = script.finish(process, started)

    assert run.returncode == 143, run.stderr
    assert script.leftovers() == []
