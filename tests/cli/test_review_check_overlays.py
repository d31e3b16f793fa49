"""`apphub check` and the environments' overlays (config.NAME.ini): each is parsed and checked
against config.ini's schema, named by its file and line. It once checked none of them: an active
overlay with `[cockpit] port = abc` was "OK", exit 0, though the sync refuses it, and one that is
not UTF-8 crashed `check` with a traceback (review 12, defect 8)."""

from __future__ import annotations

from pathlib import Path

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.paths import DataDir
from tests.cli.conftest import RunApphub

ACTOR = Actor("check-test", "test")
OVERLAY_PASSWORD = "Overlay-Typed-Walnut-58"


def _environments(data: DataDir, *names: str, active: str | None = None) -> None:
    """Overlays made through apphub (valid), and the one system.ini runs."""
    core = Core(data)
    try:
        for name in names:
            core.environments.store(name, create=True).update({"gitea": {"user_email": f"{name}@example.com"}},
                                                               ACTOR)
        if active is not None:
            core.system.update({"environments": {"active": active}}, ACTOR)
    finally:
        core.close()


def _line(path: Path, text: str) -> int:
    return path.read_text(encoding="utf-8").splitlines().index(text) + 1


def test_the_active_overlay_is_checked_against_the_schema_naming_its_file_and_lines(
        apphub: RunApphub, data_dir: DataDir) -> None:
    _environments(data_dir, "prod", active="prod")
    overlay = data_dir.root / "config.prod.ini"
    overlay.write_text("[gitea]\nuser_email = not-an-email\n[cockpit]\nport = abc\n", encoding="utf-8")

    done = apphub("check")

    assert done.returncode == 1, done.stdout
    assert f"config.prod.ini:{_line(overlay, 'user_email = not-an-email')}: [gitea] user_email" in done.stderr
    assert f"config.prod.ini:{_line(overlay, 'port = abc')}: [cockpit] port = 'abc'" in done.stderr
    assert "OK" not in done.stdout


def test_an_overlay_that_is_not_utf8_is_an_error_naming_its_file_and_line_not_a_traceback(
        apphub: RunApphub, data_dir: DataDir) -> None:
    _environments(data_dir, "prod", active="prod")
    (data_dir.root / "config.prod.ini").write_bytes(b"[gitea]\nuser_email = \xff\xfe@example.com\n")

    done = apphub("check")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "config.prod.ini:2: is not valid UTF-8 (byte 21)" in done.stderr, done.stderr


def test_an_overlay_that_cannot_be_read_is_named(apphub: RunApphub, data_dir: DataDir) -> None:
    (data_dir.root / "config.qa.ini").mkdir()  # read by nobody as a file, whoever runs the test

    done = apphub("check")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "config.qa.ini: cannot be read:" in done.stderr, done.stderr


def test_an_overlay_that_is_not_running_is_checked_too(apphub: RunApphub, data_dir: DataDir) -> None:
    _environments(data_dir, "prod", "qa", active="prod")
    inactive = data_dir.root / "config.qa.ini"
    inactive.write_text(inactive.read_text(encoding="utf-8") + "[cockpit]\nport = 70000\n", encoding="utf-8")

    done = apphub("check")

    assert done.returncode == 1
    assert f"config.qa.ini:{_line(inactive, 'port = 70000')}: [cockpit] port = '70000'" in done.stderr, done.stderr
    assert "config.prod.ini" not in done.stderr


def test_an_active_environment_without_an_overlay_is_an_error_in_system_ini(
        apphub: RunApphub, data_dir: DataDir) -> None:
    _environments(data_dir, "prod", active="prod")
    (data_dir.root / "config.prod.ini").unlink()

    done = apphub("check")

    assert done.returncode == 1
    line = _line(data_dir.system_ini, "active = prod")
    assert f"system.ini:{line}: [environments] active = 'prod': there is no environment 'prod'" in done.stderr, \
        done.stderr


def test_valid_overlays_pass_and_a_plaintext_secret_in_one_is_neither_a_problem_nor_printed(
        apphub: RunApphub, data_dir: DataDir) -> None:
    _environments(data_dir, "prod", "qa", active="prod")
    overlay = data_dir.root / "config.prod.ini"
    # typed by hand: the sync encrypts it (Environments.checked), so it is no problem for check either
    overlay.write_text(overlay.read_text(encoding="utf-8") + f"user_pwd = {OVERLAY_PASSWORD}\n", encoding="utf-8")

    done = apphub("check")

    assert done.returncode == 0, done.stderr
    assert "config.prod.ini: OK (1 sections, 2 keys)" in done.stdout
    assert "config.qa.ini: OK (1 sections, 1 keys)" in done.stdout
    assert OVERLAY_PASSWORD not in done.stdout + done.stderr
