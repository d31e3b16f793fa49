"""A write interrupted between its steps, where the last steps cannot tell what the first did: Ctrl-C
right after the audit event's commit or right after the rename, an undo that fails half-way, a data
folder moved or copied while a killed writer's event waits, a reader in the instant between a
rename and its undo. Whatever happens, the audit log and config.ini agree: a write reported as
failed (or interrupted) was not made and is not listed, one left in place is listed.

(The faults of the disk itself are in test_write_faults.py.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import apphub.store.atomic
from apphub.audit.log import AuditLog, AuditQuery, PendingWrite
from apphub.core import Core
from apphub.errors import DataDirError
from apphub.paths import DataDir
from apphub.store.atomic import TEMP_SUFFIX, Replacement
from apphub.store.inistore import IniStore
from apphub.store.snapshot import Snapshot, version_of
from tests.store.test_write_faults import ACTOR, full_disk, leftovers, listed_versions, simulate_a_writer_killed


def assert_not_made(core: Core, before: bytes, listed: list[str | None]) -> None:
    assert core.data.config_ini.read_bytes() == before
    assert listed_versions(core) == listed
    assert core.audit.last_version("config.ini") == version_of(before)


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_right_after_the_event_is_committed_leaves_a_write_not_made(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit went through, the writer never learnt it: the event must not count as made once
    the staged file is cleaned up."""
    before, listed = core.data.config_ini.read_bytes(), listed_versions(core)
    begin = core.audit.begin

    def begin_then_ctrl_c(*args: object, **kwargs: object) -> int:
        begin(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(core.audit, "begin", begin_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            core.config.update({"gitea": {"user_name": "interrupted"}}, ACTOR)

    assert_not_made(core, before, listed)
    assert core.audit.pending("config.ini") == []
    assert leftovers(core.data.root) == []
    core.close()
    restarted = Core(core.data)
    try:
        assert_not_made(restarted, before, listed)
    finally:
        restarted.close()


def test_ctrl_c_after_the_commit_on_a_full_disk_keeps_the_staged_file_until_the_next_write_settles_it(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    before, listed = core.data.config_ini.read_bytes(), listed_versions(core)
    begin = core.audit.begin

    def begin_then_ctrl_c(*args: object, **kwargs: object) -> int:
        begin(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(core.audit, "begin", begin_then_ctrl_c)
        patched.setattr(core.audit, "abandon_marked", full_disk)
        with pytest.raises(KeyboardInterrupt):
            core.config.update({"gitea": {"user_name": "interrupted"}}, ACTOR)

    [(event, marker, _)] = core.audit.pending("config.ini")
    assert leftovers(core.data.root) == [marker]  # the staged file says: not made
    assert_not_made(core, before, listed)

    result = core.config.update({"gitea": {"user_name": "next"}}, ACTOR)

    assert leftovers(core.data.root) == []
    assert event not in [pending.id for pending in core.audit.pending("config.ini")]
    assert listed_versions(core) == [result.snapshot.version, *listed]


def test_ctrl_c_right_after_the_rename_undoes_it(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the rename and anything the writer does next: whether the file was replaced is read
    from the file system, not from what the writer last noted."""
    before, listed = core.data.config_ini.read_bytes(), listed_versions(core)
    rename = os.replace
    interrupted: list[str] = []

    def rename_then_ctrl_c(source: str | Path, target: str | Path) -> None:
        rename(source, target)
        if Path(target) == core.data.config_ini and not interrupted:
            interrupted.append(str(source))
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", rename_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            core.config.update({"gitea": {"user_name": "interrupted"}}, ACTOR)

    assert interrupted
    assert_not_made(core, before, listed)
    assert core.audit.pending("config.ini") == []
    assert leftovers(core.data.root) == []


# -- an undo that fails half-way ------------------------------------------------------------------


def fail_folder_flushes_after_renames(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    real = apphub.store.atomic._fsync_directory

    def failing(flushed: Path) -> None:
        if flushed != folder or leftovers(folder):  # another folder, or a staged file's name
            real(flushed)
            return
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(apphub.store.atomic, "_fsync_directory", failing)


def test_an_undo_that_cannot_put_the_previous_file_back_leaves_the_new_one_made_and_listed(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder flush fails, the undo stages the previous bytes and puts the staged name back, and
    then the previous file cannot be renamed in place: the new version stays, it is listed as this
    write (its staged name is gone again) and no temporary is left."""
    fail_folder_flushes_after_renames(monkeypatch, core.data.root)
    rename = os.replace
    renames: list[str] = []

    def second_rename_fails(source: str | Path, target: str | Path) -> None:
        renames.append(str(source))
        if len(renames) == 2 and Path(target) == core.data.config_ini:  # the previous file's, in the undo
            raise OSError(errno.EIO, "Input/output error")
        rename(source, target)

    monkeypatch.setattr(os, "replace", second_rename_fails)

    with pytest.raises(DataDirError, match=r"now holds the new version \w+ \(audited as this write\)"):
        core.config.update({"gitea": {"user_name": "made-anyway"}}, ACTOR)

    assert len(renames) == 2
    assert core.config.snapshot().document.get("gitea", "user_name") == "made-anyway"
    assert leftovers(core.data.root) == []
    assert listed_versions(core)[0] == version_of(core.data.config_ini.read_bytes())
    monkeypatch.undo()
    core.close()
    restarted = Core(core.data)
    try:
        assert listed_versions(restarted)[0] == version_of(core.data.config_ini.read_bytes())
    finally:
        restarted.close()


@pytest.mark.parametrize("after", [False, True], ids=["before-the-previous-file-is-back", "right-after"])
def test_ctrl_c_inside_an_undo_leaves_the_write_judged_by_what_config_ini_holds(
        core: Core, monkeypatch: pytest.MonkeyPatch, after: bool) -> None:
    """The undo puts the staged name back first (the write still reads as made: config.ini holds
    it), then the previous file with one rename (not made). Interrupted on either side of that
    rename, the log tells what config.ini holds, now, at the next write, and after a restart."""
    fail_folder_flushes_after_renames(monkeypatch, core.data.root)
    before, listed = core.data.config_ini.read_bytes(), listed_versions(core)
    rename = os.replace
    renames: list[str] = []

    def ctrl_c_at_the_undos_rename(source: str | Path, target: str | Path) -> None:
        renames.append(str(source))
        if len(renames) == 2 and not after:
            raise KeyboardInterrupt
        rename(source, target)
        if len(renames) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", ctrl_c_at_the_undos_rename)
    with pytest.raises(KeyboardInterrupt):
        core.config.update({"gitea": {"user_name": "ctrl-c-in-undo"}}, ACTOR)
    monkeypatch.undo()
    assert len(renames) == 2

    on_disk = core.data.config_ini.read_bytes()
    if after:
        assert_not_made(core, before, listed)
    else:
        assert b"ctrl-c-in-undo" in on_disk
        assert listed_versions(core) == [version_of(on_disk), *listed]
        assert core.audit.last_version("config.ini") == version_of(on_disk)
    expected = listed_versions(core)

    core.close()
    restarted = Core(core.data)
    try:
        assert listed_versions(restarted) == expected
        result = restarted.config.update({"gitea": {"user_name": "next"}}, ACTOR)
        assert listed_versions(restarted) == [result.snapshot.version, *expected]
        assert all(restarted.audit.is_made("config.ini", write) for write in restarted.audit.pending("config.ini"))
        assert leftovers(core.data.root) == []
        interrupted = [(event.actor, event.request_id) for event in restarted.audit.query(AuditQuery(limit=50))
                       if any(change.new == "ctrl-c-in-undo" for change in event.changes)]
        assert interrupted == ([] if after else [(ACTOR.name, ACTOR.request_id)])
    finally:
        restarted.close()


def test_a_staged_file_a_failed_write_could_not_remove_goes_with_the_next_write(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long after the process's first write: a temporary left by a failure is not left for ever."""
    core.config.update({"gitea": {"user_name": "first"}}, ACTOR)
    fail_folder_flushes_after_renames(monkeypatch, core.data.root)
    unlink = os.unlink
    refused: list[str] = []

    def first_unlink_of_a_temporary_fails(path: str | Path, *args: object, **kwargs: object) -> None:
        if Path(path).name.endswith(TEMP_SUFFIX) and os.path.lexists(path) and not refused:
            refused.append(Path(path).name)
            raise OSError(errno.EIO, "Input/output error")
        unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", first_unlink_of_a_temporary_fails)
    with pytest.raises(DataDirError):
        core.config.update({"gitea": {"user_name": "failed"}}, ACTOR)
    monkeypatch.undo()
    assert refused
    assert leftovers(core.data.root) == refused

    core.config.update({"gitea": {"user_name": "later"}}, ACTOR)

    assert leftovers(core.data.root) == []


def test_a_write_not_made_is_abandoned_on_disk_before_its_staged_file_goes(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the staged file is gone, a pending event reads as made: the abandon must survive a
    power loss that the removal survives, so it is committed durably first."""
    steps: list[str] = []
    transaction, unlink = core._audit_db.transaction, os.unlink

    @contextlib.contextmanager
    def noted_transaction(*, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with transaction(durable=durable) as connection:
            yield connection
        steps.append("durable commit" if durable else "commit")

    def noted_unlink(path: str | Path, *args: object, **kwargs: object) -> None:
        unlink(path, *args, **kwargs)  # type: ignore[arg-type]
        if Path(path).name.endswith(TEMP_SUFFIX):
            steps.append("staged file removed")

    def read_only(self: Replacement) -> None:
        raise DataDirError("cannot write config.ini: Read-only file system")

    monkeypatch.setattr(core._audit_db, "transaction", noted_transaction)
    monkeypatch.setattr(os, "unlink", noted_unlink)
    monkeypatch.setattr(Replacement, "swap", read_only)
    with pytest.raises(DataDirError, match="Read-only"):
        core.config.update({"gitea": {"user_name": "not-made"}}, ACTOR)

    assert steps == ["durable commit", "durable commit", "staged file removed"]  # begun, abandoned, removed


def test_two_files_of_one_name_in_two_folders_cannot_share_an_audit_log(core: Core, tmp_path: Path) -> None:
    """Events name a file by its name: a second config.ini would answer for the first one's writes."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.ini").write_bytes(core.data.config_ini.read_bytes())
    with pytest.raises(ValueError, match=r"other/config.ini and .*data/config.ini cannot share one audit log"):
        IniStore(other / "config.ini", other / "config.ini.lock", core.schema.config, core.box, core.audit)
    IniStore(core.data.config_ini, core.data.lock_for(core.data.config_ini), core.schema.config, core.box,
             core.audit)  # the same file again: fine


# -- a data folder moved or copied ---------------------------------------------------------------


@pytest.mark.parametrize("absolute_marker", [False, True], ids=["marker-name", "marker-path-of-old"])
@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_killed_writers_event_is_settled_right_in_a_data_folder_moved_or_copied_since(
        data_dir: DataDir, tmp_path: Path, how: str, absolute_marker: bool) -> None:
    """The staged file is looked for next to config.ini where it is now, not where the writer was:
    a write killed before its rename stays not made in the new place, and the start there removes
    only its own copy of the staged file."""
    core = Core(data_dir)
    before = data_dir.config_ini.read_bytes()
    listed = listed_versions(core)
    event, _ = simulate_a_writer_killed(core, "killed-before", after_the_rename=False,
                                        absolute_marker=absolute_marker)
    core.close()
    elsewhere = DataDir(tmp_path / "elsewhere")
    if how == "moved":
        shutil.move(data_dir.root, elsewhere.root)
    else:
        shutil.copytree(data_dir.root, elsewhere.root, symlinks=True)

    core = Core(elsewhere)
    try:
        assert_not_made(core, before, listed)
        assert event not in [pending.id for pending in core.audit.pending("config.ini")]
        assert leftovers(elsewhere.root) == []
        if how == "copied":
            assert len(leftovers(data_dir.root)) == 1  # the original's is the original's business
    finally:
        core.close()


@pytest.mark.parametrize("absolute_marker", [False, True], ids=["marker-name", "marker-path-of-old"])
def test_a_write_killed_after_its_rename_is_listed_in_a_data_folder_moved_since(
        data_dir: DataDir, tmp_path: Path, absolute_marker: bool) -> None:
    core = Core(data_dir)
    _, written = simulate_a_writer_killed(core, "killed-after", after_the_rename=True,
                                          absolute_marker=absolute_marker)
    core.close()
    elsewhere = DataDir(tmp_path / "elsewhere")
    shutil.move(data_dir.root, elsewhere.root)

    core = Core(elsewhere)
    try:
        assert listed_versions(core)[0] == version_of(written)
        assert core.audit.last_version("config.ini") == version_of(written)
    finally:
        core.close()


def test_a_pending_event_of_a_file_no_writer_located_counts_as_not_made(core: Core) -> None:
    """An AuditLog on its own (no store told it where staged files are) lists no pending event."""
    core.audit.begin(ACTOR, "settings.update", [], file="other.ini", version_before="a", version_after="b",
                     marker=f".other.ini.1.1.0{TEMP_SUFFIX}")
    assert not core.audit.is_made("other.ini", PendingWrite(0, f".other.ini.1.1.0{TEMP_SUFFIX}", "b"))
    assert core.audit.last_version("other.ini") is None
    alone = AuditLog(core._audit_db)
    assert not alone.is_made("config.ini", PendingWrite(0, f".config.ini.1.1.0{TEMP_SUFFIX}", "b"))


# -- a reader in the instant between a rename and its undo ---------------------------------------


def test_a_settled_read_never_sees_a_version_whose_write_is_being_undone(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder flush after the rename hangs, then fails: a plain read in that instant sees the
    new bytes (no lock), a settled read waits for the writer and gets the previous version."""
    before = core.data.config_ini.read_bytes()
    real = apphub.store.atomic._fsync_directory
    flushing, release = threading.Event(), threading.Event()

    def hanging_then_failing(folder: Path) -> None:
        if folder != core.data.root or leftovers(folder):
            real(folder)
            return
        flushing.set()
        release.wait(10)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(apphub.store.atomic, "_fsync_directory", hanging_then_failing)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            core.config.update({"gitea": {"user_name": "being-undone"}}, ACTOR)
        except DataDirError as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert flushing.wait(10)
    assert b"being-undone" in core.data.config_ini.read_bytes()  # the instant this is about
    settled: list[Snapshot] = []
    reader = threading.Thread(target=lambda: settled.append(core.config.settled_snapshot()))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive(), "the settled read did not wait for the writer"
    release.set()
    writer.join(10)
    reader.join(10)

    assert [type(error) for error in errors] == [DataDirError]
    assert "Input/output error" in str(errors[0])
    assert [snapshot.version for snapshot in settled] == [version_of(before)]
    assert core.data.config_ini.read_bytes() == before

