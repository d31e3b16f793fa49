"""`apphub history`, `show`, `diff` and `rollback`, run as the console script."""

from __future__ import annotations

import json
import subprocess

from apphub.paths import DataDir
from apphub.store.snapshot import version_of
from tests.cli.conftest import RunApphub


def git_show(data: DataDir, path: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "show", f"main:{path}"],
                          capture_output=True, check=True).stdout


def history_of(apphub: RunApphub) -> list[dict[str, object]]:
    done = apphub("history", "--json", "--limit", "100")
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, object]] = json.loads(done.stdout)
    return entries


def test_a_cli_write_is_a_commit_by_cli_with_its_message(apphub: RunApphub, data_dir: DataDir) -> None:
    done = apphub("config", "set", "gitea", "user_email", "cli@example.com", "--message", "set by hand")
    assert done.returncode == 0, done.stderr

    newest = history_of(apphub)[0]
    assert newest["author"] == "cli"
    assert newest["source"] == "cli"
    assert newest["message"] == "set by hand"
    assert newest["version"] == version_of(data_dir.config_ini.read_bytes())
    assert git_show(data_dir, "config.ini") == data_dir.config_ini.read_bytes()  # committed before it exited


def test_history_lists_newest_first_with_filters(apphub: RunApphub) -> None:
    apphub("config", "set", "gitea", "user_email", "a@example.com")
    apphub("config", "set", "portainer", "user_name", "boss")

    done = apphub("history", "--key", "user_name", "--section", "portainer")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "portainer.user_name changed" in lines[0]
    assert "created config.ini" in lines[-1]


def test_diff_exits_0_when_equal_1_when_different_2_on_error(apphub: RunApphub) -> None:
    apphub("config", "set", "gitea", "user_email", "a@example.com")
    first = str(history_of(apphub)[0]["version"])
    apphub("config", "set", "gitea", "user_email", "b@example.com")
    apphub("config", "set", "gitea", "user_pwd", "A-new-password-1234")

    different = apphub("diff", first[:8])
    equal = apphub("diff", first, first[:6])
    missing = apphub("diff", "abcdef12")

    assert different.returncode == 1, different.stderr
    assert "changed  [gitea] user_email: a@example.com -> b@example.com" in different.stdout
    assert "changed  [gitea] user_pwd: ******** -> ********" in different.stdout
    assert "A-new-password-1234" not in different.stdout
    assert equal.returncode == 0, equal.stderr
    assert equal.stdout == ""
    assert missing.returncode == 2
    assert "abcdef12" in missing.stderr


def test_show_prints_a_version_masked(apphub: RunApphub) -> None:
    apphub("config", "set", "gitea", "user_pwd", "Shown-nowhere-12345")
    version = str(history_of(apphub)[0]["version"])

    done = apphub("show", version[:10])

    assert done.returncode == 0, done.stderr
    assert f"version {version}" in done.stdout
    assert "user_pwd = ********" in done.stdout
    assert "Shown-nowhere-12345" not in done.stdout


def test_rollback_brings_a_version_back_and_dry_run_touches_nothing(apphub: RunApphub, data_dir: DataDir) -> None:
    apphub("config", "set", "gitea", "user_email", "a@example.com")
    target = history_of(apphub)[0]
    wanted = git_show(data_dir, "config.ini")
    apphub("config", "set", "gitea", "user_email", "b@example.com")
    before = data_dir.config_ini.read_bytes()

    dry = apphub("rollback", str(target["commit"])[:9], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["changes"][0]["new"] == "a@example.com"
    assert data_dir.config_ini.read_bytes() == before

    done = apphub("rollback", str(target["commit"])[:9], "--message", "back")
    assert done.returncode == 0, done.stderr
    assert data_dir.config_ini.read_bytes() == wanted
    newest = history_of(apphub)[0]
    assert newest["source"] == "rollback"
    assert newest["message"] == "back"


def test_rollback_of_system_ini_is_a_cli_action(apphub: RunApphub, data_dir: DataDir) -> None:
    apphub("history")  # the first commits
    first = git_show(data_dir, "system.ini")
    target = history_of(apphub)[0]["commit"]
    done = apphub("setsysconfig", "--section", "sync", "--key", "debounce_ms", "--value", "75")
    assert done.returncode == 0, done.stderr
    assert data_dir.system_ini.read_bytes() != first

    back = apphub("rollback", str(target), "--file", "system.ini")

    assert back.returncode == 0, back.stderr
    assert data_dir.system_ini.read_bytes() == first


def test_rollback_of_services_yaml_checks_the_manifest(apphub: RunApphub, data_dir: DataDir) -> None:
    manifest = data_dir.root / "services.yaml"
    manifest.write_text("services: {}\n")
    apphub("history")  # committed as a system file
    target = history_of(apphub)[0]["commit"]
    manifest.write_text("services:\n  broken: [\n")
    apphub("history")  # the broken one committed too

    refused = apphub("rollback", "HEAD", "--file", "services.yaml")
    back = apphub("rollback", str(target), "--file", "services.yaml")

    assert refused.returncode == 1
    assert back.returncode == 0, back.stderr
    assert manifest.read_text() == "services: {}\n"
    assert history_of(apphub)[0]["source"] == "rollback"
