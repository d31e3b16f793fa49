"""`FileResolver.effective`: every key of config.ini, an overlay over it and the schema's defaults,
resolved at once, must agree key for key with resolving each one alone (the one-pass shortcut for
plain values must not change a single answer)."""

from __future__ import annotations

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.environments.compare import diff
from apphub.errors import ApphubError
from apphub.store.inidoc import SetValue
from apphub.store.secrets import MASK, is_encrypted
from apphub.store.snapshot import Snapshot
from apphub.store.substitution import FileResolver, Resolution, SubstitutionError, _parsed, explain, resolver_for

ACTOR = Actor("effective-test", "test")
ENVIRON = {"REGION": "eu-west"}

Key = tuple[str, str]


def edited(snapshot: Snapshot, values: dict[Key, str]) -> Snapshot:
    """`snapshot` with `values` set as written, past every check (a hand edit the rules would refuse)."""
    document = snapshot.document.with_edits(SetValue(s, k, v) for (s, k), v in values.items())
    return Snapshot(snapshot.name, document.text.encode(), document, snapshot.schema, snapshot.box)


def one_by_one(resolver: FileResolver, keys: list[Key]) -> dict[Key, tuple[str, bool, str, tuple[Key, ...]] | str]:
    found: dict[Key, tuple[str, bool, str, tuple[Key, ...]] | str] = {}
    for key in keys:
        try:
            result = resolver.resolve(*key)
        except KeyError:
            continue
        except SubstitutionError as exc:
            found[key] = str(exc)
            continue
        found[key] = (result.value, result.secret, result.origin, result.references)
    return found


def shown(effective: dict[Key, Resolution | ApphubError]) -> dict[Key, tuple[str, bool, str, tuple[Key, ...]] | str]:
    return {key: (found.value, found.secret, found.origin, found.references) if isinstance(found, Resolution)
            else str(found) for key, found in effective.items()}


def every_key(*snapshots: Snapshot) -> list[Key]:
    keys = [key for snapshot in snapshots for key in snapshot.document.flat]
    keys += list(snapshots[0].schema.keys_with_defaults)
    return list(dict.fromkeys(keys))


def test_effective_agrees_with_resolving_each_key_alone(core: Core) -> None:
    core.config.update({"gitea": {"user_name": "gitadmin", "webhook_secret": "hook-Secret-1",
                                  "history_repo": "${gitea.user_name}-history"}}, ACTOR)
    core.environments.update("prod", {"gitea": {"user_email": "${gitea.user_name}@prod.example.com",
                                                 "webhook_secret": "prod-Hook-Secret-2"},
                                       "cockpit": {"port": "9091"}}, ACTOR)
    base = edited(core.config.snapshot(), {
        ("web", "plain"): "no references",
        ("web", "escaped"): "$${not.a.reference} and ${gitea.user_name}",
        ("web", "from_secret"): "token=${gitea.webhook_secret}",  # a secret the overlay overrides
        ("web", "overridden_plain"): "base value",  # the overlay sets a reference over it
        ("web", "overridden_reference"): "${gitea.user_name}",  # the overlay sets a plain value over it
        ("web", "region"): "${env:REGION}",
        ("web", "zone"): "${env:ZONE:-zone-a}",
        ("web", "cycle_a"): "${web.cycle_b}",
        ("web", "cycle_b"): "${web.cycle_a}",
        ("web", "missing"): "${nowhere.key}",
        ("web", "unset"): "${env:NOT_SET_ANYWHERE}",
        ("web", "from_port"): "https://h:${cockpit.port}/",  # the overlay's port, through a reference
    })
    overlay_snapshot = core.environments.overlay("prod")
    assert overlay_snapshot is not None
    overlay = edited(overlay_snapshot, {("web", "overridden_plain"): "${web.plain}!",
                                        ("web", "overridden_reference"): "overlay value"})
    for upper in (None, overlay):
        expected = one_by_one(resolver_for(base, ENVIRON, upper), every_key(base, *([upper] if upper else [])))
        assert shown(resolver_for(base, ENVIRON, upper).effective()) == expected
    effective = resolver_for(base, ENVIRON, overlay).effective()
    value = {key: found.value for key, found in effective.items() if isinstance(found, Resolution)}
    assert value[("web", "from_secret")] == "token=prod-Hook-Secret-2"
    assert value[("web", "overridden_plain")] == "no references!"
    assert value[("web", "overridden_reference")] == "overlay value"
    assert value[("web", "escaped")] == "${not.a.reference} and gitadmin"
    assert value[("web", "from_port")] == "https://h:9091/"
    assert value[("gitea", "user_email")] == "gitadmin@prod.example.com"
    origin = {key: found.origin for key, found in effective.items() if isinstance(found, Resolution)}
    assert origin[("cockpit", "port")] == "config.prod.ini"
    assert origin[("gitea", "history_repo")] == "config.ini"
    assert value[("gitea", "history_repo")] == "gitadmin-history"
    secret = {key for key, found in effective.items() if isinstance(found, Resolution) and found.secret}
    assert {("gitea", "webhook_secret"), ("web", "from_secret"), ("web", "region")} <= secret
    assert ("web", "zone") not in secret  # the default written in the file is no secret
    assert "the references make a cycle" in str(effective[("web", "cycle_a")])
    assert "[web] missing -> [nowhere] key" in str(effective[("web", "missing")])
    assert "NOT_SET_ANYWHERE is not set" in str(effective[("web", "unset")])


