"""The quickstart as the tests install it: `examples/quickstart/start.sh DATA` into a short folder,
with free ports for its three demo services, a real supervisord running them, and that supervisord
and its programs stopped at the end whatever happened.

`tests/integration/test_quickstart.py` runs it as a newcomer does; the console's browser tests
(`tests/web/test_console_browser.py`) drive it through the web page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from apphub.paths import DataDir
from apphub.reload.supervisor import SupervisorClient
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
START = REPO / "examples" / "quickstart" / "start.sh"
PROGRAMS = ("hello-json", "hello-ini", "hello-env")


@dataclass
class Quickstart:
    data: DataDir
    demo: Path
    json_port: int
    ini_port: int
    env_port: int
    environment: dict[str, str]

    @property
    def conf(self) -> Path:
        return self.data.root / "supervisor" / "supervisord.conf"

    @property
    def supervisor(self) -> SupervisorClient:
        return SupervisorClient(f"unix://{self.data.root / 'supervisor' / 'supervisor.sock'}", timeout=5.0)

    @property
    def json_file(self) -> Path:
        return self.demo / "hello-json" / "config.json"

    @property
    def ini_file(self) -> Path:
        return self.demo / "hello-ini" / "config.ini"

    def start(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(START), str(self.data.root)], capture_output=True, text=True,
                              timeout=90, check=False, env=self.environment)

    def pid(self, program: str) -> int:
        return int(self.supervisor.state(program)["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_supervisord(quickstart: Quickstart) -> None:
    """`supervisorctl shutdown`, then wait for supervisord and its programs to be gone (killed if not)."""
    pidfile = quickstart.data.root / "supervisor" / "supervisord.pid"
    if not pidfile.exists():
        return
    daemon = int(pidfile.read_text().strip() or 0)
    programs = []
    for program in PROGRAMS:
        with contextlib.suppress(Exception):
            programs.append(quickstart.pid(program))
    subprocess.run(["supervisorctl", "-c", str(quickstart.conf), "shutdown"], capture_output=True, timeout=30,
                   check=False)
    deadline = time.monotonic() + 20
    while daemon and _alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [daemon, *programs]:
        if pid and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def quickstart_folder(xdg_home: Path) -> Iterator[Quickstart]:
    """A quickstart not installed yet (`.start()` installs and starts it), with three free ports;
    its supervisord is shut down and its folders deleted on exit."""
    environment = {k: v for k, v in os.environ.items() if k != "APPHUB_DATA"}
    ports = free_port(), free_port(), free_port()
    while len(set(ports)) < 3:
        ports = free_port(), free_port(), free_port()
    environment.update(QUICKSTART_JSON_PORT=str(ports[0]), QUICKSTART_INI_PORT=str(ports[1]),
                       QUICKSTART_ENV_PORT=str(ports[2]), XDG_DATA_HOME=str(xdg_home))
    # In a short folder under /tmp, not tmp_path: supervisord's socket is DATA/supervisor/supervisor.sock,
    # and it binds it under that path plus a suffix, all within a unix socket's 108 bytes; tmp_path of a
    # long test name, longer still under pytest-xdist (.../popen-gw0/...), does not leave room for it.
    short = Path(tempfile.mkdtemp(prefix="apphub-qs-"))
    made = Quickstart(DataDir(short / "data"), short / "data-quickstart", *ports, environment)
    try:
        yield made
    finally:
        stop_supervisord(made)
        shutil.rmtree(short, ignore_errors=True)


def health(port: int) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=3.0)
    return response.status_code, response.json()


def services_status(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/sync/status")
    assert answer.status_code == 200, answer.text
    return {service["service"]: service for service in answer.json()["services"]}


def settled(client: httpx.Client, version: str) -> dict[str, dict[str, Any]] | None:
    """The status once every service is applied at `version`, else None."""
    found = services_status(client)
    if set(found) == set(PROGRAMS) and all(s["state"] == "applied" and s["applied_version"] == version
                                           for s in found.values()):
        return found
    return None
