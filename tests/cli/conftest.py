"""Running the real console script: `.venv/bin/apphub` next to the interpreter, as a subprocess.

Every run gets an environment of its own: no APPHUB_DATA unless a test sets it, and an
XDG_DATA_HOME inside the test's folder, so that a command that forgot --data-dir can never touch
the default data folder of the machine.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from apphub.paths import DataDir

APPHUB = Path(sys.executable).parent / "apphub"

RunApphub = Callable[..., subprocess.CompletedProcess[str]]


def run_apphub(
    *args: str,
    data: DataDir | None,
    home: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`apphub [--data-dir DATA] ARGS...`, its exit code, stdout and stderr as text."""
    environment = {k: v for k, v in os.environ.items() if k != "APPHUB_DATA"}
    environment["XDG_DATA_HOME"] = str(home)
    environment.update(env or {})
    command = [str(APPHUB)] + (["--data-dir", str(data.root)] if data is not None else []) + list(args)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, check=False)


@pytest.fixture
def apphub(data_dir: DataDir, tmp_path: Path) -> RunApphub:
    """Run `apphub --data-dir <data_dir> ...`; pass data=None (and env) to choose the folder otherwise."""
    home = tmp_path / "xdg"

    def run(*args: str, data: DataDir | None = data_dir, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_apphub(*args, data=data, home=home, env=env, timeout=timeout)

    return run


def audit_rows(data: DataDir, sql: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    """Rows of the audit database, read with plain sqlite3 (not through apphub)."""
    connection = sqlite3.connect(data.database)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def changes_of(data: DataDir, action: str | None = None) -> list[sqlite3.Row]:
    """Every recorded change, newest event first, joined with its event."""
    return audit_rows(
        data,
        "SELECT e.id, e.actor, e.source, e.action, e.file, e.version_before, e.version_after,"
        " c.section, c.key, c.change, c.old, c.new"
        " FROM audit_events e JOIN audit_changes c ON c.event_id = e.id"
        " WHERE ? IS NULL OR e.action = ?"
        " ORDER BY e.id DESC, c.position",
        (action, action),
    )
