"""`${section.key}` and `${env:NAME:-default}` in values: chains, cycles, missing keys, escapes,
secrets that stay secret, and the explanation of where a value comes from."""

from __future__ import annotations

import pytest

from apphub.store.substitution import Resolver, Stored, SubstitutionError

FILE = "config.ini"


def resolver(values: dict[tuple[str, str], str], secrets: frozenset[tuple[str, str]] = frozenset(),
             environ: dict[str, str] | None = None) -> Resolver:
    def lookup(section: str, key: str) -> Stored | None:
        text = values.get((section, key))
        return None if text is None else Stored(text, (section, key) in secrets, FILE)

    return Resolver(lookup, lambda section: any(s == section for s, _ in values), environ or {})


def test_a_chain_resolves_and_names_every_key_it_read() -> None:
    found = resolver({("server", "host"): "git.example.com", ("gitea", "port"): "3000",
                      ("gitea", "origin"): "http://${server.host}:${gitea.port}",
                      ("gitea", "api"): "${gitea.origin}/api/v1"}).resolve("gitea", "api")
    assert found.value == "http://git.example.com:3000/api/v1"
    assert found.references == (("gitea", "origin"), ("server", "host"), ("gitea", "port"))
    assert (found.secret, found.origin) == (False, FILE)


def test_a_cycle_is_an_error_naming_the_chain() -> None:
    with pytest.raises(SubstitutionError) as caught:
        resolver({("a", "x"): "${b.y}", ("b", "y"): "pre-${c.z}", ("c", "z"): "${a.x}"}).resolve("a", "x")
    assert str(caught.value) == "[a] x -> [b] y -> [c] z -> [a] x: the references make a cycle"
    assert caught.value.chain == [("a", "x"), ("b", "y"), ("c", "z"), ("a", "x")]


def test_a_key_referring_to_itself_is_a_cycle() -> None:
    with pytest.raises(SubstitutionError, match=r"\[a\] x -> \[a\] x: the references make a cycle"):
        resolver({("a", "x"): "again ${a.x}"}).resolve("a", "x")


def test_a_missing_key_is_an_error_naming_the_chain() -> None:
    with pytest.raises(SubstitutionError) as caught:
        resolver({("a", "x"): "${b.y}", ("b", "y"): "${b.gone}"}).resolve("a", "x")
    assert str(caught.value) == "[a] x -> [b] y -> [b] gone: [b] gone has no value and no default"


@pytest.mark.parametrize("text", ["${nodot}", "${.x}", "${a.}", "${}"])
def test_a_malformed_reference_is_an_error(text: str) -> None:
    with pytest.raises(SubstitutionError, match="is not a reference"):
        resolver({("a", "x"): text}).resolve("a", "x")


def test_a_doubled_dollar_is_a_literal() -> None:
    assert resolver({("a", "x"): "cost $${b.y} and $5"}).resolve("a", "x").value == "cost ${b.y} and $5"


def test_environment_variables_with_and_without_defaults() -> None:
    values = {("a", "x"): "${env:HOME_DIR:-/srv}|${env:MODE}|${env:EMPTY:-fallback}|${env:EMPTY}"}
    found = resolver(values, environ={"MODE": "prod", "EMPTY": ""}).resolve("a", "x")
    assert found.value == "/srv|prod|fallback|"
    assert found.env == ("HOME_DIR", "MODE", "EMPTY")
    with pytest.raises(SubstitutionError) as caught:
        resolver({("a", "x"): "${env:MODE}"}).resolve("a", "x")
    assert caught.value.variable == "MODE"
    assert "${env:MODE:-default}" in str(caught.value)
    with pytest.raises(SubstitutionError, match="does not name an environment variable"):
        resolver({("a", "x"): "${env:1BAD}"}).resolve("a", "x")


def test_a_value_made_with_a_secret_is_a_secret_and_a_secret_is_never_substituted() -> None:
    values = {("db", "password"): "pa${ss-Qz7", ("db", "dsn"): "pg://app:${db.password}@db/app"}
    lookup = resolver(values, secrets=frozenset({("db", "password")}))
    dsn = lookup.resolve("db", "dsn")
    assert (dsn.value, dsn.secret) == ("pg://app:pa${ss-Qz7@db/app", True)
    assert lookup.resolve("db", "password").value == "pa${ss-Qz7"  # taken as written


def test_a_section_name_with_dots_is_found() -> None:
    found = resolver({("repo.local", "path"): "/srv/git", ("a", "x"): "${repo.local.path}/x"}).resolve("a", "x")
    assert found.value == "/srv/git/x"


def test_a_chain_too_deep_is_an_error() -> None:
    values = {("s", f"k{n}"): f"${{s.k{n + 1}}}" for n in range(40)}
    values[("s", "k40")] = "end"
    with pytest.raises(SubstitutionError, match="more than 32 deep"):
        resolver(values).resolve("s", "k0")