def test_effective_gives_the_schemas_defaults_and_decrypts_secrets(core: Core) -> None:
    base = core.config.snapshot()
    stored = base.document.get("gitea", "user_pwd")
    assert stored is not None
    assert is_encrypted(stored)
    effective = resolver_for(base, {}).effective()
    password = effective[("gitea", "user_pwd")]
    assert isinstance(password, Resolution)
    assert password.secret
    assert password.value == base.section_plaintext_value("gitea", "user_pwd")
    for key, spec in base.schema.keys_with_defaults.items():
        if base.document.get(*key) is None and not spec.secret:
            found = effective[key]
            assert isinstance(found, Resolution), key
            assert found.origin == "default", key


def test_a_value_is_parsed_into_literals_and_references_escapes_included() -> None:
    expected = {
        "plain": (("plain", None),),
        "$${x}": (("${x}", None),),
        "a ${b.c} d": (("a ", "b.c"), (" d", None)),
        "${b.c}${ d.e }": (("", "b.c"), ("", "d.e"), ("", None)),
        "x$${y}${z.w}$${": (("x${y}", "z.w"), ("${", None)),
        "${": (("${", None),),  # unterminated: literal text
        "${env:A:-b}c": (("", "env:A:-b"), ("c", None)),
    }
    for text, parts in expected.items():
        _parsed.cache_clear()
        assert _parsed(text) == parts, text
        assert _parsed(text) == parts, text  # and from the cache


def test_a_secret_that_cannot_be_decrypted_is_explained_and_compared_not_a_crash(core: Core) -> None:
    core.config.update({"gitea": {"history_repo": "${gitea.webhook_secret}"}}, ACTOR)
    core.environments.update("prod", {"gitea": {"user_email": "p@example.com"}}, ACTOR)
    config_ini = core.data.config_ini
    damaged = config_ini.read_text().replace("webhook_secret = \n", "webhook_secret = enc:v1:gAAAAdamaged\n")
    config_ini.write_text(damaged)
    snapshot = core.config.snapshot()
    for key in ("webhook_secret", "history_repo"):
        shown = explain(snapshot, "gitea", key, {})
        assert shown.value is None, key
        assert shown.error is not None
        assert "gAAAAdamaged" not in repr(shown)
    assert explain(snapshot, "gitea", "webhook_secret", {}).raw == MASK
    differences = {(d.section, d.key): d for d in diff(core.environments, "base", "prod", {})}
    assert differences[("gitea", "user_email")].b.value == "p@example.com"
    assert ("gitea", "webhook_secret") not in differences  # damaged alike on both sides
