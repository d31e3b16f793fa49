"""`apphub environments list|show|set|unset|diff|promote|use` and `apphub config explain
--environment`, run as the real console script: what each prints, its exit status, and that no
secret is ever printed.

Each run costs about a second (the interpreter and its imports), so the commands are grouped by
scenario, the setting up is done in process, and the refusals run side by side.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.environments.compare import diff
from apphub.paths import DataDir
from apphub.store.secrets import MASK, Secret
from tests.cli.conftest import RunApphub, apphub, audit_rows

__all__ = ["apphub"]  # the CLI's fixture, used here

ACTOR = Actor("environments-test", "test")
PROD_PASSWORD = "Prod-Otter-Lantern-83"
STAGING_PASSWORD = "Staging-Fjord-Maple-29"
REFERENCE = "http://${nginx_proxy_manager.docker0_ip}:3000/api/v1"

Done = subprocess.CompletedProcess[str]


def _ok(done: Done, *secrets: str) -> str:
    """stdout of a run that succeeded and printed none of `secrets`."""
    assert done.returncode == 0, (done.stdout, done.stderr)
    _no_secret(done, *secrets)
    return done.stdout


def _no_secret(done: Done, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in done.stdout + done.stderr, f"{done.args} printed a secret"
    assert "enc:v1:" not in done.stdout + done.stderr


def _line(path: Path, section: str, key: str) -> int:
    current = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("["):
            current = line.strip()[1:-1]
        elif current == section and line.split("=")[0].strip() == key:
            return number
    raise AssertionError(f"[{section}] {key} is not in {path.name}")


def _plain(core: Core, section: str, key: str) -> str:
    value = core.config.snapshot().plaintext(section, key)
    assert isinstance(value, Secret)
    return value.reveal()


def _active(data: DataDir) -> str:
    found = re.search(r"^\[environments\]\s*^active = (.*)$", data.system_ini.read_text(encoding="utf-8"),
                      re.MULTILINE)
    return found.group(1).strip() if found else ""


def test_set_list_show_use_explain_unset(apphub: RunApphub, data_dir: DataDir) -> None:
    done = apphub("environments", "set", "prod", "gitea", "user_email", "prod@example.com", "--message", "for prod")
    assert "[gitea] user_email = prod@example.com in prod" in _ok(done)
    overlay = data_dir.root / "config.prod.ini"
    done = apphub("environments", "set", "prod", "gitea", "user_pwd", PROD_PASSWORD)
    assert f"[gitea] user_pwd = {MASK} in prod" in _ok(done, PROD_PASSWORD)
    assert PROD_PASSWORD not in overlay.read_text(encoding="utf-8")
    message = audit_rows(data_dir, "SELECT message FROM audit_events WHERE file = 'config.prod.ini' ORDER BY id")
    assert [row["message"] for row in message] == ["for prod", None]

    shown = _ok(apphub("environments", "show", "prod"), PROD_PASSWORD).splitlines()
    assert shown == ["[gitea]", "user_email = prod@example.com", f"user_pwd = {MASK}"]

    assert "this host runs prod" in _ok(apphub("environments", "use", "prod"))
    assert _active(data_dir) == "prod"
    assert _ok(apphub("environments", "list")).splitlines() == ["  base  (config.ini)",
                                                               "* prod  (config.prod.ini, 2 keys)"]
    # explain follows the running environment, or the one asked for
    running = _ok(apphub("config", "explain", "gitea", "user_email")).splitlines()
    assert running[0] == "[gitea] user_email = prod@example.com"
    assert f"(config.prod.ini:{_line(overlay, 'gitea', 'user_email')})" in running[1]
    as_base = json.loads(_ok(apphub("config", "explain", "gitea", "user_email", "--environment", "base", "--json")))
    assert (as_base["origin"], as_base["line"]) == ("config.ini", _line(data_dir.config_ini, "gitea", "user_email"))
    secret = json.loads(_ok(apphub("config", "explain", "gitea", "user_pwd", "--environment", "prod", "--json"),
                            PROD_PASSWORD))
    assert (secret["origin"], secret["raw"], secret["value"], secret["secret"]) == ("config.prod.ini", MASK, MASK,
                                                                                    True)

    assert "[gitea] user_email dropped from prod" in _ok(apphub("environments", "unset", "prod", "gitea",
                                                                "user_email"))
    assert "user_email" not in overlay.read_text(encoding="utf-8")
    assert "this host runs base" in _ok(apphub("environments", "use", "base"))
    assert _active(data_dir) == ""


def test_diff_and_promote(apphub: RunApphub, data_dir: DataDir) -> None:
    core = Core(data_dir)
    try:
        base_password = _plain(core, "gitea", "user_pwd")
        core.environments.store("staging", create=True).update(
            {"gitea": {"user_email": "staging@example.com", "user_pwd": STAGING_PASSWORD, "base_url": REFERENCE}},
            ACTOR)
        core.environments.store("same", create=True).update({"gitea": {"user_pwd": base_password}}, ACTOR)
    finally:
        core.close()
    secrets = (base_password, STAGING_PASSWORD)

    text = _ok(apphub("environments", "diff", "base", "staging"), *secrets).splitlines()
    assert sorted(text) == sorted([
        "[gitea] base_url: 'http://websoft9-git:3000/api/v1' (config.ini) / "
        "'http://172.17.0.1:3000/api/v1' (config.staging.ini)",
        "[gitea] user_email: 'admin@mydomain.com' (config.ini) / 'staging@example.com' (config.staging.ini)",
        "[gitea] user_pwd: (secret) differs  (config.ini / config.staging.ini)",
    ])
    assert _ok(apphub("environments", "diff", "base", "same"), *secrets).splitlines() == [
        "base and same have the same effective settings"]
    body = json.loads(_ok(apphub("environments", "diff", "same", "staging", "--json"), *secrets))
    assert {(d["section"], d["key"]): (d["secret"], d["a"]["value"], d["b"]["value"]) for d in body["differences"]} == {
        ("gitea", "user_email"): (False, "admin@mydomain.com", "staging@example.com"),
        ("gitea", "base_url"): (False, "http://websoft9-git:3000/api/v1", "http://172.17.0.1:3000/api/v1"),
        ("gitea", "user_pwd"): (True, None, None)}

    done = apphub("environments", "promote", "staging", "same", "--key", "gitea.base_url", "--key", "gitea.user_pwd")
    assert "2 change(s) promoted from staging to same" in _ok(done, *secrets)
    same = (data_dir.root / "config.same.ini").read_text(encoding="utf-8")
    assert f"base_url = {REFERENCE}" in same  # as written, not resolved
    assert "user_email" not in same
    events = audit_rows(data_dir, "SELECT file FROM audit_events WHERE action = 'environments.promote'")
    assert [row["file"] for row in events] == ["config.same.ini"]

    done = apphub("environments", "promote", "staging", "base", "--message", "staging is right")
    assert "3 change(s) promoted from staging to base" in _ok(done, *secrets)
    config = data_dir.config_ini.read_text(encoding="utf-8")
    assert f"base_url = {REFERENCE}" in config
    assert "user_email = staging@example.com" in config
    core = Core(data_dir)
    try:
        assert diff(core.environments, "base", "staging") == []
    finally:
        core.close()
    events = audit_rows(data_dir, "SELECT file, message FROM audit_events WHERE action = 'environments.promote'")
    assert [(row["file"], row["message"]) for row in events][-1] == ("config.ini", "staging is right")


def test_refusals_exit_1_naming_the_problem_and_change_nothing(apphub: RunApphub, data_dir: DataDir) -> None:
    core = Core(data_dir)
    try:
        core.environments.store("prod", create=True).update({"gitea": {"user_pwd": PROD_PASSWORD}}, ACTOR)
    finally:
        core.close()
    files = {path: path.read_bytes() for path in data_dir.root.glob("*.ini")}
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("environments", "set", "Prod", "gitea", "user_email", "x@example.com"), 1,
         "'Prod' cannot name an environment"),
        (("environments", "set", "prod", "cockpit", "port", "ninety"), 1, "config.prod.ini: [cockpit] port"),
        (("environments", "set", "prod", "cockpit", "port", "9000"), 1, "(rule: port_conflict)"),
        (("environments", "show", "nowhere"), 1, "there is no environment 'nowhere' (known: base, prod)"),
        (("environments", "use", "nowhere"), 1, "there is no environment 'nowhere'"),
        (("environments", "unset", "prod", "gitea", "user_email"), 1, "user_email"),
        (("environments", "promote", "prod", "base", "--key", "gitea"), 1, "does not name a key"),
        (("config", "explain", "gitea", "user_email", "--environment", "nowhere"), 1, "no environment 'nowhere'"),
        (("environments", "set", "prod", "gitea"), 2, "Missing argument"),
    ]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        runs = list(pool.map(lambda case: apphub(*case[0]), cases))
    for (args, code, says), done in zip(cases, runs, strict=True):
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert says in done.stderr, (args, done.stderr)
        _no_secret(done, PROD_PASSWORD)
    assert {path: path.read_bytes() for path in data_dir.root.glob("*.ini")} == files


def test_check_names_the_overlay_for_a_value_the_active_overlay_sets(apphub: RunApphub, data_dir: DataDir) -> None:
    core = Core(data_dir)
    try:
        core.environments.store("prod", create=True).update({"domain": {"wildcard_domain": "prod.example.com"}},
                                                            ACTOR)
        core.system.update({"environments": {"active": "prod"}}, ACTOR)
    finally:
        core.close()
    overlay = data_dir.root / "config.prod.ini"
    overlay.write_text(overlay.read_text(encoding="utf-8") + "\n[cockpit]\nport = 9000\n", encoding="utf-8")
    done = apphub("check")
    assert done.returncode == 1, done.stderr
    assert f"config.prod.ini:{_line(overlay, 'cockpit', 'port')}: [cockpit] port = '9000'" in done.stderr, done.stderr
