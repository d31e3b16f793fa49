"""Applying a version: validate everything before writing anything, swap keeping owner and mode,
reload only what changed (dependencies first, the rest in parallel), then the health gate with
rollback to the previous bytes.

The engine runs without its file watcher here, so every round is one the test asked for and its
report is the one `engine.wait` returns.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apphub.db import Database
from apphub.sync.apply import ApplyReport
from apphub.sync.engine import SyncEngine
from apphub.sync.journal import Journal
from tests.sync.conftest import ADMIN_PASSWORD, TEST_ACTOR, HttpService, SyncWorld

NOBODY = 65534


def _change(world: SyncWorld, engine: SyncEngine, changes: dict[str, dict[str, Any]]) -> ApplyReport:
    world.core.config.update(changes, TEST_ACTOR)
    report: ApplyReport = world.sync_now(engine)
    return report


def _temporaries(*folders: Path) -> list[str]:
    return [name for folder in folders for name in os.listdir(folder) if name.endswith(".apphub-tmp")]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _applied(report: ApplyReport) -> dict[str, str]:
    return {name: outcome.result for name, outcome in report.outcomes.items() if outcome.result != "unchanged"}


# -- validation: all or nothing -----------------------------------------------------------------


def test_a_render_that_does_not_parse_refuses_the_version_for_every_service(world: SyncWorld) -> None:
    app, page = world.path("web/app.json"), world.path("web/page.json")
    world.template("page.json.j2", '{"title": "{{ settings.web.title }}"}\n')
    world.manifest({
        "web": {"files": [{"path": str(app), "mode": "merge", "map": {"server.title": "${web.title}"}}],
                "reload": world.exec_reload("web")},
        "page": {"files": [{"path": str(page), "template": "page.json.j2"}], "reload": world.exec_reload("page")},
    })
    with world.engine(watch=False) as engine:
        assert len(world.reloads()) == 2
        before = {app: app.read_bytes(), page: page.read_bytes()}

        report = _change(world, engine, {"web": {"title": 'The "best" shop'}})

        assert report.refused, report
        reason = " ".join(report.refused)
        assert f"service page, file 1 ({page})" in reason, reason
        assert "json" in reason, reason
        assert {path: path.read_bytes() for path in before} == before, "nothing written, for any service"
        assert len(world.reloads()) == 2, "nothing reloaded"
        assert engine.status.engine.refused == report.refused
        refused = world.audit("sync.refused")
        assert refused
        assert f"service page, file 1 ({page})" in refused[-1]["message"]

        report = _change(world, engine, {"web": {"title": "Shop"}})
        assert _applied(report) == {"web": "applied", "page": "applied"}
        assert b'"Shop"' in app.read_bytes()
        assert b'"Shop"' in page.read_bytes()
        assert engine.status.engine.refused == []


def test_a_failing_check_command_refuses_the_version_and_leaves_no_temporaries(world: SyncWorld) -> None:
    app, db = world.path("web/app.json"), world.path("db/db.ini")
    check = ("sh -c 'if grep -q BROKEN \"$0\"; then echo \"line 3: BROKEN is not allowed\" >&2; exit 1; fi' "
             "{staged}")
    world.standard(web={"files": [{"path": str(app), "mode": "merge", "check": check,
                                   "map": {"server.port": "${web.port}", "server.title": "${web.title}"}}]})
    with world.engine(watch=False) as engine:
        before = {app: app.read_bytes(), db: db.read_bytes()}
        reloads = len(world.reloads())

        # one version changes both services; web's check fails: db must not get its part either
        report = _change(world, engine, {"web": {"title": "BROKEN"}, "db": {"port": 5999}})

        assert report.refused, report
        reason = " ".join(report.refused)
        assert f"service web, file 1 ({app})" in reason, reason
        assert "exit 1" in reason, reason
        assert "line 3: BROKEN is not allowed" in reason, reason
        assert ".apphub-tmp" not in reason, "the message names the target, not the staged copy"
        assert {path: path.read_bytes() for path in before} == before
        assert len(world.reloads()) == reloads
        assert _temporaries(app.parent, db.parent) == []

        report = _change(world, engine, {"web": {"title": "Fine"}})
        assert _applied(report) == {"web": "applied", "db": "applied"}
        assert b"port = 5999" in db.read_bytes()


def test_a_check_command_that_is_not_installed_refuses_the_version(world: SyncWorld) -> None:
    app = world.path("web/app.json")
    world.standard(web={"files": [{"path": str(app), "mode": "merge", "check": "no-such-checker-xyz {staged}",
                                   "map": {"server.port": "${web.port}"}}]})
    before = app.read_bytes()
    with world.engine(watch=False) as engine:
        report = world.sync_now(engine)
        assert report.refused
        assert "no-such-checker-xyz" in " ".join(report.refused)
        assert "not installed" in " ".join(report.refused)
        assert app.read_bytes() == before
        assert _temporaries(app.parent) == []


def test_an_empty_render_never_empties_a_file(world: SyncWorld) -> None:
    motd = world.path("web/motd.txt")
    world.template("motd.j2", '{% if settings.web.motd != "off" %}motd: {{ settings.web.motd }}\n{% endif %}')
    world.manifest({"web": {"files": [{"path": str(motd), "template": "motd.j2"}], "reload": world.exec_reload("web")}})
    with world.engine(watch=False) as engine:
        assert motd.read_text() == "motd: hello\n"
        report = _change(world, engine, {"web": {"motd": "off"}})
        assert report.refused
        assert "empty" in " ".join(report.refused)
        assert str(motd) in " ".join(report.refused)
        assert motd.read_text() == "motd: hello\n"
        assert len(world.reloads("web")) == 1


# -- writing -------------------------------------------------------------------------------------


def test_files_keep_their_owner_and_mode(world: SyncWorld) -> None:
    app = world.path("web/app.json")
    os.chown(app, NOBODY, NOBODY)
    os.chmod(app, 0o640)
    world.standard()
    with world.engine(watch=False) as engine:
        assert b'"port": 8081' in app.read_bytes(), "the first sync wrote the file"
        report = _change(world, engine, {"web": {"port": 9001}})
        assert report.outcomes["web"].result == "applied"
        status = os.stat(app)
        assert (status.st_uid, status.st_gid, _mode(app)) == (NOBODY, NOBODY, 0o640)


def test_new_files_holding_a_secret_are_0600_unless_the_manifest_says_otherwise(world: SyncWorld) -> None:
    private, shared, plain = world.path("web/secret.env"), world.path("web/shared.env"), world.path("web/plain.env")
    world.manifest({"web": {"files": [
        {"path": str(private), "map": {"PASSWORD": "${web.admin_password}"}},
        {"path": str(shared), "map": {"TOKEN": "${web.api_token}"}, "file_mode": "0640"},
        {"path": str(plain), "map": {"PORT": "${web.port}"}},
    ], "reload": world.exec_reload("web")}})
    with world.engine(watch=False):
        assert _mode(private) == 0o600
        assert _mode(shared) == 0o640
        assert _mode(plain) == 0o644
        assert "tok-default" in shared.read_text(), "a secret's schema default is rendered in plaintext"


def test_an_existing_file_holding_a_secret_keeps_its_mode(world: SyncWorld) -> None:
    env = world.path("web/secret.env")
    env.write_text("PASSWORD=old\n")
    os.chown(env, 0, NOBODY)
    os.chmod(env, 0o640)  # the service's group reads it: apphub must not lock the service out
    world.manifest({"web": {"files": [{"path": str(env), "map": {"PASSWORD": "${web.admin_password}"}}],
                            "reload": world.exec_reload("web")}})
    with world.engine(watch=False):
        assert env.read_text() == f"PASSWORD={ADMIN_PASSWORD}\n"
        status = os.stat(env)
        assert (status.st_uid, status.st_gid) == (0, NOBODY)
        assert _mode(env) == 0o640


def test_a_file_owner_from_the_manifest_is_applied(world: SyncWorld) -> None:
    owned = world.path("web/owned.env")
    world.manifest({"web": {"files": [{"path": str(owned), "map": {"PORT": "${web.port}"}, "owner": "nobody"}]}})
    with world.engine(watch=False):
        assert os.stat(owned).st_uid == NOBODY


# -- reloading -----------------------------------------------------------------------------------


def test_only_services_whose_bytes_changed_are_reloaded(world: SyncWorld) -> None:
    world.template("length.j2", "title length {{ settings.web.title | length }}\n")
    world.standard(length={"files": [{"path": str(world.path("web/length.txt")), "template": "length.j2"}],
                            "reload": world.exec_reload("length")})
    with world.engine(watch=False) as engine:
        assert sorted(r.service for r in world.reloads()) == ["db", "length", "web"]
        report = _change(world, engine, {"web": {"port": 9001}})
        assert _applied(report) == {"web": "applied"}
        assert len(world.reloads("web")) == 2
        assert len(world.reloads("db")) == 1
        assert '"port":9001' in world.reloads("web")[-1].content, "reloaded after the swap"

        # `length` reads the title, but "Demo" -> "Shop" renders the same bytes: no reload for it
        report = _change(world, engine, {"web": {"title": "Shop"}})
        assert _applied(report) == {"web": "applied"}
        assert len(world.reloads("length")) == 1
        assert len(world.reloads()) == 5


def test_dependencies_reload_first(world: SyncWorld) -> None:
    db_ini, api_env = world.path("db/db.ini"), world.path("web/api.env")
    world.manifest({
        "api": {"files": [{"path": str(api_env), "map": {"DB_PORT": "${db.port}"}}],
                "reload": world.exec_reload("api"), "depends_on": ["db"]},
        "db": {"files": [{"path": str(db_ini), "mode": "merge", "map": {"database.port": "${db.port}"}}],
               "reload": world.exec_reload("db", sleep=0.3)},
    })
    with world.engine(watch=False) as engine:
        report = _change(world, engine, {"db": {"port": 6000}})
        assert _applied(report) == {"api": "applied", "db": "applied"}
        db, api = world.reloads("db")[-1], world.reloads("api")[-1]
        assert db.end <= api.start, f"api reloaded at {api.start} before db finished at {db.end}"


def test_a_service_whose_dependency_failed_is_held_back(world: SyncWorld) -> None:
    db_ini, api_env = world.path("db/db.ini"), world.path("web/api.env")
    world.manifest({
        "api": {"files": [{"path": str(api_env), "map": {"DB_PORT": "${db.port}"}}],
                "reload": world.exec_reload("api"), "depends_on": ["db"]},
        "db": {"files": [{"path": str(db_ini), "mode": "merge", "map": {"database.port": "${db.port}"}}],
               "reload": world.exec_reload("db", quote=db_ini, fail_on="port = 6000")},
    })
    with world.engine(watch=False) as engine:
        api_before = api_env.read_bytes()
        report = _change(world, engine, {"db": {"port": 6000}})
        assert report.outcomes["db"].result == "failed"
        api = report.outcomes["api"]
        assert api.result == "failed"
        assert api.error is not None
        assert "held back because db failed" in api.error, api.error
        assert api_env.read_bytes() == api_before, "api keeps the files that match the db it has"
        assert len(world.reloads("api")) == 1, "and is not reloaded"


def test_independent_services_reload_in_parallel(world: SyncWorld) -> None:
    world.manifest({name: {"files": [{"path": str(world.path(f"web/{name}.env")), "map": {"PORT": "${web.port}"}}],
                           "reload": world.exec_reload(name, sleep=1)} for name in ("one", "two")})
    with world.engine(watch=False) as engine:
        world.set("web", port=9001)
        started = time.monotonic()
        report = world.sync_now(engine)
        elapsed = time.monotonic() - started
        assert _applied(report) == {"one": "applied", "two": "applied"}
        assert elapsed < 1.8, f"two 1 s reloads took {elapsed:.2f} s: not in parallel"
        one, two = world.reloads("one")[-1], world.reloads("two")[-1]
        assert one.start < two.end, "their reloads overlap"
        assert two.start < one.end, "their reloads overlap"


# -- the health gate and rollback ---------------------------------------------------------------


def _gate_manifest(world: SyncWorld, web: dict[str, Any]) -> tuple[Path, Path]:
    app, proxy = world.path("web/app.json"), world.path("db/proxy.ini")
    world.manifest({
        "web": {"files": [{"path": str(app), "mode": "merge", "map": {"server.port": "${web.port}"}}],
                "reload": world.exec_reload("web", quote=app), **web},
        "proxy": {"files": [{"path": str(proxy), "map": {"upstream.port": "${web.port}"}}],
                  "reload": world.exec_reload("proxy", quote=proxy)},
    })
    return app, proxy


def _assert_rolled_back(world: SyncWorld, engine: SyncEngine, report: ApplyReport, app: Path, good: bytes,
                        *reasons: str) -> None:
    web = report.outcomes["web"]
    assert web.result == "failed"
    assert web.error is not None
    assert web.error.startswith(f"failed to apply version {report.version[:12]}"), web.error
    for reason in reasons:
        assert reason in web.error, web.error
    assert app.read_bytes() == good, "the previous bytes are back"
    assert report.outcomes["proxy"].result == "applied", "the other service still got the version"
    status = {s["service"]: s for s in engine.status_dict()["services"]}
    assert status["web"]["state"] == "failed"
    assert "failed to apply version" in status["web"]["last_error"]
    assert status["proxy"]["state"] == "applied"
    assert status["proxy"]["applied_version"] == report.version
    assert status["web"]["applied_version"] != report.version
    database = Database(world.data.database)  # what a restart of apphub would read
    try:
        journal = Journal(database).entries()
    finally:
        database.close()
    assert journal["web"].state == "failed"
    assert journal["proxy"].state == "applied"


def test_a_failing_health_command_rolls_the_service_back(world: SyncWorld) -> None:
    app = world.path("web/app.json")
    health = {"command": ["sh", "-c", '! grep -q 6666 "$0"', str(app)], "timeout": 0.5, "interval": 0.05}
    app, proxy = _gate_manifest(world, {"health": health})
    with world.engine(watch=False) as engine:
        good = app.read_bytes()
        report = _change(world, engine, {"web": {"port": 6666}})
        _assert_rolled_back(world, engine, report, app, good, "did not become healthy", "exit status 1")
        assert b"port = 6666" in proxy.read_bytes()
        first, second = world.reloads("web")[-2:]
        assert '"port":6666' in first.content, "reloaded with the new file"
        assert '"port":8081' in second.content, "and again with the previous one"
        assert len(world.reloads("proxy")) == 2


def test_an_http_probe_nobody_answers_rolls_the_service_back(world: SyncWorld,
                                                             http_service: Callable[[], HttpService]) -> None:
    hook, health = http_service(), http_service()
    app, _ = _gate_manifest(world, {
        "reload": {"strategy": "http", "url": f"{hook.url}/reload", "timeout": 2},
        "health": {"http": f"{health.url}/health", "timeout": 0.5, "interval": 0.05},
    })
    with world.engine(watch=False) as engine:
        assert len(hook.reloads) == 1, "the first sync reloaded web through its hook"
        assert health.health_checks >= 1, "and probed it"
        good = app.read_bytes()
        health.stop()  # the service died: its port refuses connections
        report = _change(world, engine, {"web": {"port": 6666}})
        _assert_rolled_back(world, engine, report, app, good, "did not become healthy", "connection refused")
        assert len(hook.reloads) == 3, "reloaded with the new file, then with the previous one"


def test_an_http_probe_answering_503_rolls_the_service_back(world: SyncWorld,
                                                            http_service: Callable[[], HttpService]) -> None:
    service = http_service()
    app, _ = _gate_manifest(world, {"health": {"http": f"{service.url}/health", "timeout": 0.5, "interval": 0.05}})
    with world.engine(watch=False) as engine:
        good = app.read_bytes()
        service.health_status = 503
        report = _change(world, engine, {"web": {"port": 6666}})
        _assert_rolled_back(world, engine, report, app, good, "HTTP 503")


def test_a_failing_reload_command_rolls_the_service_back(world: SyncWorld) -> None:
    app = world.path("web/app.json")
    app, _ = _gate_manifest(world, {"reload": world.exec_reload("web", quote=app, fail_on="7777")})
    with world.engine(watch=False) as engine:
        good = app.read_bytes()
        report = _change(world, engine, {"web": {"port": 7777}})
        _assert_rolled_back(world, engine, report, app, good, "exit status 1", "7777 is refused")
        first, second = world.reloads("web")[-2:]
        assert '"port":7777' in first.content
        assert '"port":8081' in second.content

        # the next good version goes through
        report = _change(world, engine, {"web": {"port": 9001}})
        assert report.outcomes["web"].result == "applied"
        assert b'"port": 9001' in app.read_bytes()


def test_a_new_file_is_removed_again_when_its_service_fails(world: SyncWorld) -> None:
    new = world.path("web/new.env")
    world.manifest({"web": {"files": [{"path": str(new), "map": {"PORT": "${web.port}"}}],
                            "reload": world.exec_reload("web", quote=new, fail_on="PORT=8081")}})
    with world.engine(watch=False) as engine:
        status = {s["service"]: s for s in engine.status_dict()["services"]}
        assert status["web"]["state"] == "failed"
        assert "PORT=8081 is refused" in status["web"]["last_error"]
        assert len(world.reloads("web")) == 2, "reloaded with the new file, then without it"
        assert not new.exists(), "the service had no file before: it has none after the rollback"
        assert _temporaries(new.parent) == []
