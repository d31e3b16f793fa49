"""The sync engine against a real supervisord (Debian's 4.2.5), end to end through the API.

The services are the quickstart's demo programs (examples/quickstart/bin), run by a supervisord of
the test's own (tests/reload/conftest.py `start_supervisord`), with a schema and a manifest
written here: a restart and a signal; a program that cannot start with its new settings (gate
fails, previous files back, running the old version); supervisord down at the time of a change
(clear error, nothing lost, applied by the engine's retry once it is back); and `apphub serve`
killed in the middle of a restart, then started again.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir
from tests.conftest import LiveServer, free_port, serving
from tests.integration.conftest import StartServe, eventually
from tests.reload.conftest import PYTHON, SUPERVISORD, Supervisord, _wait_for_socket, start_supervisord

__all__ = ["start_supervisord"]  # a fixture, used by name

BIN = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "bin"
TEST_ACTOR = Actor("test", "cli")

# A server that drains for `drain` seconds on SIGTERM, as a real one finishes its requests: a
# supervisord restart of it spends that long in STOPPING, long enough to kill apphub in the middle.
SLOW_STOP_PY = textwrap.dedent("""\
    import http.server, json, os, signal, sys, time

    path = sys.argv[1]
    while not os.path.exists(path):  # a TERM while it waits ends it at once (the default action)
        time.sleep(0.1)
    with open(path) as handle:
        config = json.load(handle)

    def drain(signum, frame):
        time.sleep(config["drain"])
        os._exit(0)

    signal.signal(signal.SIGTERM, drain)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"pid": os.getpid(), "greeting": config["greeting"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", config["port"]), Handler).serve_forever()
""")


def make_data(root: Path, schema: str, manifest: str, *, roots: list[Path], **sync: str) -> DataDir:
    """A data folder as an operator sets it up: schema.d first (so config.ini has its keys), init,
    system.ini [sync] (roots, and supervisor_url / docker_url from `sync`), then services.yaml."""
    data = DataDir(root)
    data.schema_dir.mkdir(parents=True)
    (data.schema_dir / "50-test.yaml").write_text(textwrap.dedent(schema), encoding="utf-8")
    initialise(data)
    core = Core(data)
    try:
        core.system.update({"sync": {"roots": [str(path) for path in roots], **sync}}, TEST_ACTOR)
    finally:
        core.close()
    (data.root / "services.yaml").write_text(textwrap.dedent(manifest), encoding="utf-8")
    return data


def get_json(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=3.0)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def services_status(api: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = api.get("/api/v1/sync/status")
    assert answer.status_code == 200, answer.text
    return {service["service"]: service for service in answer.json()["services"]}


def settled(api: httpx.Client, names: tuple[str, ...]) -> bool:
    version = api.get("/api/v1/settings").json()["version"]
    found = services_status(api)
    return all(found.get(name, {}).get("state") == "applied" and found[name]["applied_version"] == version
               for name in names)


def outcomes(answer: httpx.Response) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    sync = answer.json()["sync"]
    assert sync["done"] is True, sync
    return {outcome["service"]: outcome for outcome in sync["services"]}


def restart_supervisord(daemon: Supervisord) -> None:
    """Start supervisord again on the same config and socket (the fixture's teardown stops this one)."""
    log = daemon.folder / "supervisord-again.out"
    with log.open("wb") as out:
        daemon.process = subprocess.Popen([SUPERVISORD, "-n", "-c", str(daemon.folder / "supervisord.conf")],
                                          stdout=out, stderr=subprocess.STDOUT, cwd=daemon.folder)
    _wait_for_socket(daemon)


# -- the two demo services ------------------------------------------------------------------------


class Demo:
    """hello-json as program `api` and hello-ini as program `web`, under a real supervisord."""

    def __init__(self, tmp_path: Path, start: Callable[[dict[str, str]], Supervisord]) -> None:
        self.root = tmp_path / "srv"
        (self.root / "api").mkdir(parents=True)
        (self.root / "web").mkdir()
        self.api_file = self.root / "api" / "config.json"
        self.web_file = self.root / "web" / "config.ini"
        self.api_port, self.web_port = free_port(), free_port()
        self.daemon = start({
            "api": self._program("hello_json.py", self.api_file),
            "web": self._program("hello_ini.py", self.web_file),
        })
        self.data = make_data(tmp_path / "data", f"""\
            config:
              sections:
                api:
                  keys:
                    port: {{type: port, default: {self.api_port}, apply: restart}}
                    greeting: {{type: string, default: first greeting, apply: restart}}
                    color: {{type: string, default: teal, apply: hot}}
                web:
                  keys:
                    port: {{type: port, default: {self.web_port}, apply: restart}}
                    title: {{type: string, default: first title, apply: reload}}
                    token: {{type: string, secret: true, generate: token_hex, apply: reload}}
            """, f"""\
            services:
              api:
                files:
                  - path: {self.api_file}
                    mode: merge
                    map: {{port: "${{api.port}}", greeting: "${{api.greeting}}", color: "${{api.color}}"}}
                reload:
                  restart: {{strategy: supervisor-restart, program: api, timeout: 20}}
                health:
                  http: "http://127.0.0.1:${{api.port}}/health"  # the version being applied: a new port
                  supervisor: api
                  timeout: 8
              web:
                files:
                  - path: {self.web_file}
                    map:
                      server.port: "${{web.port}}"
                      server.title: "${{web.title}}"
                      auth.token: "${{web.token}}"
                reload:
                  reload: {{strategy: supervisor-signal, program: web, signal: HUP}}
                  restart: {{strategy: supervisor-restart, program: web, timeout: 20}}
                health: {{http: "http://127.0.0.1:{self.web_port}/health", timeout: 8}}
            """, roots=[self.root], supervisor_url=self.daemon.url)

    @staticmethod
    def _program(script: str, config: Path) -> str:
        return f"""\
            command={PYTHON} {BIN / script} {config}
            startsecs=2
            startretries=1
            autorestart=unexpected
            stopwaitsecs=5
            environment=PYTHONUNBUFFERED="1"
            """

    def pid(self, program: str) -> int:
        return int(self.daemon.client().state(program)["pid"])

    def api_health(self, port: int | None = None) -> dict[str, Any]:
        return get_json(f"http://127.0.0.1:{port or self.api_port}/health")

    def web_health(self) -> dict[str, Any]:
        return get_json(f"http://127.0.0.1:{self.web_port}/health")

    @contextlib.contextmanager
    def running(self, admin: Callable[[LiveServer], httpx.Client]) -> Iterator[httpx.Client]:
        """apphub serving the data folder, once its first sync has applied both services."""
        with serving(self.data) as server, admin(server) as api:
            eventually(lambda: settled(api, ("api", "web")), "both services applied after the first sync", 30)
            yield api


@pytest.fixture
def demo(tmp_path: Path, start_supervisord: Callable[[dict[str, str]], Supervisord]) -> Demo:
    return Demo(tmp_path, start_supervisord)


def admin_of(data: DataDir) -> Callable[[LiveServer], httpx.Client]:
    key = data.admin_key.read_text().strip()
    return lambda server: httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60.0)


# -- the tests ------------------------------------------------------------------------------------


def test_restart_and_signal(demo: Demo) -> None:
    with demo.running(admin_of(demo.data)) as api:
        assert demo.api_health()["settings"]["greeting"] == "first greeting"
        api_pid, web_pid = demo.pid("api"), demo.pid("web")

        done = outcomes(api.put("/api/v1/settings/api?wait=true", json={"greeting": "restarted"}))
        assert (done["api"]["result"], done["api"]["action"]) == ("applied", "supervisor-restart")
        assert done["api"]["timings_ms"]["reload"] >= 2000  # supervisord holds it STARTING for startsecs=2
        assert json.loads(demo.api_file.read_text())["greeting"] == "restarted"
        assert demo.pid("api") != api_pid
        assert demo.api_health()["settings"]["greeting"] == "restarted"
        assert demo.pid("web") == web_pid  # it reads nothing that changed

        done = outcomes(api.put("/api/v1/settings/web?wait=true", json={"title": "signalled"}))
        assert (done["web"]["result"], done["web"]["action"]) == ("applied", "supervisor-signal")
        assert "title = signalled" in demo.web_file.read_text()
        body = demo.web_health()
        assert (body["pid"], body["settings"]["title"], body["reloads"]) == (web_pid, "signalled", 1)
        assert demo.pid("web") == web_pid

        # One write touching both: one action per service, the strongest its changed keys need
        # (api: color is hot, greeting restart -> a restart; web: a signal).
        api_pid = demo.pid("api")
        done = outcomes(api.put("/api/v1/settings?wait=true", json={
            "api": {"color": "navy", "greeting": "strongest wins"}, "web": {"title": "both at once"}}))
        assert {name: (o["result"], o["action"]) for name, o in done.items()} == {
            "api": ("applied", "supervisor-restart"), "web": ("applied", "supervisor-signal")}
        assert demo.pid("api") != api_pid
        assert demo.pid("web") == web_pid
        assert demo.api_health()["settings"] == {"port": demo.api_port, "greeting": "strongest wins", "color": "navy"}
        assert demo.web_health()["reloads"] == 2
        status = services_status(api)
        assert {name: (s["state"], s["last_action"]) for name, s in status.items()} == {
            "api": ("applied", "supervisor-restart"), "web": ("applied", "supervisor-signal")}


def without_port_probes(data: DataDir) -> None:
    """The port rule would refuse a port held by another process up front (rules/ports.py): these
    tests are about what happens when a service still fails to start."""
    core = Core(data)
    try:
        core.system.update({"rules": {"port_probes": False}}, Actor("test", "test"))
    finally:
        core.close()


def test_program_that_fails_to_start_gets_its_previous_files_back(demo: Demo) -> None:
    without_port_probes(demo.data)
    with demo.running(admin_of(demo.data)) as api, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        before = demo.api_file.read_bytes()

        answer = api.put("/api/v1/settings/api?wait=true", json={"port": busy_port})
        done = outcomes(answer)
        assert answer.json()["sync"]["ok"] is False
        failed = done["api"]
        assert (failed["result"], failed["action"]) == ("failed", "supervisor-restart")
        version = answer.json()["version"]
        assert failed["error"].startswith(f"failed to apply version {version[:12]}, running the previous one")
        # what supervisord and the program said: the reason is in the error, not only in a log
        assert "SPAWN_ERROR" in failed["error"]
        assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in failed["error"]

        assert demo.api_file.read_bytes() == before  # the previous file is back
        demo.daemon.wait_state("api", "RUNNING")
        body = demo.api_health()  # running again, with the previous settings, on the previous port
        assert (body["settings"]["port"], body["settings"]["greeting"]) == (demo.api_port, "first greeting")
        status = services_status(api)["api"]
        assert status["state"] == "failed"
        assert status["last_error"] == failed["error"]
        assert status["wanted_version"] == version
        # config.ini keeps the version that was asked for: nothing the user wrote is lost
        assert api.get("/api/v1/settings/api").json()["settings"]["port"] == busy_port
        assert services_status(api)["web"]["state"] == "applied"

        # Once the port is free, a sync now applies the version that failed.
        taken.close()
        done = outcomes_of_reload(api.post("/api/v1/settings/reload"))
        assert done["api"]["result"] == "applied", done["api"]
        assert demo.api_health(busy_port)["settings"]["port"] == busy_port
        assert services_status(api)["api"]["state"] == "applied"


def test_status_clears_a_failure_once_config_ini_is_put_back(demo: Demo) -> None:
    """The user undoes a change that failed: the service runs exactly what config.ini asks again,
    so the status must stop saying it failed (without waiting for some later reload)."""
    without_port_probes(demo.data)
    with demo.running(admin_of(demo.data)) as api, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = outcomes(api.put("/api/v1/settings/api?wait=true", json={"port": taken.getsockname()[1]}))
        assert done["api"]["result"] == "failed"
        assert services_status(api)["api"]["state"] == "failed"

        answer = api.put("/api/v1/settings/api?wait=true", json={"port": demo.api_port})
        assert answer.json()["sync"]["ok"] is True, answer.text
        status = services_status(api)["api"]
        assert (status["state"], status["applied_version"], status["last_error"]) == \
            ("applied", answer.json()["version"], None), status


def outcomes_of_reload(answer: httpx.Response) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.json()["done"] is True, answer.text
    return {outcome["service"]: outcome for outcome in answer.json()["services"]}


def test_supervisord_down_then_back(demo: Demo) -> None:
    with demo.running(admin_of(demo.data)) as api:
        before = demo.web_file.read_bytes()
        demo.daemon.stop()  # a clean shutdown: its programs stop, its socket goes

        answer = api.put("/api/v1/settings/web?wait=true", json={"title": "while supervisord was down"})
        failed = outcomes(answer)["web"]
        version = answer.json()["version"]
        assert (failed["result"], failed["action"]) == ("failed", "supervisor-signal")
        assert failed["error"].startswith(f"failed to apply version {version[:12]}")
        assert f"supervisord at {demo.daemon.url} cannot be reached" in failed["error"]
        assert services_status(api)["web"]["last_error"] == failed["error"]
        # nothing lost: config.ini holds the accepted version, the service's file its previous bytes
        assert api.get("/api/v1/settings/web").json()["settings"]["title"] == "while supervisord was down"
        assert demo.web_file.read_bytes() == before

        # supervisord comes back (its programs start with the files they have); the engine's
        # retry (1, 2, 4, ... s after the failure) applies the version without anyone asking.
        restart_supervisord(demo.daemon)
        eventually(lambda: services_status(api)["web"]["state"] == "applied", "the retry applied web", 35)
        assert services_status(api)["web"]["applied_version"] == version
        assert "title = while supervisord was down" in demo.web_file.read_text()
        body = eventually(demo.web_health, "web answering", 10)
        assert body["settings"]["title"] == "while supervisord was down"


def sync_applies(api: httpx.Client) -> int:
    """How many sync.apply events the audit log holds: one per round that acted on a service."""
    return len(api.get("/api/v1/audit", params={"action": "sync.apply", "limit": 500}).json()["entries"])


def test_retries_back_off_while_supervisord_is_down(demo: Demo) -> None:
    """While the backend is unreachable the engine retries 1, 2, 4, ... s apart, not in a loop
    (each attempt rewrites the files twice, logs an error and adds an audit event)."""
    with demo.running(admin_of(demo.data)) as api:
        demo.daemon.stop()
        before = sync_applies(api)
        answer = api.put("/api/v1/settings/web?wait=true", json={"title": "while supervisord was down"})
        assert outcomes(answer)["web"]["result"] == "failed"
        time.sleep(3.5)  # the failed change, then at most the retries 1 s and 3 s after it
        attempts = sync_applies(api) - before
        assert attempts <= 3, f"{attempts} attempts within 3.5 s of the failure: the retries do not back off"


# -- apphub killed in the middle of an apply --------------------------------------------------------


def journal_state(data: DataDir, service: str) -> str | None:
    with contextlib.closing(sqlite3.connect(data.database, timeout=30)) as connection:
        row = connection.execute("SELECT state FROM sync_journal WHERE service = ?", (service,)).fetchone()
    return None if row is None else str(row[0])


def test_apphub_killed_during_a_restart_finishes_it_when_started_again(
        tmp_path: Path, start_supervisord: Callable[[dict[str, str]], Supervisord], serve: StartServe) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    target = root / "slow.json"
    script = tmp_path / "slow_stop.py"
    script.write_text(SLOW_STOP_PY)
    port = free_port()
    daemon = start_supervisord({"slow": f"""\
        command={PYTHON} {script} {target}
        startsecs=2
        autorestart=false
        stopwaitsecs=20
        """})
    data = make_data(tmp_path / "data", f"""\
        config:
          sections:
            slow:
              keys:
                port: {{type: port, default: {port}, apply: restart}}
                greeting: {{type: string, default: before the crash, apply: restart}}
                drain: {{type: int, default: 3, apply: restart}}
        """, f"""\
        services:
          slow:
            files:
              - path: {target}
                map: {{port: "${{slow.port}}", greeting: "${{slow.greeting}}", drain: "${{slow.drain}}"}}
            reload: {{strategy: supervisor-restart, program: slow, timeout: 30}}
            health: {{http: "http://127.0.0.1:{port}/", timeout: 10}}
        """, roots=[root], supervisor_url=daemon.url)
    key = data.admin_key.read_text().strip()
    url = f"http://127.0.0.1:{port}/"

    server = serve(data)
    with server.client(key) as api:
        eventually(lambda: settled(api, ("slow",)), "the first sync applied", 30)
        assert get_json(url)["greeting"] == "before the crash"
        answer = api.put("/api/v1/settings/slow", json={"greeting": "after the crash"})  # no wait
        assert answer.status_code == 200, answer.text
        version = answer.json()["version"]
    daemon.wait_state("slow", "STOPPING", within=10)  # the engine's restart is under way
    server.process.kill()
    server.process.wait(timeout=10)

    # What the crash left: the new file in place, the journal saying `applying`, and the program
    # stopped (supervisord finished the stop; nobody asked it to start the program again).
    assert json.loads(target.read_text())["greeting"] == "after the crash"
    assert journal_state(data, "slow") == "applying"
    daemon.wait_state("slow", "STOPPED", within=15)

    # Its file already holds the wanted bytes, so only the journal can tell it was left half done.
    server = serve(data)
    with server.client(key) as api:
        eventually(lambda: settled(api, ("slow",)), "the restarted apphub finished the apply", 30)
        status = services_status(api)["slow"]
        assert (status["applied_version"], status["last_action"]) == (version, "supervisor-restart")
    assert daemon.client().state("slow")["statename"] == "RUNNING"
    assert get_json(url)["greeting"] == "after the crash"
    assert journal_state(data, "slow") == "applied"
