"""Regressions: a write and its audit event, the version chain, and a symlinked config.ini.

- The file was replaced before the audit event was recorded: a write whose event could not be
  recorded was reported as failed, yet made. The event is now recorded (pending) before the
  replacement and confirmed after (tests/store/test_write_faults.py has the rest).
- A reveal recorded the version it read as the version the file was left at, so a reveal that
  raced a write made the next write record a spurious `settings.unaudited` event.
- os.replace on a symlinked config.ini replaced the link with a plain file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import ApphubError, DataDirError
from apphub.paths import DataDir
from apphub.store.atomic import Replacement
from tests.conftest import LiveServer
from tests.regressions.conftest import Cli, events, last_event_id, run_cli, server_core_of, set_line

ACTOR = Actor("regression", "test")


# -- a write reported as failed is not made ------------------------------------------------------


def test_a_failed_file_replace_records_no_audit_event(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the other order too: an event committed before the file is replaced.
    before = core.data.config_ini.read_bytes()
    last = last_event_id(core.data)

    def failing_swap(self: Replacement) -> None:
        raise DataDirError("cannot write config.ini: No space left on device")

    monkeypatch.setattr(Replacement, "swap", failing_swap)
    with pytest.raises(DataDirError):
        core.config.update({"gitea": {"user_name": "never-written"}}, ACTOR)

    assert events(core.data, after=last) == []
    assert core.data.config_ini.read_bytes() == before


@contextlib.contextmanager
def audit_database_held(core: Core) -> Iterator[None]:
    """Another connection holds the audit database's write lock; the core's connection waits 0.2 s only."""
    core._audit_db._connection.execute("PRAGMA busy_timeout = 200")  # the real lock, a short wait
    holder = sqlite3.connect(core.data.database, timeout=1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_write_whose_audit_event_cannot_begin_leaves_the_file_unchanged(core: Core) -> None:
    before = core.data.config_ini.read_bytes()

    with audit_database_held(core), pytest.raises(ApphubError, match="locked"):
        core.config.update({"gitea": {"user_name": "never-written"}}, ACTOR)

    assert core.data.config_ini.read_bytes() == before


def test_after_a_write_that_could_not_be_audited_the_chain_has_no_gap(core: Core) -> None:
    with audit_database_held(core), pytest.raises(ApphubError, match="locked"):
        core.config.update({"gitea": {"user_name": "never-written"}}, ACTOR)
    last = last_event_id(core.data)

    core.config.update({"gitea": {"user_name": "written"}}, ACTOR)

    assert [event.action for event in events(core.data, after=last)] == ["settings.update"]


# -- reveals stay out of the version chain -------------------------------------------------------


def test_a_reveal_of_an_older_version_is_not_taken_for_the_files_version(core: Core) -> None:
    old = core.config.snapshot()
    core.config.update({"gitea": {"user_name": "first"}}, ACTOR)
    core.audit.record_reveal(ACTOR, "config.ini", old.version, [("gitea", "user_pwd")])

    core.config.update({"gitea": {"user_name": "second"}}, ACTOR)

    assert events(core.data, "settings.unaudited") == []


def test_an_api_reveal_racing_a_cli_write_leaves_no_unaudited_event(live_server: LiveServer, admin: httpx.Client,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI writes after the server read the file for a reveal and before it records the reveal."""
    audit = server_core_of(live_server).audit
    record = audit.record
    raced: list[Any] = []

    def record_after_a_write(actor: Actor, action: str, *args: Any, **kwargs: Any) -> int:
        if action == "secrets.reveal" and not raced:
            raced.append(run_cli(live_server.data, "config", "set", "gitea", "user_name", "racer"))
        return record(actor, action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", record_after_a_write)
    revealed = admin.get("/api/v1/settings/gitea", params={"reveal": "true"})
    assert revealed.status_code == 200, revealed.text
    assert len(raced) == 1
    assert raced[0].returncode == 0, raced[0].stderr
    assert revealed.json()["settings"]["user_name"] == "websoft9"  # it read the version before the CLI's write

    written = admin.put("/api/v1/settings/gitea", json={"user_name": "after"})

    assert written.status_code == 200, written.text
    assert events(live_server.data, "settings.unaudited") == []
    assert [(e.actor, e.action) for e in events(live_server.data)][-3:] == [
        ("cli", "settings.update"), ("admin", "secrets.reveal"), ("admin", "settings.update")]


def test_a_hand_edit_between_writes_is_recorded_exactly_once(live_server: LiveServer,
                                                                        admin: httpx.Client) -> None:
    first = admin.put("/api/v1/settings/gitea", json={"user_name": "first"})
    assert first.status_code == 200, first.text
    set_line(live_server.data.config_ini, "gitea", "user_name", "by-hand")
    edited = live_server.data.config_ini.read_bytes()
    assert admin.get("/api/v1/settings/gitea", params={"reveal": "true"}).status_code == 200

    second = admin.put("/api/v1/settings/gitea", json={"user_name": "second"})

    assert second.status_code == 200, second.text
    # Recorded once: by the sync thread when it sees the edit (settings.file, after its 50 ms
    # debounce), or else by the second write (settings.unaudited), whichever comes first.
    recorded = events(live_server.data, "settings.unaudited") + events(live_server.data, "settings.file")
    assert len(recorded) == 1
    assert recorded[0].version_before == first.json()["version"]
    assert recorded[0].version_after == second.json()["previous_version"]
    assert b"user_name = by-hand" in edited


# -- a symlinked config.ini ------------------------------------------------------------------------


def test_config_set_writes_through_a_symlinked_config_ini(data_dir: DataDir, tmp_path: Path, cli: Cli) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    target = volume / "config.ini"
    data_dir.config_ini.rename(target)
    data_dir.config_ini.symlink_to(target)

    result = cli("config", "set", "gitea", "user_name", "through-the-link")

    assert result.returncode == 0, result.stderr
    assert data_dir.config_ini.is_symlink()
    assert data_dir.config_ini.resolve() == target.resolve()
    assert "user_name = through-the-link" in target.read_text()
