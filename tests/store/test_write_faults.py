"""A write under faults the real disk cannot produce on demand: a failed folder flush after the
rename, an audit event that cannot be confirmed or abandoned, a writer that died
between its event and its replace. A write reported as failed was not made; a write reported as
made is listed in the audit log; whatever a dead writer left is settled at the next start by
whether its staged file is still there, whatever happened to config.ini since.

(A real full disk is in tests/integration/test_full_disk.py, a real kill at the chosen moment in
tests/integration/test_kill_after_replace.py.)
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import apphub.store.atomic
from apphub.audit.log import Actor, AuditLog, AuditQuery
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.errors import DataDirError, StorageFull
from apphub.paths import DataDir
from apphub.store.atomic import TEMP_SUFFIX, Replacement, atomic_write
from apphub.store.snapshot import version_of

ACTOR = Actor("tester", "test", "req-1")


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(TEMP_SUFFIX))


def listed_versions(core: Core) -> list[str | None]:
    return [event.version_after for event in core.audit.query(AuditQuery(limit=500, action="settings.update"))]


def fail_folder_flushes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every flush of a folder after a rename fails with EIO (as a dying disk's would); returns the
    folders tried. The flush that makes a freshly staged file's name durable (a temporary is in the
    folder then) is let through: the faults wanted here come after the rename."""
    tried: list[Path] = []
    real = apphub.store.atomic._fsync_directory

    def failing(folder: Path) -> None:
        if leftovers(folder):
            real(folder)
            return
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
    tried = fail_folder_flushes(monkeypatch)

    with pytest.raises(DataDirError, match="Input/output error"):
        atomic_write(path, b"new bytes\n")

    assert tried, "the rename was never followed by a flush"
    assert path.read_bytes() == b"old bytes\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
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


def full_disk(*args: object) -> None:
    raise StorageFull("cannot write the database: the disk is full")


def test_a_writes_event_counts_as_done_from_the_rename_on_and_the_next_write_marks_it(core: Core) -> None:
    """Marking the event done is bookkeeping: the write commits to the database once."""
    result = core.config.update({"gitea": {"user_name": "made"}}, ACTOR)

    [(event, marker, _)] = core.audit.pending("config.ini")
    assert marker is not None
    assert not (core.data.root / marker).exists()  # renamed into place
    assert listed_versions(core)[0] == result.snapshot.version
    assert core.audit.last_version("config.ini") == result.snapshot.version

    second = core.config.update({"gitea": {"user_name": "next"}}, ACTOR)

    assert [pending.id for pending in core.audit.pending("config.ini")] != [event]
    assert listed_versions(core)[:2] == [second.snapshot.version, result.snapshot.version]


