"""`apphub env list|get|set|unset`, the real console script on a data folder with a service that
takes an environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.paths import DataDir
from tests.cli.conftest import APPHUB, RunApphub, audit_rows

SECRET = "pa$$ w0rd 'x'"


@pytest.fixture
def with_service(data_dir: DataDir, tmp_path: Path) -> DataDir:
    root = tmp_path / "srv"
    root.mkdir()
    core = Core(data_dir)
    try:
        core.system.update({"sync": {"roots": str(root)}}, Actor("test", "test"))
    finally:
        core.close()
    (data_dir.root / "services.yaml").write_text(
        f"services:\n  web:\n    env_file: {root}/web/.env\n    env: {{WEB_URL: \"${{gitea.base_url}}\"}}\n")
    return data_dir


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_set_list_get_unset(apphub: RunApphub, with_service: DataDir) -> None:
    assert "[web] TZ = UTC" in ok(apphub("env", "set", "web", "TZ", "UTC", "--message", "clocks"))
    listing = ok(apphub("env", "list"))
    assert "TZ = UTC    # env.ini [web]" in listing
    assert "WEB_URL = http://" in listing
    assert "mapped from ${gitea.base_url}" in listing
    assert json.loads(ok(apphub("env", "list", "web", "--json")))["web"]["service"] is True
    assert ok(apphub("env", "get", "web", "TZ")) == "UTC\n"
    assert "unset" in ok(apphub("env", "unset", "web", "TZ"))
    missing = apphub("env", "get", "web", "TZ")
    assert missing.returncode == 1
    assert "web has no variable TZ" in missing.stderr


def test_a_secret_from_stdin_never_shows(apphub: RunApphub, with_service: DataDir, tmp_path: Path) -> None:
    set_result = _with_stdin(with_service, tmp_path, SECRET)
    assert set_result.returncode == 0, set_result.stderr
    assert SECRET not in set_result.stdout
    assert "********" in set_result.stdout
    assert SECRET not in ok(apphub("env", "list"))
    assert SECRET not in with_service.env_ini.read_text()
    assert ok(apphub("env", "get", "global", "PASSWORD", "--reveal")) == SECRET + "\n"
    reveals = audit_rows(with_service, "SELECT * FROM audit_events WHERE action = 'secrets.reveal'")
    assert reveals


def _with_stdin(data: DataDir, tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`apphub env set global PASSWORD --secret --stdin` with `text` on its standard input."""
    return subprocess.run([str(APPHUB), "--data-dir", str(data.root), "env", "set", "global", "PASSWORD",
                           "--secret", "--stdin"], input=text, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "XDG_DATA_HOME": str(tmp_path / "xdg")}, timeout=60)


def test_refusals_name_the_problem(apphub: RunApphub, with_service: DataDir) -> None:
    mapped = apphub("env", "set", "web", "WEB_URL", "x")
    assert mapped.returncode == 1
    assert "mapped for service web" in mapped.stderr
    assert "${gitea.base_url}" in mapped.stderr
    bad = apphub("env", "set", "web", "1BAD", "x")
    assert bad.returncode == 1
    assert "1BAD" in bad.stderr
    unknown = apphub("env", "set", "nosuch", "X", "x")
    assert unknown.returncode == 1
    assert "scopes: global, web" in unknown.stderr
    usage = apphub("env", "set", "web", "X")
    assert usage.returncode == 2


def test_check_names_a_bad_variable_of_a_hand_edit(apphub: RunApphub, with_service: DataDir) -> None:
    with_service.env_ini.write_text("[web]\nGOOD = 1\n9LIVES = x\n")
    result = apphub("check")
    assert result.returncode == 1
    assert "env.ini:3: [web] 9LIVES: is not an environment variable name" in result.stderr


def test_plan_shows_what_an_env_change_does(apphub: RunApphub, with_service: DataDir) -> None:
    ok(apphub("env", "set", "web", "TZ", "UTC"))
    shown = ok(apphub("plan"))
    assert "web: none" in shown  # no reload declared: the .env file is written, nothing reloaded
    assert "+TZ=UTC" in shown
    assert "# apphub manages: TZ,WEB_URL" in shown
