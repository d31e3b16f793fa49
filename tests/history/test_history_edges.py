"""Edges of the history found in review: each of these once committed what it must not."""

from __future__ import annotations

import subprocess

import pytest

import apphub.store.atomic as atomic
from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import DataDirError
from apphub.history.index import HistoryQuery
from apphub.history.rollback import rollback
from apphub.paths import DataDir

API = Actor("admin", "api")


def git(data: DataDir, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), *args], capture_output=True,
                          check=True).stdout.decode()


def everything_in_git(data: DataDir) -> bytes:
    return subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "cat-file", "--batch-all-objects",
                           "--batch"], capture_output=True, check=True).stdout


def test_a_write_undone_after_its_rename_is_never_committed(data_dir: DataDir,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    core, other = Core(data_dir), Core(data_dir)  # `other`: the history process
    try:
        core.history.start()
        real = atomic._fsync_directory
        calls = []

        def flaky(path: object) -> None:
            calls.append(path)
            if len(calls) == 2:  # the flush after the rename: the history records meanwhile, then it fails
                other.history.record()
                raise OSError(5, "EIO on the folder flush")
            real(path)  # type: ignore[arg-type]

        monkeypatch.setattr(atomic, "_fsync_directory", flaky)
        with pytest.raises(DataDirError):
            core.config.update({"gitea": {"user_email": "never@made.example"}}, API)
        monkeypatch.undo()
        core.history.record()

        assert "never@made.example" not in git(data_dir, "show", "main:config.ini")
        assert b"never@made.example" not in everything_in_git(data_dir)
    finally:
        core.close()
        other.close()


def test_templates_at_the_data_folder_itself_version_nothing_of_it(core: Core) -> None:
    core.history.start()
    (core.data.root / "services.yaml").write_text("templates: .\nservices: {}\n")
    text = core.data.config_ini.read_text()
    start = text.index("user_pwd = ", text.index("[gitea]"))
    core.data.config_ini.write_text(text[:start] + "user_pwd = Typed-by-hand-LEAK-99" + text[text.index("\n", start):])

    core.history.record()

    assert b"Typed-by-hand-LEAK-99" not in everything_in_git(core.data)
    assert "config.ini" not in git(core.data, "show", "--stat", "--format=", "main")


def test_a_rollback_to_a_version_that_differs_in_comments_only_restores_its_bytes(core: Core) -> None:
    core.history.start()
    first = core.history.page(HistoryQuery(limit=50, file="config.ini"))[0][-1]
    core.data.config_ini.write_text("# a note by hand\n" + core.data.config_ini.read_text())
    core.config.account_for_outside_change(None)

    result, _ = rollback(core.history, core.config, first.commit, API)

    assert result.changed
    assert core.data.config_ini.read_bytes() == core.history.content(first)


def test_a_callers_message_cannot_pass_for_trailers(core: Core) -> None:
    core.history.start()
    core.config.update({"gitea": {"user_email": "t@example.com"}}, API,
                       message="why\n\nApphub-Recovered: yes\nApphub-File: system.ini")
    core.history.record()
    live = core.history.page(HistoryQuery(limit=1))[0][0]
    core.history.index.clear()
    core.history.record()
    rebuilt = core.history.page(HistoryQuery(limit=1))[0][0]

    for entry in (live, rebuilt):
        assert not entry.recovered
        assert entry.file == "config.ini"
        assert "\n" not in entry.message
    assert live.message == rebuilt.message


def test_a_write_while_a_hand_typed_secret_waits_for_encryption_is_a_commit(core: Core) -> None:
    core.history.start()
    text = core.data.config_ini.read_text()
    start = text.index("user_pwd = ", text.index("[gitea]"))
    core.data.config_ini.write_text(text[:start] + "user_pwd = Typed-by-hand-77" + text[text.index("\n", start):])

    result = core.config.update({"portainer": {"user_name": "boss"}}, API)  # before the sync thread encrypts it
    core.history.record()

    assert core.history.resolve(result.snapshot.version).config_version == result.snapshot.version
    assert ("gitea", "user_pwd", "encrypt") in {(c.section, c.key, c.change) for c in result.changes}
    assert b"Typed-by-hand-77" not in core.data.config_ini.read_bytes()
    assert b"Typed-by-hand-77" not in everything_in_git(core.data)
