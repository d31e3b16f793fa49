"""A target that cannot be written (issue 8): every service a refused version would have changed
shows the failure, the version it wanted and why, not `applied`; and no staged file of apphub's is
left behind in a service's folder.

The folder is made read-only for real during the test: the immutable flag (`chattr +i`), or a
read-only bind mount, each undone whatever happens (tests/sync/conftest.py `read_only`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apphub.sync.engine import SyncEngine
from tests.sync.conftest import SyncWorld, read_only


def _two_services(world: SyncWorld) -> tuple[Path, Path]:
    """`a` (JSON in web/) and `b` (INI in db/), both reading web.title."""
    a, b = world.path("web/app.json"), world.path("db/db.ini")
    world.manifest({
        "a": {"files": [{"path": str(a), "format": "json", "mode": "merge", "map": {"title": "${web.title}"}}],
              "reload": world.exec_reload("a", quote=a)},
        "b": {"files": [{"path": str(b), "format": "ini", "mode": "merge", "map": {"s.title": "${web.title}"}}],
              "reload": world.exec_reload("b", quote=b)},
    })
    return a, b


def _status(engine: SyncEngine) -> dict[str, dict[str, Any]]:
    return {service["service"]: service for service in engine.status_dict()["services"]}


@pytest.mark.parametrize("how", ["chattr", "mount"])
def test_a_refused_apply_shows_on_every_service_it_would_have_changed(world: SyncWorld, how: str) -> None:
    a, b = _two_services(world)
    with world.engine(watch=False) as engine:
        running = world.core.config.snapshot().version
        assert {name: s["state"] for name, s in _status(engine).items()} == {"a": "applied", "b": "applied"}
        before = a.read_bytes(), b.read_bytes()
        reloads = len(world.reloads())

        with read_only(a.parent, how) as made:
            wanted = world.set("web", title="Wanted").snapshot.version
            report = world.sync_now(engine)

            assert report.refused, report
            status = _status(engine)
            for name in ("a", "b"):
                assert status[name]["state"] == "failed", (made, status[name])
                assert status[name]["wanted_version"] == wanted
                assert status[name]["applied_version"] == running
                assert status[name]["last_error"].startswith(
                    f"failed to apply version {wanted[:12]}, running the previous one: the version was refused: ")
            reason = "Operation not permitted" if made == "chattr +i" else "Read-only file system"
            assert f"service a, file 1 ({a}): cannot write {a}: {reason}" in status["a"]["last_error"]
            assert f"service a, file 1 ({a})" in status["b"]["last_error"], "b says why it was held back"
            # and so says the answer of a write with ?wait=true
            assert {name: o.result for name, o in report.outcomes.items()} == {"a": "refused", "b": "refused"}
            assert report.outcomes["a"].error == status["a"]["last_error"]
            assert (a.read_bytes(), b.read_bytes()) == before
            assert len(world.reloads()) == reloads

        report = world.sync_now(engine)  # the folder can be written again
        assert {name: o.result for name, o in report.outcomes.items()} == {"a": "applied", "b": "applied"}
        status = _status(engine)
        for name in ("a", "b"):
            assert (status[name]["state"], status[name]["applied_version"], status[name]["last_error"]) == \
                ("applied", wanted, None)


def test_a_render_that_fails_validation_shows_on_the_services_and_clears_when_undone(world: SyncWorld) -> None:
    app, page = world.path("web/app.json"), world.path("web/page.json")
    world.template("page.json.j2", '{"title": "{{ settings.web.title }}"}\n')
    world.manifest({
        "web": {"files": [{"path": str(app), "mode": "merge", "map": {"server.title": "${web.title}"}}],
                "reload": world.exec_reload("web")},
        "page": {"files": [{"path": str(page), "template": "page.json.j2"}], "reload": world.exec_reload("page")},
    })
    with world.engine(watch=False) as engine:
        running = world.core.config.snapshot().version
        wanted = world.set("web", title='The "best" shop').snapshot.version
        report = world.sync_now(engine)

        assert report.refused
        status = _status(engine)
        assert {name: (s["state"], s["wanted_version"], s["applied_version"]) for name, s in status.items()} == {
            "web": ("failed", wanted, running), "page": ("failed", wanted, running)}
        assert f"service page, file 1 ({page})" in status["page"]["last_error"]
        assert "json" in status["page"]["last_error"]
        assert f"service page, file 1 ({page})" in status["web"]["last_error"]

        undone = world.set("web", title="Demo").snapshot.version  # the value it had: nothing to write
        assert undone == running
        report = world.sync_now(engine)
        assert not report.refused
        status = _status(engine)
        assert {name: (s["state"], s["applied_version"], s["last_error"]) for name, s in status.items()} == {
            "web": ("applied", running, None), "page": ("applied", running, None)}
