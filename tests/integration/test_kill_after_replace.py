"""SIGKILL of a real writer between replacing config.ini and confirming its audit event.

The moment is chosen, not hoped for: a writer flushes the data folder right after renaming the new
config.ini into place, and that open of the folder is held by fanotify (tests/integration/
fanotify_gate.py) while the test checks that config.ini already holds the new value; then the
writer is killed before it runs another instruction. After a restart, the write is in the audit
log with who made it, from where, the request id and what it changed (its event counts as done:
its staged file is gone; the next write marks it); a client's retry changes nothing and records
nothing more.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from apphub.paths import DataDir
from apphub.store.snapshot import version_of
from tests.integration.conftest import APPHUB, StartServe, audit_db, cli_environment, run_cli
from tests.integration.fanotify_gate import OpenGate, fanotify_unavailable

pytestmark = pytest.mark.skipif(fanotify_unavailable() is not None, reason=f"{fanotify_unavailable()}")

NEW_EMAIL = "killed-after-replace@example.com"


def holds_new_value(data: DataDir) -> bool:
    return f"user_email = {NEW_EMAIL}".encode() in data.config_ini.read_bytes()


def kill_when_replaced(data: DataDir, pid: int) -> OpenGate:
    """Kill `pid` at its first open of the data folder after config.ini holds the new value."""
    return OpenGate(data.root, lambda opener: opener == pid and holds_new_value(data))


def event_states(data: DataDir, version: str) -> list[str]:
    with contextlib.closing(audit_db(data)) as db:
        return [row[0] for row in db.execute("SELECT state FROM audit_events WHERE version_after = ?", (version,))]


def assert_audited_once(client: httpx.Client, version: str, actor: str, source: str, old_email: str,
                        request_id: str | None = None) -> None:
    entries = client.get("/api/v1/audit", params={"limit": 500}).json()["entries"]
    made = [entry for entry in entries if entry["version_after"] == version]
    assert len(made) == 1, f"version {version} has {len(made)} audit events: {made}"
    event = made[0]
    assert (event["actor"], event["source"], event["action"]) == (actor, source, "settings.update")
    assert event["request_id"] == request_id
    assert event["changes"] == [{"section": "gitea", "key": "user_email", "change": "set",
                                 "old": old_email, "new": NEW_EMAIL}]
    assert not [entry for entry in entries if entry["action"] == "settings.unaudited"]


def test_a_server_killed_after_replacing_config_ini_has_the_write_audited_after_restart(
        data_dir: DataDir, admin_key: str, serve: StartServe) -> None:
    server = serve(data_dir)
    with server.client(admin_key) as client:
        old_email = client.get("/api/v1/settings/gitea").json()["settings"]["user_email"]
    request_id = uuid.uuid4().hex
    with kill_when_replaced(data_dir, server.process.pid) as gate, server.client(admin_key) as client:
        with pytest.raises(httpx.TransportError):
            client.put("/api/v1/settings/gitea", json={"user_email": NEW_EMAIL}, headers={"X-Request-ID": request_id})
        server.process.wait(timeout=30)
    assert gate.error is None, gate.error
    assert gate.killed == [server.process.pid], "the server was not killed at the chosen moment"
    version = version_of(data_dir.config_ini.read_bytes())
    assert holds_new_value(data_dir)
    assert event_states(data_dir, version) == ["pending"], "not killed between the replace and the audit commit"

    restarted = serve(data_dir)
    with restarted.client(admin_key) as client:
        assert_audited_once(client, version, "admin", "api", old_email, request_id)
        # The client never got an answer and retries: nothing to change, nothing more to record.
        retried = client.put("/api/v1/settings/gitea", json={"user_email": NEW_EMAIL},
                             headers={"X-Request-ID": request_id})
        assert retried.status_code == 200, retried.text
        assert retried.json()["changed"] == []
        assert_audited_once(client, version, "admin", "api", old_email, request_id)
        # The next write that changes something marks it done in its own transaction.
        assert client.put("/api/v1/settings/gitea", json={"user_name": "next"}).status_code == 200
    assert event_states(data_dir, version) == ["done"]


def test_a_cli_killed_after_replacing_config_ini_has_the_write_audited_at_the_next_start(
        data_dir: DataDir, admin_key: str, serve: StartServe, tmp_path: Path) -> None:
    old_email = run_cli(data_dir, "config", "get", "gitea", "user_email").stdout.strip()
    writer = subprocess.Popen([str(APPHUB), "--data-dir", str(data_dir.root), "config", "set", "gitea", "user_email",
                               NEW_EMAIL], env=cli_environment(tmp_path / "xdg"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    with kill_when_replaced(data_dir, writer.pid) as gate:
        writer.communicate(timeout=60)
    assert gate.error is None, gate.error
    assert writer.returncode == -9, "the CLI was not killed at the chosen moment"
    version = version_of(data_dir.config_ini.read_bytes())
    assert holds_new_value(data_dir)
    assert event_states(data_dir, version) == ["pending"], "not killed between the replace and the audit commit"

    server = serve(data_dir)
    with server.client(admin_key) as client:
        assert_audited_once(client, version, "cli", "cli", old_email)
        assert client.put("/api/v1/settings/gitea", json={"user_name": "next"}).status_code == 200
    assert event_states(data_dir, version) == ["done"]
