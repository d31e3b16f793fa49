"""`apphub check`: offline validation of config.ini and system.ini, every problem with its line."""

from __future__ import annotations

import re
from pathlib import Path

from apphub.paths import DataDir
from tests.cli.conftest import RunApphub


def line_number(path: Path, pattern: str, after: str | None = None) -> int:
    """The 1-based number of the first line matching `pattern` (after the line matching `after`)."""
    lines = path.read_text().splitlines()
    start = 0
    if after is not None:
        start = next(n for n, line in enumerate(lines) if re.search(after, line)) + 1
    return next(n for n, line in enumerate(lines[start:], start=start + 1) if re.search(pattern, line))


def edit(path: Path, section: str, key: str, new_line: str) -> None:
    """Replace the line of `key` in `[section]` by `new_line` (by hand, like an operator's editor)."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines.index(f"[{section}]\n")
    number = next(n for n in range(header + 1, len(lines)) if lines[n].split("=")[0].strip() == key)
    lines[number] = new_line + "\n"
    path.write_text("".join(lines))


def insert_after(path: Path, section: str, key: str, new_line: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    header = lines.index(f"[{section}]\n")
    number = next(n for n in range(header + 1, len(lines)) if lines[n].split("=")[0].strip() == key)
    lines.insert(number + 1, new_line + "\n")
    path.write_text("".join(lines))


def problems(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_a_fresh_folder_passes(apphub: RunApphub) -> None:
    result = apphub("check")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "config.ini: OK (9 sections, 26 keys)" in result.stdout
    assert "system.ini: OK" in result.stdout


def test_every_problem_is_listed_with_file_line_section_and_key(apphub: RunApphub, data_dir: DataDir) -> None:
    ini = data_dir.config_ini
    plaintext_password = "Typed-By-Hand-9c2e"
    edit(ini, "nginx_proxy_manager", "listen_port", "listen_port = 70000")
    edit(ini, "gitea", "user_email", "user_email = not-an-email")
    edit(ini, "gitea", "user_pwd", f"user_pwd = {plaintext_password}")
    insert_after(ini, "cockpit", "port", "colour = blue")
    stored = ini.read_text()
    token = re.search(r"\[portainer\][^\[]*?user_pwd = (enc:v1:\S+)", stored)
    assert token is not None
    damaged = token.group(1)[:20] + ("A" if token.group(1)[20] != "A" else "B") + token.group(1)[21:]
    ini.write_text(stored.replace(token.group(1), damaged) + "\n[bogus]\nx = 1\n")
    before = ini.read_bytes()

    result = apphub("check")

    assert result.returncode == 1
    found = problems(result.stderr)
    port_line = line_number(ini, r"^listen_port = 70000$")
    email_line = line_number(ini, r"^user_email = not-an-email$")
    secret_line = line_number(ini, r"^user_pwd = Typed-By-Hand")
    colour_line = line_number(ini, r"^colour = blue$")
    damaged_line = line_number(ini, r"^user_pwd = enc:v1:", after=r"^\[portainer\]$")
    bogus_line = line_number(ini, r"^\[bogus\]$")
    expected = [
        (f"config.ini:{port_line}: [nginx_proxy_manager] listen_port", "rule: max"),
        (f"config.ini:{email_line}: [gitea] user_email", "rule: type"),
        (f"config.ini:{colour_line}: [cockpit] colour", "rule: unknown_key"),
        (f"config.ini:{secret_line}: [gitea] user_pwd", "rule: encrypted"),
        (f"config.ini:{damaged_line}: [portainer] user_pwd", "cannot be decrypted"),
        (f"config.ini:{bogus_line}: [bogus]", "rule: unknown_section"),
    ]
    for where, why in expected:
        assert any(line.startswith(where) and why in line for line in found), (where, why, found)
    assert plaintext_password not in result.stdout + result.stderr
    assert ini.read_bytes() == before, "check only reads"


def test_a_damaged_secret_is_not_also_reported_missing(apphub: RunApphub, data_dir: DataDir) -> None:
    ini = data_dir.config_ini
    stored = ini.read_text()
    token = re.search(r"\[portainer\][^\[]*?user_pwd = (enc:v1:\S+)", stored)
    assert token is not None
    ini.write_text(stored.replace(token.group(1), token.group(1)[:-12] + "tamperedXXX="))

    result = apphub("check")

    assert result.returncode == 1
    found = problems(result.stderr)
    assert any("[portainer] user_pwd" in line and "cannot be decrypted" in line for line in found), found
    # The key is there; only its value is damaged. Saying it is missing sends the
    # operator looking for a line that exists.
    assert not any("missing" in line for line in found), found
    assert len(found) == 1, found


def test_problems_of_system_ini_are_listed_too(apphub: RunApphub, data_dir: DataDir) -> None:
    edit(data_dir.system_ini, "max_apps", "key", "key = lots")
    edit(data_dir.system_ini, "docker_library", "path", "path = relative/apps")
    result = apphub("check")
    assert result.returncode == 1
    found = problems(result.stderr)
    key_line = line_number(data_dir.system_ini, r"^key = lots$")
    path_line = line_number(data_dir.system_ini, r"^path = relative/apps$")
    assert any(line.startswith(f"system.ini:{key_line}: [max_apps] key") and "rule: type" in line for line in found)
    assert any(line.startswith(f"system.ini:{path_line}: [docker_library] path") for line in found)
    assert "config.ini: OK" in result.stdout or not any(line.startswith("config.ini") for line in found)


def test_a_duplicate_section_is_a_parse_error_naming_the_line(apphub: RunApphub, data_dir: DataDir) -> None:
    text = data_dir.config_ini.read_text()
    data_dir.config_ini.write_text(text + "\n[cockpit]\nport = 9091\n")
    duplicate_line = len(text.splitlines()) + 2
    result = apphub("check")
    assert result.returncode == 1
    assert f"config.ini:{duplicate_line}:" in result.stderr
    assert "cockpit" in result.stderr


def test_a_duplicate_key_is_a_parse_error_naming_the_line(apphub: RunApphub, data_dir: DataDir) -> None:
    insert_after(data_dir.config_ini, "cockpit", "port", "port = 9091")
    duplicate_line = line_number(data_dir.config_ini, r"^port = 9091$")
    result = apphub("check")
    assert result.returncode == 1
    assert f"config.ini:{duplicate_line}:" in result.stderr
    assert "port" in result.stderr


def test_a_missing_required_key_is_reported(apphub: RunApphub, data_dir: DataDir) -> None:
    lines = [line for line in data_dir.config_ini.read_text().splitlines(keepends=True)
             if not line.startswith("base_url = http://websoft9-git")]
    data_dir.config_ini.write_text("".join(lines))
    result = apphub("check")
    assert result.returncode == 1
    assert any("[gitea] base_url" in line and "rule: required" in line for line in problems(result.stderr))


def test_an_invalid_schema_file_names_the_file_and_the_field(apphub: RunApphub, data_dir: DataDir) -> None:
    schema_file = data_dir.schema_dir / "20-web.yaml"
    schema_file.write_text("config:\n  sections:\n    web:\n      keys:\n        port: {type: prot, default: 8081}\n")
    result = apphub("check")
    assert result.returncode == 1
    assert str(schema_file) in result.stderr
    assert "config.sections.web.keys.port.type" in result.stderr


def test_a_schema_file_that_is_not_yaml_is_named(apphub: RunApphub, data_dir: DataDir) -> None:
    schema_file = data_dir.schema_dir / "30-broken.yaml"
    schema_file.write_text("config:\n  sections: [unclosed\n")
    result = apphub("check")
    assert result.returncode == 1
    assert str(schema_file) in result.stderr
    assert "YAML" in result.stderr


def test_a_valid_schema_file_extends_what_check_accepts(apphub: RunApphub, data_dir: DataDir) -> None:
    with data_dir.config_ini.open("a") as handle:
        handle.write("\n[web]\nport = 8081\n")
    refused = apphub("check")
    assert refused.returncode == 1
    assert "[web]" in refused.stderr
    (data_dir.schema_dir / "20-web.yaml").write_text(
        "config:\n  sections:\n    web:\n      keys:\n        port: {type: port, default: 8081}\n")
    accepted = apphub("check")
    assert accepted.returncode == 0, accepted.stderr
    assert "config.ini: OK (10 sections, 27 keys)" in accepted.stdout


def test_the_value_of_a_secret_is_never_printed(apphub: RunApphub, data_dir: DataDir) -> None:
    too_short = "Qz7-sec"  # portainer asks for 12 characters or more
    bad_pattern = "not a valid api key at all, it has spaces"
    edit(data_dir.config_ini, "portainer", "user_pwd", f"user_pwd = {too_short}")
    edit(data_dir.config_ini, "api_key", "key", f"key = {bad_pattern}")
    result = apphub("check")
    assert result.returncode == 1
    found = problems(result.stderr)
    assert any("[portainer] user_pwd" in line and "rule: min_length" in line for line in found), found
    assert any("[api_key] key" in line and "rule: pattern" in line for line in found), found
    assert any("[portainer] user_pwd" in line and "rule: encrypted" in line for line in found), found
    output = result.stdout + result.stderr
    assert too_short not in output
    assert bad_pattern not in output
    assert "not a valid api key" not in output
