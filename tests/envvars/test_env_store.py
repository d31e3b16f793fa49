"""env.ini through EnvStore: any text but NUL kept exactly, secrets encrypted, hand edits read,
layers resolved with their sources."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.envvars.resolve import service_env
from apphub.envvars.store import EnvStore, EnvValue, decode, encode
from apphub.errors import ValidationFailed
from apphub.sync.manifest import ServiceSpec

ME = Actor("test", "test")
AWKWARD = st.text(alphabet=st.sampled_from(list(" \t\n\r\"'\\$#;=%{}[]ab\u2028\x7f\x85é")), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(AWKWARD, st.text().filter(lambda text: "\x00" not in text)))
def test_encoding_reads_back_exactly_and_stays_on_one_line(value: str) -> None:
    text = encode(value)
    assert decode(text) == value
    assert "\n" not in text
    assert "\r" not in text
    assert text == text.strip()


def test_values_round_trip_through_the_file(core: Core) -> None:
    values = {"EMPTY": "", "SPACES": "  a b  ", "LINES": "one\ntwo\n", "QUOTED": '"kept"', "DOLLAR": "$2y$10$abc",
              "UNICODE": "ünïcödé ✓", "JSONISH": '"not json'}
    core.env.set("global", {name: EnvValue(value) for name, value in values.items()}, ME)
    found = EnvStore.variables(core.env.snapshot(), "global")
    assert {name: var.plaintext() for name, var in found.items()} == values


def test_a_secret_is_encrypted_and_stays_a_secret(core: Core) -> None:
    core.env.set("web", {"PASSWORD": EnvValue("s3cr3t\nline", secret=True)}, ME)
    raw = core.data.env_ini.read_text()
    assert "s3cr3t" not in raw
    assert "PASSWORD = enc:v1:" in raw
    core.env.set("web", {"PASSWORD": EnvValue("changed")}, ME)  # without --secret: still one
    stored = EnvStore.variables(core.env.snapshot(), "web")["PASSWORD"]
    assert stored.secret
    assert stored.plaintext() == "changed"
    assert "changed" not in core.data.env_ini.read_text()


def test_bad_names_and_nul_are_refused_all_at_once(core: Core) -> None:
    before = core.data.env_ini.read_bytes()
    with pytest.raises(ValidationFailed) as caught:
        core.env.set("web", {"GOOD": EnvValue("x"), "1BAD": EnvValue("y"), "NUL": EnvValue("a\x00")}, ME)
    assert {(error.key, error.rule) for error in caught.value.errors} == {("1BAD", "name"), ("NUL", "nul")}
    assert all(error.file == "env.ini" for error in caught.value.errors)
    assert core.data.env_ini.read_bytes() == before


def test_a_hand_edit_is_read_like_a_write(core: Core) -> None:
    core.data.env_ini.write_text('[global]\nTZ = UTC\nMOTD = "line one\\nline two"\n[web]\nTZ = Europe/Paris\n')
    found = EnvStore.variables(core.env.snapshot(), "global")
    assert found["MOTD"].plaintext() == "line one\nline two"


def test_layers_resolve_with_sources_the_mapping_winning(core: Core) -> None:
    core.env.set("global", {"TZ": EnvValue("UTC"), "LANG": EnvValue("C.UTF-8")}, ME)
    core.env.set("web", {"TZ": EnvValue("Europe/Paris"), "GITEA_URL": EnvValue("hand-set")}, ME)
    spec = ServiceSpec(env={"GITEA_URL": "${gitea.base_url}/x", "ADMIN_PWD": "${portainer.user_pwd}"},
                       env_file="/srv/web/.env")
    resolved = service_env("web", spec, core.config.snapshot(), core.env.snapshot(), {})
    assert resolved["LANG"].source == "env.ini [global]"
    assert resolved["TZ"].value == "Europe/Paris"
    assert resolved["TZ"].overrides == ("env.ini [global]",)
    assert resolved["GITEA_URL"].kind == "mapped"
    assert resolved["GITEA_URL"].overrides == ("env.ini [web]",)
    assert resolved["GITEA_URL"].keys == (("gitea", "base_url"),)
    assert resolved["ADMIN_PWD"].secret
    assert "ADMIN_PWD" in repr(resolved)
    assert resolved["ADMIN_PWD"].value not in repr(resolved)