def test_a_failed_write_whose_event_cannot_be_abandoned_is_never_taken_for_a_later_hand_edit_of_the_same_bytes(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The event is recorded, then the rename fails (a read-only folder), and abandoning the event
    fails too (a full disk). Later the operator makes the very same change by hand: that is a hand
    edit, not the failed write."""
    before = core.data.config_ini.read_bytes()

    def read_only(self: Replacement) -> None:
        raise DataDirError("cannot write config.ini: Read-only file system")

    with monkeypatch.context() as patched:
        patched.setattr(Replacement, "swap", read_only)
        patched.setattr(core.audit, "abandon", full_disk)
        with pytest.raises(DataDirError, match="Read-only"):
            core.config.update({"gitea": {"user_name": "same-bytes"}}, ACTOR)
    assert core.data.config_ini.read_bytes() == before
    [(event, marker, _)] = core.audit.pending("config.ini")
    assert marker is not None
    assert (core.data.root / marker).exists()  # the staged file says: not made
    written = (core.data.root / marker).read_bytes()

    previous = core.config.snapshot()
    core.data.config_ini.write_bytes(written)  # by hand, the same bytes
    assert event not in [entry.id for entry in core.audit.query(AuditQuery(limit=5))]
    core.config.account_for_outside_change(previous)  # what the sync thread does with a hand edit

    assert core.audit.pending("config.ini") == []
    assert not (core.data.root / marker).exists()
    entries = core.audit.query(AuditQuery(limit=5))
    assert event not in [entry.id for entry in entries]
    assert (entries[0].action, entries[0].actor, entries[0].version_after) == (
        "settings.file", "file", version_of(written))


def simulate_a_writer_killed(core: Core, value: str, *, after_the_rename: bool,
                             absolute_marker: bool = False) -> tuple[int, bytes]:
    """What a writer leaves when it is killed just before, or just after, renaming its file into
    place. `absolute_marker`: as an apphub of before 2026-12-03 recorded it (the staged file's path)."""
    current = core.config.snapshot()
    written = core.config.preview({"gitea": {"user_name": value}})
    replacement = Replacement.prepare(core.data.config_ini, written.raw, current.raw)
    marker = str(replacement.staged.absolute()) if absolute_marker else replacement.staged.name
    event = core.audit.begin(ACTOR, "settings.update", [], file="config.ini", version_before=current.version,
                             version_after=written.version, marker=marker)
    if after_the_rename:
        replacement.swap()
    return event, written.raw


def test_at_start_a_write_killed_after_its_rename_is_done_even_if_config_ini_was_edited_since(
        data_dir: DataDir) -> None:
    core = Core(data_dir)
    try:
        event, written = simulate_a_writer_killed(core, "killed-after", after_the_rename=True)
        assert data_dir.config_ini.read_bytes() == written
        edited = written.replace(b"https://", b"http://", 1)
        assert edited != written
        data_dir.config_ini.write_bytes(edited)  # a hand edit before anything restarts
        core.close()
        core = Core(data_dir)

        assert event in [entry.id for entry in core.audit.query(AuditQuery(limit=5))]
        core.config.update({"gitea": {"user_email": "next@example.com"}}, ACTOR)
        assert event not in [pending.id for pending in core.audit.pending("config.ini")]  # marked done
        actions = [entry.action for entry in core.audit.query(AuditQuery(limit=3))]
        assert actions[:2] == ["settings.update", "settings.unaudited"]  # the hand edit, between the two writes
    finally:
        core.close()


def test_at_start_a_write_killed_before_its_rename_is_abandoned_and_its_staged_file_removed(
        data_dir: DataDir) -> None:
    before = data_dir.config_ini.read_bytes()
    core = Core(data_dir)
    try:
        event, _ = simulate_a_writer_killed(core, "killed-before", after_the_rename=False)
        assert leftovers(data_dir.root) != []
        core.close()
        core = Core(data_dir)

        assert core.audit.pending("config.ini") == []
        assert event not in [entry.id for entry in core.audit.query(AuditQuery(limit=500))]
        assert leftovers(data_dir.root) == []
        assert data_dir.config_ini.read_bytes() == before
    finally:
        core.close()


def test_a_write_that_changes_nothing_works_while_an_unsettled_event_cannot_be_settled(
        data_dir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk and a killed writer's event that must be abandoned: a start (which writes only
    if something is missing) and a write that changes nothing must not fail for want of room."""
    core = Core(data_dir)
    try:
        simulate_a_writer_killed(core, "killed-before", after_the_rename=False)
        monkeypatch.setattr(AuditLog, "complete", full_disk)
        monkeypatch.setattr(AuditLog, "abandon", full_disk)
        same = core.config.snapshot().document.get("gitea", "user_name")
        assert core.config.update({"gitea": {"user_name": same}}, ACTOR).changes == []
        initialise(data_dir)
        Core(data_dir).close()
        with pytest.raises(StorageFull):  # a write that does change something waits for room
            core.config.update({"gitea": {"user_name": "changed"}}, ACTOR)
    finally:
        core.close()


def test_a_failed_folder_flush_of_a_new_file_takes_it_away_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.ini"
    fail_folder_flushes(monkeypatch)
    with pytest.raises(DataDirError, match="Input/output error"):
        atomic_write(path, b"new bytes\n")

    assert not path.exists()
    assert leftovers(tmp_path) == []


def test_at_every_step_of_an_undo_config_ini_is_there_and_the_write_is_judged_by_what_it_holds(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whenever the process could die during an undo, config.ini exists, and the audit log counts
    the write as made exactly when config.ini holds its new version."""
    fail_folder_flushes(monkeypatch)
    seen: list[tuple[str, bool, bool]] = []

    def observed(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            result = call(*args, **kwargs)
            pending = core.audit.pending("config.ini")
            if pending and core.data.config_ini.exists():
                holds_new = b"undone" in core.data.config_ini.read_bytes()
                seen.append((name, holds_new, core.audit.is_made("config.ini", pending[-1])))
            elif pending:
                seen.append((name, False, False))
                raise AssertionError(f"no config.ini after {name}")
            return result
        return step

    for name in ("replace", "rename", "link", "unlink", "open"):
        monkeypatch.setattr(os, name, observed(name, getattr(os, name)))
    with pytest.raises(DataDirError):
        core.config.update({"gitea": {"user_name": "undone"}}, ACTOR)
    monkeypatch.undo()

    assert [step for step in seen if step[0] == "replace"][:2] == [("replace", True, True),  # the rename
                                                                   ("replace", False, False)]  # the undo's
    assert all(holds_new == made for _, holds_new, made in seen), seen
    assert b"undone" not in core.data.config_ini.read_bytes()


def test_a_write_whose_flush_fails_and_cannot_be_undone_says_it_was_made_and_is_audited(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_folder_flushes(monkeypatch)
    monkeypatch.setattr(Replacement, "undo", lambda self: (_ for _ in ()).throw(DataDirError("no room to undo")))

    with pytest.raises(DataDirError, match=r"now holds the new version \w+ \(audited as this write\)"):
        core.config.update({"gitea": {"user_name": "made-anyway"}}, ACTOR)

    assert core.config.snapshot().document.get("gitea", "user_name") == "made-anyway"
    assert listed_versions(core)[0] == version_of(core.data.config_ini.read_bytes())


def test_the_clean_up_removes_only_our_temporaries_of_that_file(core: Core) -> None:
    ours = core.data.root / f".config.ini.4242.1.0{TEMP_SUFFIX}"
    others = [core.data.root / f".config.ini.bak.4242.1.0{TEMP_SUFFIX}",  # another file's
              core.data.root / f".config.ini.kept{TEMP_SUFFIX}", core.data.root / ".config.ini.swp"]
    for path in [ours, *others]:
        path.write_bytes(b"[half\n")

    core.config.update({"gitea": {"user_name": "cleaned"}}, ACTOR)

    assert not ours.exists()
    assert all(path.exists() for path in others)
