"""A full disk under the data folder: a write either is made and audited, or is refused and not made.

The data folder lives on a real tmpfs of a few MiB. A filler file takes all of its room, then gives
back a little (a few KiB, several levels: where the write fails moves with it: the staged file, the
audit database's WAL, its commit). At every level, writes through the API and the CLI must each
end one of two ways: made (200, config.ini holds the value, the audit log has the event with its
actor and request id) or refused with a clear error that names the full disk (507 over the API)
and not made (config.ini byte for byte as before, no audit event); reads keep being served, and
nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.bootstrap import initialise
from apphub.paths import DataDir
from apphub.store.atomic import TEMP_SUFFIX
from apphub.store.snapshot import version_of
from tests.conftest import is_made
from tests.integration.conftest import StartServe, audit_db, run_cli

DISK_BYTES = 8 * 1024 * 1024
# How much room the filler gives back before each round of writes. The history's commits of the
# versions that waited (it cannot commit on a full disk either) take the first room given back: the
# last levels leave room for writes after them.
FREE_LEVELS = (0, 1024, 4096, 8192, 12288, 16384, 24576, 32768, 65536, 131072, 262144, 524288)
WRITES_PER_LEVEL = 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs",
                              str(mount_point)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


class Filler:
    """A file that takes every free byte of a file system, then gives back as many as asked."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "filler"

    def leave_free(self, free: int) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 4096, 512):  # big chunks, then smaller ones for the rest
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        os.truncate(self.path, max(0, self.path.stat().st_size - free))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def leftovers(data: DataDir) -> list[str]:
    return sorted(path.name for path in data.root.iterdir() if path.name.endswith(TEMP_SUFFIX))


def audit_entries(client: httpx.Client) -> list[dict[str, Any]]:
    """The audit log as a user reads it (the API), newest first."""
    answer = client.get("/api/v1/audit", params={"limit": 500, "action": "settings.update"})
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


@pytest.mark.slow
@pytest.mark.timeout(600)  # 34 s alone
def test_writes_on_a_full_disk_are_made_and_audited_or_refused_and_not_made(small_disk: Path,
                                                                           serve: StartServe) -> None:
    data = DataDir(small_disk / "data")
    initialise(data)
    key = data.admin_key.read_text().strip()
    server = serve(data)
    filler = Filler(small_disk)
    outcomes = {"api made": 0, "api refused": 0, "cli made": 0, "cli refused": 0}
    number = 0
    with server.client(key) as client:
        for free in FREE_LEVELS:
            filler.leave_free(free)
            for _ in range(WRITES_PER_LEVEL):
                number += 1
                where = f"{free} bytes given back, write {number}"
                value = f"full-{number}-" + "x" * (number * 97 % 900) + "@example.com"
                before = data.config_ini.read_bytes()
                if number % 2:
                    made = put_through_api(client, data, value, where)
                    outcomes["api made" if made else "api refused"] += 1
                else:
                    made = set_through_cli(client, data, value, where)
                    outcomes["cli made" if made else "cli refused"] += 1
                after = data.config_ini.read_bytes()
                if made:
                    assert value.encode() in after, where
                else:
                    assert after == before, f"{where}: a write reported as failed changed config.ini"
                assert leftovers(data) == [], where
                # Reads keep being served, and serve what is on disk.
                read = client.get("/api/v1/settings/gitea")
                assert read.status_code == 200, (where, read.text)
                assert (read.json()["settings"]["user_email"] == value) is made, where
            filler.remove()

        # With room again, writes work at once, and nothing is left half-done: every event still
        # pending is a write that was made (the next write marks it), none is one that was not.
        final = client.put("/api/v1/settings/gitea", json={"user_email": "room-again@example.com"})
        assert final.status_code == 200, final.text
        # and the history, which could not commit either while the disk was full, has every version
        newest = client.get("/api/v1/settings/history", params={"limit": 1}).json()["entries"][0]
        assert newest["version"] == final.json()["version"]
        assert client.get("/api/v1/history/status").json()["waiting"] == 0
    fsck = subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "fsck", "--no-dangling"],
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stderr
    assert run_cli(data, "check").returncode == 0
    with contextlib.closing(audit_db(data)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        pending = db.execute("SELECT state, marker, version_after FROM audit_events WHERE state = 'pending'").fetchall()
        assert all(is_made(state, marker, after, data.root) for state, marker, after in pending), pending
    print(f"\nfull disk: {outcomes}")
    for way in ("api", "cli"):
        assert outcomes[f"{way} refused"], f"the disk was never full enough: {outcomes}"
        assert outcomes[f"{way} made"], f"no write was ever made: {outcomes}"


def put_through_api(client: httpx.Client, data: DataDir, value: str, where: str) -> bool:
    request_id = uuid.uuid4().hex
    answer = client.put("/api/v1/settings/gitea", json={"user_email": value}, headers={"X-Request-ID": request_id})
    mine = [(e["actor"], e["source"], e["version_after"], e["changes"][0]["new"])
            for e in audit_entries(client) if e["request_id"] == request_id]
    if answer.status_code == 200:
        assert mine == [("admin", "api", answer.json()["version"], value)], where
        return True
    assert answer.status_code == 507, (where, answer.status_code, answer.text)
    problem = answer.json()
    assert problem["type"] == "urn:apphub:problem:storage-full", where
    assert str(data.root) in problem["detail"], (where, problem)
    assert "is full" in problem["detail"], (where, problem)
    assert mine == [], f"{where}: a refused write has an audit event"
    return False


def set_through_cli(client: httpx.Client, data: DataDir, value: str, where: str) -> bool:
    before = data.config_ini.read_bytes()
    result = run_cli(data, "config", "set", "gitea", "user_email", value)
    if result.returncode == 0:
        version = version_of(data.config_ini.read_bytes())
        mine = [(e["actor"], e["source"], e["changes"][0]["new"])
                for e in audit_entries(client) if e["version_after"] == version]
        assert mine == [("cli", "cli", value)], where
        return True
    assert result.returncode == 1, (where, result.returncode, result.stderr)
    assert "is full" in result.stderr, (where, result.stderr)
    assert str(data.root) in result.stderr, (where, result.stderr)
    assert "Traceback" not in result.stderr, (where, result.stderr)
    assert data.config_ini.read_bytes() == before, where
    return False


def test_a_start_on_a_full_disk_says_the_disk_is_full(small_disk: Path) -> None:
    data = DataDir(small_disk / "data")
    initialise(data)  # and closed: SQLite removed its -wal and -shm files, which a start must create again
    Filler(small_disk).leave_free(0)

    result = run_cli(data, "config", "get", "gitea", "user_email")

    assert result.returncode == 1, result
    assert "is full" in result.stderr, result.stderr
    assert str(data.root) in result.stderr, result.stderr
