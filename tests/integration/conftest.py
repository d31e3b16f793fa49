"""Integration helpers: `apphub serve` as a real subprocess (real uvicorn), and the CLI as one too.

`serve` starts `.venv/bin/apphub --data-dir D serve --port P`, waits until `GET /healthz` answers,
keeps its stdout and stderr in files (the logs tests read), and stops it with SIGTERM at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.paths import DataDir
from tests.conftest import free_port, serving

APPHUB = Path(sys.executable).parent / "apphub"


def cli_environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "APPHUB_DATA"}
    environment["XDG_DATA_HOME"] = str(home)
    environment.update(extra or {})
    return environment


def run_cli(data: DataDir, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`apphub --data-dir DATA ARGS...` as a subprocess; text output, never raises on exit codes."""
    return subprocess.run(
        [str(APPHUB), "--data-dir", str(data.root), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env=cli_environment(data.root.parent / "xdg"),
    )


@dataclass
class ServeProcess:
    """One running `apphub serve`."""

    url: str
    data: DataDir
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    returncode: int | None = field(default=None)

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"x-api-key": key} if key is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def logs(self) -> bytes:
        """Everything the server printed so far, stdout and stderr."""
        return self.stdout_path.read_bytes() + self.stderr_path.read_bytes()

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait; a server that does not stop in time is killed and the test fails."""
        if self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"apphub serve did not stop within {timeout} s of SIGTERM") from None
        self.returncode = self.process.returncode
        return self.returncode


StartServe = Callable[..., ServeProcess]


def assert_stops_cleanly(server: ServeProcess) -> None:
    """SIGTERM ends the server through its lifespan's shutdown.

    uvicorn re-raises the signal it caught once shutdown is done, so the exit status is -SIGTERM
    (or 0 with older versions); the log line says whether the shutdown ran.
    """
    assert server.stop() in (0, -signal.SIGTERM)
    assert b"Application shutdown complete." in server.logs()


def _wait_until_healthy(server: ServeProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"apphub serve exited with {server.process.returncode}:\n"
                                   + server.logs().decode(errors="replace"))
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("apphub serve did not answer /healthz in time:\n"
                                   + server.logs().decode(errors="replace"))
            time.sleep(0.05)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServe]:
    """A factory: `serve(data, log_level="info")` starts `apphub serve` on a free port and waits for it."""
    started: list[ServeProcess] = []

    def start(data: DataDir, log_level: str = "info") -> ServeProcess:
        port = free_port()
        number = len(started)
        stdout_path = tmp_path / f"serve-{number}.stdout"
        stderr_path = tmp_path / f"serve-{number}.stderr"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [str(APPHUB), "--data-dir", str(data.root), "serve", "--port", str(port), "--log-level", log_level],
                stdout=stdout, stderr=stderr, env=cli_environment(tmp_path / "xdg"),
            )
        server = ServeProcess(f"http://127.0.0.1:{port}", data, process, stdout_path, stderr_path)
        started.append(server)
        _wait_until_healthy(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()


def audit_db(data: DataDir) -> sqlite3.Connection:
    """A plain sqlite3 connection to the audit database (read it the way an operator would)."""
    connection = sqlite3.connect(data.database, timeout=30)
    connection.row_factory = sqlite3.Row
    return connection


LOAD_SCHEMA = """\
config:
  sections:
    load:
      description: Keys the integration tests write
      extra_keys: true
      keys:
        counter: {type: int, default: 0, min: 0, apply: hot}
"""


def add_load_section(data: DataDir) -> None:
    """Allow a `[load]` section with any keys (a schema.d file, as an operator would add it)."""
    (data.schema_dir / "50-load.yaml").write_text(LOAD_SCHEMA, encoding="utf-8")


@contextlib.contextmanager
def admin_api(data: DataDir, timeout: float = 60.0) -> Iterator[httpx.Client]:
    """`data` served in this process (sync engine included), and a client with its admin key; a
    `?wait=true` that recreates a container or restarts a program may take a while."""
    key = data.admin_key.read_text().strip()
    with serving(data) as live, httpx.Client(base_url=live.url, headers={"x-api-key": key},
                                             timeout=timeout) as client:
        yield client


def eventually(condition: Callable[[], Any], what: str, within: float) -> Any:
    """Poll until `condition()` is truthy (exceptions count as not yet); its value. Fails with `what`."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g} s: {what} (last: {last!r})")
        time.sleep(0.05)
