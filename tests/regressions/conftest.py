"""Helpers of the regression tests: the real CLI, the audit log read with plain sqlite3, hand edits.

These tests pin the fixes of a code review (see the module docstrings): each one fails on the code
before its fix. The CLI is the real console script next to the interpreter, run as a subprocess.
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from apphub.core import Core
from apphub.paths import DataDir
from tests.conftest import LiveServer, free_port, is_made

APPHUB = Path(sys.executable).parent / "apphub"
MASK = "********"
PROBLEM_JSON = "application/problem+json"

Cli = Callable[..., subprocess.CompletedProcess[str]]


def environment(home: Path) -> dict[str, str]:
    """The test's environment without APPHUB_DATA, and an XDG_DATA_HOME of the test's own."""
    found = {k: v for k, v in os.environ.items() if k != "APPHUB_DATA"}
    found["XDG_DATA_HOME"] = str(home)
    return found


def run_cli(data: DataDir, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`apphub --data-dir DATA ARGS...` as a subprocess; never raises on its exit code."""
    return subprocess.run([str(APPHUB), "--data-dir", str(data.root), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env=environment(data.root.parent / "xdg"))


@pytest.fixture
def cli(data_dir: DataDir) -> Cli:
    """`apphub --data-dir <data_dir> ...`."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(data_dir, *args)

    return run


# -- the audit log, read the way an operator would ---------------------------------------------


@dataclass(frozen=True)
class Event:
    id: int
    actor: str
    source: str
    action: str
    file: str | None
    version_before: str | None
    version_after: str | None
    changes: tuple[tuple[str, str | None, str, str | None, str | None], ...]  # section, key, change, old, new

    @property
    def keys(self) -> set[tuple[str, str | None]]:
        return {(section, key) for section, key, *_ in self.changes}


def events(data: DataDir, action: str | None = None, after: int = 0) -> list[Event]:
    """Audit events (oldest first) with an id above `after`, of one action or all."""
    connection = sqlite3.connect(data.database, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(
            "SELECT * FROM audit_events WHERE id > ? AND (? IS NULL OR action = ?) ORDER BY id",
            (after, action, action)).fetchall()
        found = []
        for row in rows:
            if not is_made(row["state"], row["marker"], row["version_after"], data.root):
                continue  # a write in flight or not made: no change
            changes = connection.execute(
                "SELECT section, key, change, old, new FROM audit_changes WHERE event_id = ? ORDER BY position",
                (row["id"],)).fetchall()
            found.append(Event(row["id"], row["actor"], row["source"], row["action"], row["file"],
                               row["version_before"], row["version_after"], tuple(tuple(c) for c in changes)))
        return found
    finally:
        connection.close()


def last_event_id(data: DataDir) -> int:
    connection = sqlite3.connect(data.database, timeout=30)
    try:
        return int(connection.execute("SELECT COALESCE(MAX(id), 0) FROM audit_events").fetchone()[0])
    finally:
        connection.close()


# -- hand edits ---------------------------------------------------------------------------------


def set_line(path: Path, section: str, key: str, value: str) -> None:
    """Rewrite `key = ...` of `[section]` in place, as an operator with an editor would."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    current = None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
        elif current == section and stripped.split("=", 1)[0].strip() == key:
            lines[number] = f"{key} = {value}\n"
            path.write_text("".join(lines), encoding="utf-8")
            return
    raise AssertionError(f"no [{section}] {key} in {path}")


def insert_after_key(path: Path, section: str, key: str, text: str) -> int:
    """Add the line `text` after `key` of `[section]`; returns its 1-based line number."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    current = None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
        elif current == section and stripped.split("=", 1)[0].strip() == key:
            lines.insert(number + 1, text + "\n")
            path.write_text("".join(lines), encoding="utf-8")
            return number + 2
    raise AssertionError(f"no [{section}] {key} in {path}")


def server_core_of(server: LiveServer) -> Core:
    """The Core the live server's lifespan opened (its app is the one passed to uvicorn)."""
    app = server.server.config.app
    assert isinstance(app, FastAPI)
    core: Core = app.state.core
    return core


# -- `apphub serve` as a real process -----------------------------------------------------------


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def apphub_serve(data: DataDir, folder: Path, timeout: float = 30) -> Iterator[Served]:
    """`apphub serve` on a free port, once /healthz answers; stopped with SIGTERM (then killed) on exit."""
    port = free_port()
    stderr_path = folder / f"serve-{port}.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen([str(APPHUB), "--data-dir", str(data.root), "serve", "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=environment(folder / "xdg"))
    served = Served(f"http://127.0.0.1:{port}", process, stderr_path)
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=served.url, timeout=2.0) as client:
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"apphub serve exited with {process.returncode}:\n{served.stderr()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"apphub serve did not answer /healthz in time:\n{served.stderr()}")
                time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
