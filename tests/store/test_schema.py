"""The schema: the built-in Websoft9 schema, schema.d files merged over it, and errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from apphub.errors import SchemaError
from apphub.store.schema import KeySpec, load_schema

WEBSOFT9_CONFIG_SECTIONS = {
    "nginx_proxy_manager": ["base_url", "user_name", "user_pwd", "nike_name", "listen_port", "docker0_ip", "ssl_cert",
                            "ssl_key"],
    # after Websoft9's keys, apphub's own for the first-start initialisers
    "gitea": ["base_url", "user_name", "user_email", "user_pwd", "api_token", "history_repo", "webhook_url",
              "webhook_secret"],
    "portainer": ["base_url", "user_name", "user_pwd", "setup_token"],
    "api_key": ["key"],
    "docker_mirror": ["url"],
    "domain": ["wildcard_domain"],
    "cockpit": ["port"],
    "initial_apps": ["keys"],
    "favorite_apps": ["keys"],
}
WEBSOFT9_SYSTEM_SECTIONS = {
    "docker_library": ["path"],
    "app_media": ["path"],
    "volume_backup": ["repopath", "hostname", "image"],
    "max_apps": ["key"],
    "appmonitor": ["keys"],
    "php_apps": ["keys"],
    "webhook": ["wechat", "monitor_api"],
    # apphub's own sections, after Websoft9's: where the history is pushed; where the sync engine
    # may write, how it reaches services
    "history": ["remote_url", "remote_branch", "remote_user", "remote_token", "remote_create"],
    "environments": ["active"],
    "rules": ["enabled", "port_probes"],
    "services": ["enabled", "check_interval_s", "step_timeout_s", "step_attempts", "gitea_container", "cockpit_host"],
    "sync": ["roots", "supervisor_url", "docker_url", "debounce_ms", "drift_interval_s"],
}


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "schema.d"
    folder.mkdir()
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the built-in schema -----------------------------------------------------------------------


def test_builtin_schema_has_every_websoft9_section_and_key() -> None:
    schema = load_schema(None)

    assert {name: list(spec.keys) for name, spec in schema.config.sections.items()} == WEBSOFT9_CONFIG_SECTIONS
    assert {name: list(spec.keys) for name, spec in schema.system.sections.items()} == WEBSOFT9_SYSTEM_SECTIONS
    assert schema.sources == ("<built-in websoft9.yaml>",)
    assert schema.config.extra_sections is False
    assert schema.system.extra_sections is True


def test_builtin_schema_marks_the_credentials_secret() -> None:
    schema = load_schema(None)

    secret_config = {(s, k) for s, spec in schema.config.sections.items() for k, key in spec.keys.items() if key.secret}
    secret_system = {(s, k) for s, spec in schema.system.sections.items() for k, key in spec.keys.items() if key.secret}
    assert secret_config == {
        ("nginx_proxy_manager", "user_pwd"),
        ("gitea", "user_pwd"),
        ("gitea", "api_token"),
        ("gitea", "webhook_secret"),
        ("portainer", "user_pwd"),
        ("portainer", "setup_token"),
        ("api_key", "key"),
    }
    assert secret_system == {("webhook", "wechat"), ("history", "remote_token")}
    assert schema.config.is_secret("gitea", "user_pwd")
    assert not schema.config.is_secret("gitea", "user_name")
    assert not schema.config.is_secret("nope", "nope")


def test_builtin_schema_types_and_defaults_match_websoft9() -> None:
    config = load_schema(None).config

    port = config.key("nginx_proxy_manager", "listen_port")
    assert port is not None
    assert port.type == "port"
    assert port.default == 9000
    assert port.required
    cockpit = config.key("cockpit", "port")
    assert cockpit is not None
    assert cockpit.default == 9090
    assert config.key("gitea", "base_url") == KeySpec(
        type="url", required=True, default="http://websoft9-git:3000/api/v1", apply="hot", description="Gitea API"
    )
    for section in ("nginx_proxy_manager", "gitea", "portainer"):
        password = config.key(section, "user_pwd")
        assert password is not None
        assert password.generate == "password"
        assert password.default is None


def test_a_missing_schema_folder_gives_the_builtin_schema(tmp_path: Path) -> None:
    assert load_schema(tmp_path / "does-not-exist") == load_schema(None)


# -- merging schema.d files --------------------------------------------------------------------


def test_a_file_adds_a_section(schema_dir: Path) -> None:
    path = write(
        schema_dir,
        "10-web.yaml",
        "config:\n"
        "  sections:\n"
        "    web:\n"
        "      description: The demo web service\n"
        "      keys:\n"
        "        port: {type: port, required: true, default: 8081, apply: restart}\n"
        "        title: {type: string, max_length: 80, apply: reload}\n",
    )

    schema = load_schema(schema_dir)

    web = schema.config.sections["web"]
    assert web.description == "The demo web service"
    assert list(web.keys) == ["port", "title"]
    assert web.keys["title"].max_length == 80
    assert web.keys["title"].apply == "reload"
    assert list(schema.config.sections)[:9] == list(WEBSOFT9_CONFIG_SECTIONS)  # built-in ones stay
    assert schema.sources == ("<built-in websoft9.yaml>", str(path))


def test_a_file_adds_and_replaces_keys_of_a_builtin_section(schema_dir: Path) -> None:
    write(
        schema_dir,
        "50-gitea.yaml",
        "config:\n"
        "  sections:\n"
        "    gitea:\n"
        "      keys:\n"
        "        user_name: {type: string, max_length: 20}\n"
        "        ssh_port: {type: port, default: 2222}\n",
    )

    gitea = load_schema(schema_dir).config.sections["gitea"]

    # A replaced key is the new spec as a whole, not a field-by-field merge.
    assert gitea.keys["user_name"] == KeySpec(type="string", max_length=20)
    assert gitea.keys["ssh_port"].default == 2222
    assert list(gitea.keys) == ["base_url", "user_name", "user_email", "user_pwd", "api_token", "history_repo",
                                "webhook_url", "webhook_secret", "ssh_port"]
    assert gitea.keys["user_pwd"].secret  # keys the file does not name are untouched
    assert gitea.description == "Gitea admin account apphub uses"


def test_a_file_overrides_extra_keys_and_extra_sections(schema_dir: Path) -> None:
    write(
        schema_dir,
        "10-open.yaml",
        "config:\n  extra_sections: true\n  sections:\n    cockpit:\n      extra_keys: true\n"
        "system:\n  extra_sections: false\n",
    )

    schema = load_schema(schema_dir)

    assert schema.config.extra_sections is True
    assert schema.config.sections["cockpit"].extra_keys is True
    assert list(schema.config.sections["cockpit"].keys) == ["port"]
    assert schema.config.sections["gitea"].extra_keys is False
    assert schema.system.extra_sections is False


def test_files_merge_in_name_order_and_the_later_one_wins(schema_dir: Path) -> None:
    # Written in the opposite order to their names, so creation order cannot be what decides.
    late = write(
        schema_dir,
        "20-site.yaml",
        "config:\n  sections:\n    web:\n      description: second\n"
        "      keys:\n        port: {type: port, default: 9443}\n",
    )
    early = write(
        schema_dir,
        "10-vendor.yaml",
        "config:\n"
        "  sections:\n"
        "    web:\n"
        "      description: first\n"
        "      extra_keys: true\n"
        "      keys:\n"
        "        port: {type: port, default: 8081}\n"
        "        title: {type: string}\n",
    )

    schema = load_schema(schema_dir)

    web = schema.config.sections["web"]
    assert web.description == "second"
    assert web.keys["port"].default == 9443
    assert list(web.keys) == ["port", "title"]
    assert web.extra_keys is True  # the later file did not set it
    assert schema.sources == ("<built-in websoft9.yaml>", str(early), str(late))


def test_only_yaml_files_are_read(schema_dir: Path) -> None:
    write(schema_dir, "README.txt", "this: [is not: yaml\n")
    write(schema_dir, "web.yaml.disabled", "config: {sections: {web: {keys: {port: {type: port}}}}}\n")

    assert load_schema(schema_dir) == load_schema(None)


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here yet\n# config:\n", "---\n"])
def test_empty_and_comment_only_files_are_fine(schema_dir: Path, text: str) -> None:
    write(schema_dir, "00-empty.yaml", text)

    schema = load_schema(schema_dir)

    assert schema.config == load_schema(None).config
    assert schema.system == load_schema(None).system


def test_a_file_with_only_one_part_leaves_the_other_alone(schema_dir: Path) -> None:
    write(schema_dir, "10-system.yaml", "system:\n  sections:\n    backup:\n      keys:\n        cron: {}\n")

    schema = load_schema(schema_dir)

    assert schema.config == load_schema(None).config
    assert "backup" in schema.system.sections


# -- invalid files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (
            "config:\n  sections:\n    web:\n      keys:\n        port: {type: port, requried: true}\n",
            ["config.sections.web.keys.port.requried", "Extra inputs"],
        ),
        (
            "config:\n  sections:\n    web:\n      keys:\n        port: {type: integer}\n",
            ["config.sections.web.keys.port.type", "'int'"],
        ),
        (
            "config:\n  sections:\n    web:\n      keys:\n        mode: {type: enum}\n",
            ["config.sections.web.keys.mode", "choices"],
        ),
        (
            "config:\n  sections:\n    web:\n      keys:\n        name: {type: string, pattern: '[a-'}\n",
            ["config.sections.web.keys.name.pattern", "not a valid regular expression"],
        ),
        (
            "config:\n  sections:\n    web:\n      keys:\n        port: {type: int, min: 10, max: 5}\n",
            ["config.sections.web.keys.port", "min 10 is greater than max 5"],
        ),
        (
            "config:\n  sections:\n    web:\n      keys:\n        port: {type: string, min: 1}\n",
            ["config.sections.web.keys.port", "'min' and 'max' only apply"],
        ),
        (
            "config:\n  sections:\n    web:\n      keys:\n        pw: {type: string, default: x, generate: password}\n",
            ["config.sections.web.keys.pw", "either a 'default' or a 'generate'"],
        ),
        ("config:\n  extra_section: true\n", ["config.extra_section", "Extra inputs"]),
        ("configs:\n  sections: {}\n", ["configs", "Extra inputs"]),
        ("config:\n  sections:\n    web: [port]\n", ["config.sections.web"]),
        ("config:\n  sections:\n    web:\n      extra_keys: maybe\n", ["config.sections.web.extra_keys"]),
    ],
    ids=[
        "unknown-field-typo",
        "bad-type-name",
        "enum-without-choices",
        "bad-regex",
        "min-greater-than-max",
        "min-on-a-string",
        "default-and-generate",
        "typo-in-file-flag",
        "typo-in-top-level",
        "section-not-a-mapping",
        "flag-not-a-bool",
    ],
)
def test_an_invalid_file_gives_a_schema_error_naming_the_file_and_the_field(
    schema_dir: Path, text: str, fields: list[str]
) -> None:
    write(schema_dir, "10-good.yaml", "config:\n  sections:\n    good:\n      keys:\n        k: {type: string}\n")
    bad = write(schema_dir, "20-bad.yaml", text)

    with pytest.raises(SchemaError) as caught:
        load_schema(schema_dir)

    message = str(caught.value)
    assert message.startswith(f"{bad}: "), message
    assert "10-good.yaml" not in message
    for field in fields:
        assert field in message


@pytest.mark.parametrize("text", ["- config\n- system\n", "just a string\n", "42\n"])
def test_a_file_that_is_not_a_mapping_is_refused(schema_dir: Path, text: str) -> None:
    bad = write(schema_dir, "10-list.yaml", text)

    with pytest.raises(SchemaError, match="must be a mapping") as caught:
        load_schema(schema_dir)

    assert str(caught.value).startswith(str(bad))


@pytest.mark.parametrize("text", ["config: [\n", "config:\n  sections:\n   web: {keys: {a: 1}\n", "a: b\n\tc: d\n"])
def test_invalid_yaml_is_refused_naming_the_file(schema_dir: Path, text: str) -> None:
    bad = write(schema_dir, "10-broken.yaml", text)

    with pytest.raises(SchemaError, match="not valid YAML") as caught:
        load_schema(schema_dir)

    assert str(caught.value).startswith(str(bad))


def test_a_file_that_is_not_utf8_is_refused_naming_the_file(schema_dir: Path) -> None:
    bad = schema_dir / "10-latin1.yaml"
    bad.write_bytes("config:\n  sections:\n    caf\u00e9: {}\n".encode("latin-1"))

    with pytest.raises(SchemaError) as caught:
        load_schema(schema_dir)

    assert str(caught.value).startswith(str(bad))


def test_every_problem_of_a_file_is_listed(schema_dir: Path) -> None:
    write(
        schema_dir,
        "10-bad.yaml",
        "config:\n  sections:\n    web:\n      keys:\n"
        "        a: {type: integer}\n        b: {type: port, requried: true}\n",
    )

    with pytest.raises(SchemaError) as caught:
        load_schema(schema_dir)

    assert "config.sections.web.keys.a.type" in str(caught.value)
    assert "config.sections.web.keys.b.requried" in str(caught.value)
