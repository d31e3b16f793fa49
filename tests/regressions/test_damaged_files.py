"""Regressions: a damaged secret, a hand-edit typo and a file that does not parse.

- A damaged `enc:v1:` value once broke every listing (masking decrypted it), every write to its
  section, and `apphub init`; masks are now read off the stored text, and a write repairs it.
- A hand-edit typo once locked Websoft9's key out (auth read the broken file), printed the broken
  line (a password without its `=`) from every CLI command, and stopped `apphub serve` starting.
- Websoft9's routes answered 409 for a broken file, a status its clients do not know; now 500.
"""

from __future__ import annotations

import httpx

from apphub.bootstrap import initialise
from apphub.paths import DataDir
from tests.conftest import LiveServer
from tests.regressions.conftest import (
    MASK,
    PROBLEM_JSON,
    Cli,
    apphub_serve,
    insert_after_key,
    set_line,
)

DAMAGED = "enc:v1:gAAAAABdamaged-token-that-no-key-decrypts"


def damage_portainer_password(data: DataDir) -> None:
    set_line(data.config_ini, "portainer", "user_pwd", DAMAGED)


# -- a damaged secret ---------------------------------------------------------------------------


def test_a_damaged_secret_still_lists_masked_on_both_apis(live_server: LiveServer, admin: httpx.Client) -> None:
    damage_portainer_password(live_server.data)

    current = admin.get("/api/v1/settings")
    legacy = admin.get("/api/settings")

    assert current.status_code == 200, current.text
    assert current.json()["settings"]["portainer"]["user_pwd"] == MASK
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["portainer"]["user_pwd"] == MASK


def test_a_damaged_secret_blocks_no_write_to_its_section_and_a_new_value_repairs_it(
        live_server: LiveServer, admin: httpx.Client) -> None:
    damage_portainer_password(live_server.data)

    other = admin.put("/api/v1/settings/portainer", json={"user_name": "root"})

    assert other.status_code == 200, other.text
    assert other.json()["settings"]["portainer"]["user_pwd"] == MASK
    text = live_server.data.config_ini.read_text()
    assert "user_name = root" in text
    assert DAMAGED in text  # left as it was: only a new value replaces it

    repair = admin.put("/api/v1/settings/portainer", json={"user_pwd": "Repaired-Portainer-Pwd-1"})

    assert repair.status_code == 200, repair.text
    assert DAMAGED not in live_server.data.config_ini.read_text()
    revealed = admin.get("/api/v1/settings/portainer", params={"reveal": "true"})
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["settings"]["user_pwd"] == "Repaired-Portainer-Pwd-1"


def test_init_still_succeeds_on_a_folder_with_a_damaged_secret(data_dir: DataDir, cli: Cli) -> None:
    damage_portainer_password(data_dir)

    initialise(data_dir)  # raises on the code before the fix
    result = cli("init")

    assert result.returncode == 0, result.stderr
    assert DAMAGED in data_dir.config_ini.read_text()  # init never overwrites what is there


# -- a hand-edit typo: `user_pwd2 MyS3cretPass!` (no `=`) in [gitea] ------------------------------

TYPO_SECRET = "MyS3cretPass"


def add_typo(data: DataDir) -> int:
    return insert_after_key(data.config_ini, "gitea", "user_pwd", f"user_pwd2 {TYPO_SECRET}!")


def test_a_typo_keeps_the_websoft9_key_working_and_never_quotes_the_line(live_server: LiveServer,
                                                                          admin: httpx.Client, cli: Cli) -> None:
    got = cli("getkey")
    assert got.returncode == 0, got.stderr
    websoft9_key = got.stdout.strip()
    with live_server.client(websoft9_key) as websoft9:
        assert websoft9.get("/api/settings/gitea").status_code == 200  # the server reads the good file
        line = add_typo(live_server.data)

        legacy = websoft9.get("/api/settings/gitea")
        current = websoft9.get("/api/v1/settings")
    problem = admin.get("/api/v1/settings")

    assert legacy.json() != {"message": "Invalid Request", "details": "Invalid API Key"}
    assert legacy.status_code == 500, legacy.text
    assert legacy.json()["message"] == "Internal Server Error"
    assert f"config.ini:{line}" in legacy.json()["details"]
    assert current.status_code == 409, current.text  # authenticated; the file is what is wrong
    assert problem.status_code == 409, problem.text
    assert problem.headers["content-type"].startswith(PROBLEM_JSON)
    assert f"config.ini:{line}" in problem.json()["detail"]
    for response in (legacy, current, problem):
        assert TYPO_SECRET not in response.text


def test_legacy_routes_answer_500_in_websoft9_shape_for_a_file_that_does_not_parse(
        live_server: LiveServer, admin: httpx.Client) -> None:
    line = add_typo(live_server.data)
    before = live_server.data.config_ini.read_bytes()

    responses = [
        admin.get("/api/settings"),
        admin.get("/api/settings/gitea"),
        admin.put("/api/settings/gitea", params={"key": "user_name", "value": "ops"}),
    ]

    for response in responses:
        assert response.status_code == 500, (response.request.method, response.request.url, response.text)
        body = response.json()
        assert set(body) == {"message", "details"}
        assert body["message"] == "Internal Server Error"
        assert f"config.ini:{line}" in body["details"]
        assert TYPO_SECRET not in response.text
    assert live_server.data.config_ini.read_bytes() == before


def test_cli_reads_name_the_typo_line_without_quoting_it_and_check_quotes_it(data_dir: DataDir, cli: Cli) -> None:
    line = add_typo(data_dir)

    show = cli("config", "show")
    check = cli("check")

    assert show.returncode == 1
    assert f"config.ini:{line}" in show.stderr
    assert TYPO_SECRET not in show.stderr + show.stdout
    assert check.returncode == 1
    assert f"config.ini:{line}" in check.stderr
    assert f"user_pwd2 {TYPO_SECRET}!" in check.stderr  # the operator who asks sees the line


def test_serve_starts_on_a_file_with_a_typo_and_warns_about_it(data_dir: DataDir) -> None:
    line = add_typo(data_dir)

    with apphub_serve(data_dir, data_dir.root.parent) as served:
        with httpx.Client(base_url=served.url, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
        logged = served.stderr()

    assert "warning" in logged
    assert f"config.ini:{line}" in logged
    assert TYPO_SECRET not in logged
