"""A value that refers to others (`${section.key}`): the services get it resolved, a change of a
key it refers to re-renders them, and a secret it holds stays masked everywhere but the file."""

from __future__ import annotations

import json

import pytest

from apphub.errors import ValidationFailed
from apphub.store.secrets import MASK
from apphub.store.substitution import explain
from tests.sync.conftest import ADMIN_PASSWORD, TEST_ACTOR, SyncWorld


def _title(world: SyncWorld) -> str:
    title: str = json.loads(world.path("web/app.json").read_text())["server"]["title"]
    return title


def test_the_services_get_a_reference_resolved_and_follow_what_it_refers_to(world: SyncWorld) -> None:
    world.standard()
    with world.engine(watch=False) as engine:
        world.set("web", title="Demo on ${web.port} (db ${db.name})")
        report = world.sync_now(engine)
        assert report.outcomes["web"].result == "applied"
        assert _title(world) == "Demo on 8081 (db app)"

        world.set("db", name="orders")  # web reads it through its title: web is planned too
        report = world.sync_now(engine)
        assert set(report.outcomes) == {"web", "db"}
        assert _title(world) == "Demo on 8081 (db orders)"


def test_a_secret_referred_to_is_in_the_file_only(world: SyncWorld) -> None:
    world.standard()
    with world.engine(watch=False) as engine:
        result = world.set("web", title="Admin ${web.admin_password}")
        assert [c.new for c in result.changes] == ["Admin ${web.admin_password}"]  # the raw text, no secret
        plan = engine.plan(world.core.config.snapshot())
        assert ADMIN_PASSWORD not in json.dumps(plan.to_dict())
        report = world.sync_now(engine)
        assert report.outcomes["web"].result == "applied"
        assert _title(world) == f"Admin {ADMIN_PASSWORD}"
        assert ADMIN_PASSWORD not in json.dumps(engine.status_dict())
        explained = explain(world.core.config.snapshot(), "web", "title", {})
        assert (explained.value, explained.secret, explained.raw) == (MASK, True, "Admin ${web.admin_password}")


def test_a_write_that_breaks_a_reference_is_refused_naming_the_chain(world: SyncWorld) -> None:
    world.standard()
    world.set("web", title="${web.motd}!")
    with pytest.raises(ValidationFailed) as caught:
        world.set("web", motd="${web.title}")
    assert [(e.section, e.key, e.rule) for e in caught.value.errors] == [("web", "title", "reference"),
                                                                        ("web", "motd", "reference")]
    assert "[web] motd -> [web] title -> [web] motd: the references make a cycle" in str(caught.value)
    with pytest.raises(ValidationFailed, match=r"\[web\] title -> \[db\] nope: \[db\] nope has no value"):
        world.set("web", title="${db.nope}")


def test_a_typed_key_may_refer_to_another_and_what_it_resolves_to_must_fit_its_type(world: SyncWorld) -> None:
    world.standard()
    world.core.config.update({"db": {"name": "9100"}}, TEST_ACTOR)
    with world.engine(watch=False) as engine:
        world.set("web", port="${db.name}")
        world.sync_now(engine)
        assert json.loads(world.path("web/app.json").read_text())["server"]["port"] == 9100  # a number, as typed
    with pytest.raises(ValidationFailed) as caught:
        world.set("db", name="orders")  # web's port would resolve to it
    assert [(e.section, e.key, e.rule) for e in caught.value.errors] == [("web", "port", "type")]
    assert "resolves to 'orders', which must be a whole number" in str(caught.value)


def test_a_restart_level_key_made_of_a_hot_one_is_still_restarted(world: SyncWorld) -> None:
    world.standard()
    world.core.config.update({"web": {"motd": "9100"}}, TEST_ACTOR)  # motd: apply hot
    with world.engine(watch=False) as engine:
        world.set("web", port="${web.motd}")  # port: apply restart
        world.sync_now(engine)
        reloads = len(world.reloads("web"))
        world.set("web", motd="9200")
        report = world.sync_now(engine)
        assert report.outcomes["web"].result == "applied"
        assert '"port": 9200' in world.path("web/app.json").read_text()
        # a hot change alone reloads nothing; the port it makes needs the restart its key asks for
        assert len(world.reloads("web")) == reloads + 1
