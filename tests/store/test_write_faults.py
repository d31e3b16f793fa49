"""A write under faults the real disk cannot produce on demand: a failed folder flush after the
rename, an audit event that cannot be confirmed, a writer that died between its event and its
replace. A write reported as failed was not made; a write reported as made is listed in the audit
log; whatever a dead writer left is settled at the next start.

(A real full disk is in tests/integration/test_full_disk.py, a real kill at the chosen moment in
tests/integration/test_kill_after_replace.py.)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import apphub.store.atomic
from apphub.audit.log import Actor, AuditLog, AuditQuery
from apphub.core import Core
from apphub.errors import DataDirError, StorageFull
from apphub.paths import DataDir
from apphub.store.atomic import TEMP_SUFFIX, atomic_write
from apphub.store.snapshot import version_of

ACTOR = Actor("tester", "test", "req-1")


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(TEMP_SUFFIX))


def listed_versions(core: Core) -> list[str | None]:
    return [event.version_after for event in core.audit.query(AuditQuery(limit=500, action="settings.update"))]


def fail_folder_flushes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every flush of a folder fails with EIO (as a dying disk's would); returns the folders tried."""
    tried: list[Path] = []

    def failing(folder: Path) -> None:
        tried.append(folder)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(apphub.store.atomic, "_fsync_directory", failing)
    return tried


# -- the file: all or nothing, the flush included ------------------------------------------------


def test_a_failed_folder_flush_after_the_rename_puts_the_previous_bytes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(b"old bytes\n")
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    tried = fail_folder_flushes(monkeypatch)

    with pytest.raises(DataDirError, match="Input/output error"):
        atomic_write(path, b"new bytes\n")

    assert tried, "the rename was never followed by a flush"
    assert path.read_bytes() == b"old bytes\n"
    assert path.stat().st_ino == inode  # the very file, put back by a rename of its second name
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert path.stat().st_nlink == 1
    assert leftovers(tmp_path) == []


def test_a_failed_folder_flush_of_a_new_file_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_folder_flushes(monkeypatch)

    with pytest.raises(DataDirError):
        atomic_write(tmp_path / "new.ini", b"new bytes\n")

    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_staging_is_a_storage_full_error_naming_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(b"old bytes\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageFull, match=f"the disk holding {tmp_path} is full"):
        atomic_write(path, b"new bytes\n")
    assert path.read_bytes() == b"old bytes\n"
    assert leftovers(tmp_path) == []


# -- the store: the audit event before the replace -----------------------------------------------


def test_a_write_whose_folder_flush_fails_is_reported_failed_not_made_and_not_listed(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    before = core.data.config_ini.read_bytes()
    listed = listed_versions(core)
    fail_folder_flushes(monkeypatch)

    with pytest.raises(DataDirError):
        core.config.update({"gitea": {"user_name": "never-made"}}, ACTOR)

    assert core.data.config_ini.read_bytes() == before
    assert core.config.snapshot().document.get("gitea", "user_name") != "never-made"
    assert listed_versions(core) == listed
    assert leftovers(core.data.root) == []


def test_an_event_that_cannot_begin_leaves_the_file_unchanged(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    before = core.data.config_ini.read_bytes()

    def full(*args: object, **kwargs: object) -> int:
        raise StorageFull(f"cannot write the database: the disk holding {core.data.state_dir} is full")

    monkeypatch.setattr(core.audit, "begin", full)
    with pytest.raises(StorageFull):
        core.config.update({"gitea": {"user_name": "never-made"}}, ACTOR)

    assert core.data.config_ini.read_bytes() == before
    assert leftovers(core.data.root) == []


def test_a_write_whose_event_cannot_be_confirmed_is_made_listed_and_settled_by_the_next_write(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(event_id: int) -> None:
        raise StorageFull("the disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(core.audit, "complete", full)
        result = core.config.update({"gitea": {"user_name": "made"}}, ACTOR)

    assert result.changed
    assert core.config.snapshot().document.get("gitea", "user_name") == "made"
    # Pending in the database, listed all the same: the file holds the version it wrote.
    pending = core.audit.pending("config.ini")
    assert [version for _, version in pending] == [result.snapshot.version]
    pending_id = pending[0][0]
    assert listed_versions(core)[0] == result.snapshot.version
    assert core.audit.last_version("config.ini") == result.snapshot.version

    second = core.config.update({"gitea": {"user_name": "next"}}, ACTOR)

    assert core.audit.pending("config.ini") == []
    assert listed_versions(core)[:2] == [second.snapshot.version, result.snapshot.version]
    assert pending_id in [event.id for event in core.audit.query(AuditQuery(limit=5))]


def test_at_start_a_pending_event_is_done_if_the_file_holds_its_version_else_abandoned(data_dir: DataDir) -> None:
    core = Core(data_dir)
    try:
        on_disk = version_of(data_dir.config_ini.read_bytes())
        made = core.audit.begin(ACTOR, "settings.update", [], file="config.ini", version_before="0" * 32,
                                version_after=on_disk)
        core.close()
        core = Core(data_dir)  # a writer killed after its replace: settled as done at the next start
        assert core.audit.pending("config.ini") == []
        assert made in [event.id for event in core.audit.query(AuditQuery(limit=5))]

        not_made = core.audit.begin(ACTOR, "settings.update", [], file="config.ini", version_before=on_disk,
                                    version_after="f" * 32)
        assert not_made not in [event.id for event in core.audit.query(AuditQuery(limit=5))]
        core.close()
        core = Core(data_dir)  # a writer killed before its replace: that write was not made
        assert core.audit.pending("config.ini") == []
        assert not_made not in [event.id for event in core.audit.query(AuditQuery(limit=500))]
        assert core.audit.last_version("config.ini") == on_disk
    finally:
        core.close()


def test_an_event_in_flight_is_not_listed_until_its_file_holds_the_version(core: Core) -> None:
    audit: AuditLog = core.audit
    event = audit.begin(ACTOR, "settings.update", [], file="config.ini",
                        version_before=core.config.version_on_disk(), version_after="e" * 32)
    assert event not in [entry.id for entry in audit.query(AuditQuery(limit=5))]
    audit.complete(event)
    assert event in [entry.id for entry in audit.query(AuditQuery(limit=5))]
