"""The history's commits: in order, durable across crashes, recovered at start, secrets only as ciphertext."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import HistoryError, ValidationFailed
from apphub.history.gitrepo import GitRepository
from apphub.history.index import HistoryQuery
from apphub.history.rollback import rollback
from apphub.paths import DataDir
from apphub.store.snapshot import version_of

API = Actor("admin", "api")
PASSWORDS = [f"Plain-secret-{n}-xyzzy" for n in range(12)]


def git(data: DataDir, *args: str) -> str:
    done = subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), *args], capture_output=True,
                          check=True)
    return done.stdout.decode("utf-8", errors="replace")


def versions_in_git(data: DataDir) -> list[str]:
    return [line.split(": ", 1)[1] for line in git(data, "log", "--format=%B").splitlines()
            if line.startswith("Apphub-Version: ")]


def test_every_write_becomes_a_commit_in_order(core: Core) -> None:
    core.history.start()
    made = [core.config.update({"gitea": {"user_email": f"u{n}@example.com"}}, API).snapshot.version
            for n in range(5)]

    assert core.history.record() == 5
    assert versions_in_git(core.data)[:5] == list(reversed(made))
    assert git(core.data, "show", "main:config.ini").encode() == core.data.config_ini.read_bytes()


def test_versions_wait_in_the_database_until_committed_and_survive_a_restart(data_dir: DataDir) -> None:
    core = Core(data_dir)
    core.history.start()
    made = [core.config.update({"gitea": {"user_email": f"u{n}@example.com"}}, API).snapshot.version
            for n in range(3)]
    assert core.audit.versions_waiting() == 3
    core.close()  # a process that stops (or is killed) before its history thread commits them

    again = Core(data_dir)
    try:
        again.history.start()
        assert again.audit.versions_waiting() == 0
        assert versions_in_git(data_dir)[:3] == list(reversed(made))
        assert not [entry for entry in again.history.page(HistoryQuery(limit=10))[0] if entry.recovered]
    finally:
        again.close()


def test_a_death_between_moving_the_branch_and_indexing_is_caught_up(core: Core,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    core.history.start()
    version = core.config.update({"gitea": {"user_email": "x@example.com"}}, API).snapshot.version

    def die(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(core.history.index, "add", die)
    with pytest.raises(KeyboardInterrupt):
        core.history.record()
    monkeypatch.undo()
    assert versions_in_git(core.data)[0] == version  # the branch moved; the index does not know it

    core.history.record()

    entries = core.history.page(HistoryQuery(limit=50))[0]
    assert entries[0].config_version == version
    assert entries[0].event_id is not None
    assert [entry.commit for entry in entries].count(entries[0].commit) == 1
    assert core.audit.versions_waiting() == 0
    assert versions_in_git(core.data).count(version) == 1  # not committed twice


def test_a_config_ini_that_is_not_the_last_commit_is_committed_as_recovered_at_start(data_dir: DataDir) -> None:
    core = Core(data_dir)
    core.history.start()
    core.close()
    text = data_dir.config_ini.read_text().replace("admin@mydomain.com", "edited@example.com", 1)
    data_dir.config_ini.write_text(text)  # by hand, while apphub was stopped

    again = Core(data_dir)
    try:
        again.history.start()
        newest = again.history.page(HistoryQuery(limit=1))[0][0]
        assert newest.recovered
        assert newest.config_version == version_of(data_dir.config_ini.read_bytes())
        assert "Apphub-Recovered: yes" in git(data_dir, "log", "-1", "--format=%B")
    finally:
        again.close()


def test_a_plaintext_secret_typed_by_hand_is_never_committed(core: Core) -> None:
    core.history.start()
    text = core.data.config_ini.read_text()
    start = text.index("user_pwd = ", text.index("[gitea]"))
    end = text.index("\n", start)
    core.data.config_ini.write_text(text[:start] + "user_pwd = Typed-by-hand-secret-42" + text[end:])
    core.config.account_for_outside_change(None)  # what the sync thread does with a hand edit
    core.config.reencrypt_secrets(Actor("apphub", "sync"), only_plaintext=True)  # and then this
    core.history.record()

    everything = subprocess.run(["git", "--git-dir", str(core.data.state_dir / "history"), "cat-file",
                                 "--batch-all-objects", "--batch"], capture_output=True, check=True).stdout
    assert b"Typed-by-hand-secret-42" not in everything
    assert git(core.data, "show", "main:config.ini").encode() == core.data.config_ini.read_bytes()


def test_no_object_of_the_repository_holds_a_secret_in_plaintext(core: Core) -> None:
    core.history.start()
    for n, password in enumerate(PASSWORDS):
        core.config.update({"gitea": {"user_pwd": password, "user_email": f"u{n}@example.com"},
                            "portainer": {"user_pwd": password[::-1]}}, API)
        if n % 4 == 0:
            core.history.record()
    core.history.record()
    rollback(core.history, core.config, core.history.page(HistoryQuery(limit=500))[0][-1].commit, API)
    core.history.record()

    everything = subprocess.run(["git", "--git-dir", str(core.data.state_dir / "history"), "cat-file",
                                 "--batch-all-objects", "--batch"], capture_output=True, check=True).stdout
    assert len(everything) > 10_000
    for password in PASSWORDS:
        assert password.encode() not in everything
        assert password[::-1].encode() not in everything
    assert not list((core.data.state_dir / "history").rglob("secret.key"))
    assert b"secret.key" not in everything


def test_a_damaged_repository_is_moved_aside_intact_and_a_new_one_begins(data_dir: DataDir) -> None:
    core = Core(data_dir)
    core.history.start()
    core.config.update({"gitea": {"user_email": "before@example.com"}}, API)
    core.history.record()
    core.close()
    repository = data_dir.state_dir / "history"
    head = (repository / "refs" / "heads" / "main").read_text().strip()
    loose = repository / "objects" / head[:2] / head[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"not a git object")

    again = Core(data_dir)
    try:
        again.history.start()
        aside = [path for path in data_dir.state_dir.iterdir() if path.name.startswith("history.damaged-")]
        assert len(aside) == 1
        assert (aside[0] / "objects" / head[:2] / head[2:]).read_bytes() == b"not a git object"
        assert again.history.problem is not None
        assert "moved" in again.history.problem
        entries = again.history.page(HistoryQuery(limit=10))[0]
        assert len(entries) == 1
        assert entries[0].config_version == version_of(data_dir.config_ini.read_bytes())
        again.config.update({"gitea": {"user_email": "after@example.com"}}, API)
        assert again.history.record() == 1
    finally:
        again.close()


def test_the_cli_reports_a_damaged_repository_and_leaves_it_to_the_server(data_dir: DataDir) -> None:
    core = Core(data_dir)
    core.history.start()
    core.close()
    (data_dir.state_dir / "history" / "HEAD").write_text("garbage\n")
    again = Core(data_dir)
    try:
        with pytest.raises(HistoryError, match="moves it aside"):
            again.history.repository()
        assert (data_dir.state_dir / "history").exists()
    finally:
        again.close()


def test_a_missing_repository_is_begun_again_from_the_current_configuration(data_dir: DataDir) -> None:
    core = Core(data_dir)
    core.history.start()
    core.close()
    subprocess.run(["rm", "-rf", str(data_dir.state_dir / "history")], check=True)

    again = Core(data_dir)
    try:
        again.history.start()
        assert again.history.problem is not None
        assert "missing" in again.history.problem
        assert git(data_dir, "show", "main:config.ini").encode() == data_dir.config_ini.read_bytes()
    finally:
        again.close()


def test_the_index_is_rebuilt_from_the_commits_when_lost(core: Core) -> None:
    core.history.start()
    core.config.update({"gitea": {"user_email": "a@example.com"}}, API, message="why not")
    core.history.record()
    before = [(e.commit, e.config_version, e.author, e.source, e.message, e.event_id)
              for e in core.history.page(HistoryQuery(limit=50))[0]]
    core.history.index.clear()

    core.history.record()

    after = [(e.commit, e.config_version, e.author, e.source, e.message, e.event_id)
             for e in core.history.page(HistoryQuery(limit=50))[0]]
    assert after == before


def test_system_files_are_versioned_in_the_same_repository(core: Core) -> None:
    core.history.start()
    (core.data.root / "services.yaml").write_text("services: {}\n")
    (core.data.schema_dir / "extra.yaml").write_text("config: {}\n")

    core.history.record()

    assert git(core.data, "show", "main:services.yaml") == "services: {}\n"
    assert git(core.data, "show", "main:schema.d/extra.yaml") == "config: {}\n"
    newest = core.history.page(HistoryQuery(limit=1))[0][0]
    assert newest.author == "file"
    assert "services.yaml" in newest.message


def test_a_rollback_that_changes_nothing_writes_nothing(core: Core) -> None:
    core.history.start()
    version = core.config.update({"gitea": {"user_email": "a@example.com"}}, API).snapshot.version
    core.history.record()
    commits = core.history.index.count()

    result, _ = rollback(core.history, core.config, version, API)

    assert not result.changed
    assert core.history.record() == 0
    assert core.history.index.count() == commits


def test_a_rollback_refused_by_today_schema_writes_nothing(core: Core) -> None:
    core.history.start()
    first = core.config.update({"gitea": {"user_email": "a@example.com"}}, API).snapshot.version
    core.config.update({"gitea": {"user_email": "b@example.com"}}, API)
    on_disk = core.data.config_ini.read_bytes()
    (core.data.schema_dir / "strict.yaml").write_text(
        "config:\n  sections:\n    gitea:\n      keys:\n        user_email: {type: email, pattern: '^b@'}\n")

    with pytest.raises(ValidationFailed) as refused:
        rollback(core.history, core.config, first, API)

    assert [(error.section, error.key) for error in refused.value.errors] == [("gitea", "user_email")]
    assert core.data.config_ini.read_bytes() == on_disk


def test_git_can_read_the_repository(core: Core, tmp_path: Path) -> None:
    core.history.start()
    core.config.update({"gitea": {"user_email": "a@example.com"}}, API)
    core.history.record()

    subprocess.run(["git", "--git-dir", str(core.data.state_dir / "history"), "fsck", "--strict"], check=True,
                   capture_output=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(core.data.state_dir / "history"), str(clone)], check=True)
    assert (clone / "config.ini").read_bytes() == core.data.config_ini.read_bytes()
    assert GitRepository.open_checked(core.data.state_dir / "history").head() is not None


def test_a_hand_edit_that_does_not_validate_is_not_committed_at_start(data_dir: DataDir) -> None:
    core = Core(data_dir)
    core.history.start()
    head = core.history.index.last()
    core.close()
    text = data_dir.config_ini.read_text().replace("admin@mydomain.com", "not an e-mail address", 1)
    data_dir.config_ini.write_text(text)  # the sync thread refuses this one

    again = Core(data_dir)
    try:
        again.history.start()
        last = again.history.index.last()
        assert head is not None
        assert last is not None
        assert last.commit == head.commit
    finally:
        again.close()


def test_a_hand_edit_of_system_ini_is_committed_by_file(core: Core) -> None:
    core.history.start()
    text = core.data.system_ini.read_text().replace("debounce_ms = 50", "debounce_ms = 80")
    core.data.system_ini.write_text(text)

    core.history.record()

    newest = core.history.page(HistoryQuery(limit=1))[0][0]
    assert newest.file == "system.ini"
    assert newest.author == "file"
    assert newest.changes == [{"file": "system.ini", "section": "sync", "key": "debounce_ms", "change": "changed"}]
    assert git(core.data, "show", "main:system.ini") == text
