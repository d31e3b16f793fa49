"""The sync thread: the first sync, restarts and crashes, coalescing, stopping, hand edits of
config.ini (refused, audited, secrets encrypted in place) and drift of the target files.

Everything is real: the engine's own thread and watchdog observer, files edited the way an
operator edits them, reloads by a shell script whose log counts them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import pytest

from apphub.db import Database
from apphub.sync.journal import Journal
from apphub.sync.manifest import load_manifest
from apphub.sync.plan import Planner
from tests.sync.conftest import ADMIN_PASSWORD, TEST_ACTOR, SyncWorld, wait_until


def _edit_config(world: SyncWorld, pattern: str, replacement: str) -> None:
    """Change config.ini by hand, saved the way vim does it (a new file renamed over the old one):
    the engine never reads it half-written (saving in place is test_watcher's business)."""
    path = world.data.config_ini
    text = path.read_text(encoding="utf-8")
    edited, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, f"{pattern!r} is not in config.ini"
    _save(path, edited)


def _save(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _line_of(path: Path, pattern: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"{pattern!r} is not in {path}")


def _journal(world: SyncWorld) -> Journal:
    return Journal(Database(world.data.database))


def _status(engine_status: dict[str, object], service: str) -> dict[str, object]:
    services = engine_status["services"]
    assert isinstance(services, list)
    found: dict[str, object] = next(s for s in services if s["service"] == service)
    return found


# -- start, restart, crash -----------------------------------------------------------------------


def test_the_first_sync_does_not_wait_for_the_debounce(world: SyncWorld) -> None:
    world.core.system.update({"sync": {"debounce_ms": 5000}}, TEST_ACTOR)
    world.standard()
    started = time.monotonic()
    with world.engine(first_sync=False) as engine:
        wait_until(lambda: engine.status.engine.syncs >= 1, 3, "the first sync")
        assert time.monotonic() - started < 2.0
        assert '"port": 8081' in world.path("web/app.json").read_text()
        assert "port = 5433" in world.path("db/db.ini").read_text()
        assert sorted(r.service for r in world.reloads()) == ["db", "web"]


def test_detect_runs_from_the_change_noticed_to_the_plan(world: SyncWorld) -> None:
    """`detect` covers the debounce and reading config.ini, from the first event of the change:
    at least the debounce, and not the coarse-clock error an mtime would add."""
    world.core.system.update({"sync": {"debounce_ms": 300}}, TEST_ACTOR)
    world.standard()
    with world.engine() as engine:
        world.settle(engine)
        config = world.data.config_ini
        config.write_text(config.read_text().replace("title = Demo", "title = Edited"))
        wait_until(lambda: "Edited" in world.path("web/app.json").read_text(), 5, "the edit to propagate")
        world.settle(engine)
        web = next(s for s in engine.status_dict()["services"] if s["service"] == "web")
        assert 300 <= web["timings_ms"]["detect"] < 1500, web["timings_ms"]


def test_a_restart_with_no_change_issues_zero_reloads(world: SyncWorld) -> None:
    world.standard()
    with world.engine():
        assert len(world.reloads()) == 2
    with world.engine() as engine:
        world.settle(engine)
        assert len(world.reloads()) == 0 + 2, "a restart of apphub with nothing changed reloads nothing"
        assert {s["service"]: s["state"] for s in engine.status_dict()["services"]} == {"web": "applied",
                                                                                       "db": "applied"}


def test_a_restart_after_a_change_made_while_stopped_reloads_only_what_differs(world: SyncWorld) -> None:
    world.standard()
    with world.engine():
        pass
    world.set("db", port=6000)  # apphub is down: only config.ini changes
    with world.engine() as engine:
        world.settle(engine)
        assert "port = 6000" in world.path("db/db.ini").read_text()
        assert [r.service for r in world.reloads()].count("db") == 2
        assert [r.service for r in world.reloads()].count("web") == 1


def test_a_crash_between_swap_and_gate_gets_its_reload_at_the_next_start(world: SyncWorld) -> None:
    world.standard()
    with world.engine():
        pass
    # What a crash leaves: config.ini at the new version, web's file already swapped to the
    # new bytes, the journal saying `applying`, and no reload issued.
    result = world.set("web", port=9001)
    manifest = load_manifest(world.data.root / "services.yaml", [str(world.root)], world.data.root)
    plan = Planner(manifest, world.templates, {}).plan(result.snapshot)
    app = world.path("web/app.json")
    app.write_bytes(plan.services["web"].files[0].after)
    journal = _journal(world)
    journal.applying(["web"], result.snapshot.version)

    with world.engine() as engine:
        world.settle(engine)
        web = world.reloads("web")
        assert len(web) == 2, "the reload the crash skipped is issued"
        assert '"port":9001' in web[-1].content
        assert len(world.reloads("db")) == 1, "db was not left half-way: nothing for it"
        entries = journal.entries()
        assert entries["web"].state == "applied"
        assert entries["web"].applied_version == result.snapshot.version
    with world.engine() as engine:
        world.settle(engine)
        assert len(world.reloads()) == 3, "once settled, the next start reloads nothing"


# -- coalescing and stopping ----------------------------------------------------------------------


def test_a_burst_of_writes_is_coalesced_and_the_last_value_wins(world: SyncWorld) -> None:
    world.core.system.update({"sync": {"debounce_ms": 50}}, TEST_ACTOR)
    world.standard()
    with world.engine() as engine:
        before = len(world.reloads("web"))
        for number in range(100):
            world.set("web", port=19000 + number)
        wait_until(lambda: '"port": 19099' in world.path("web/app.json").read_text(), 5, "the last value")
        world.settle(engine)
        applies = len(world.reloads("web")) - before
        assert 1 <= applies <= 10, f"{applies} reloads for 100 writes"
        assert '"port":19099' in world.reloads("web")[-1].content, "the last reload saw the last value"
        assert engine.status.engine.applied_version == world.core.config.snapshot().version
        assert len(world.reloads("db")) == 1


def test_the_engine_stops_within_5_seconds(world: SyncWorld) -> None:
    world.standard()
    with world.engine() as engine:
        pass
    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 5.0
    assert not any(thread.name in ("apphub-sync", "apphub-watcher") and thread.is_alive()
                   for thread in threading.enumerate())
    assert engine.status.engine.running is False


def test_the_engine_stops_within_5_seconds_during_a_long_health_gate(world: SyncWorld) -> None:
    world.standard(web={"health": {"command": ["false"], "timeout": 60, "interval": 0.2}})
    engine_ref = []
    with world.engine(first_sync=False) as engine:
        engine_ref.append(engine)
        wait_until(lambda: len(world.reloads("web")) >= 1, 5, "web's reload (the gate then waits 60 s)")
        started = time.monotonic()
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"stop took {elapsed:.1f} s"
    assert not any(thread.name == "apphub-sync" and thread.is_alive() for thread in threading.enumerate())


# -- hand edits of config.ini --------------------------------------------------------------------


def test_a_hand_edit_that_does_not_parse_is_not_propagated(world: SyncWorld, caplog: pytest.LogCaptureFixture) -> None:
    world.standard()
    app = world.path("web/app.json")
    with world.engine() as engine:
        before = app.read_bytes()
        caplog.set_level(logging.ERROR, logger="apphub.sync")
        _edit_config(world, r"^port = 8081$", "port 8082")
        line = _line_of(world.data.config_ini, r"^port 8082$")
        wait_until(lambda: engine.status.engine.config_error is not None, 3, "the refusal")
        error = str(engine.status.engine.config_error)
        assert f"config.ini:{line}" in error, error
        assert app.read_bytes() == before
        invalid = world.audit("settings.invalid")
        assert len(invalid) == 1
        assert f"config.ini:{line}" in invalid[0]["message"]
        assert any(f"config.ini:{line}" in record.getMessage() for record in caplog.records)
        assert len(world.reloads()) == 2
        assert "port 8082" in world.data.config_ini.read_text(), "the edit itself is never overwritten"

        _edit_config(world, r"^port 8082$", "port = 8083")
        wait_until(lambda: '"port": 8083' in app.read_text(), 3, "the next valid edit")
        wait_until(lambda: engine.status.engine.config_error is None, 3, "the error to clear")


def test_a_hand_edit_that_fails_validation_is_not_propagated(world: SyncWorld,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    world.standard()
    app, db = world.path("web/app.json"), world.path("db/db.ini")
    with world.engine() as engine:
        before = {app: app.read_bytes(), db: db.read_bytes()}
        caplog.set_level(logging.ERROR, logger="apphub.sync")
        # two keys change; one is invalid: neither propagates (the version is refused as a whole)
        text = world.data.config_ini.read_text()
        text = re.sub(r"^port = 8081$", "port = 99999", text, count=1, flags=re.MULTILINE)
        text = re.sub(r"^port = 5433$", "port = 5999", text, count=1, flags=re.MULTILINE)
        _save(world.data.config_ini, text)
        line = _line_of(world.data.config_ini, r"^port = 99999$")
        wait_until(lambda: "[web] port" in str(engine.status.engine.config_error), 3, "the refusal")
        error = str(engine.status.engine.config_error)
        assert f"config.ini:{line}: [web] port" in error, error
        assert {path: path.read_bytes() for path in before} == before
        assert any("[web] port" in record.getMessage() for record in caplog.records)
        assert "[web] port" in world.audit("settings.invalid")[-1]["message"]
        assert engine.status.engine.applied_version != world.core.config.snapshot().version
        assert "port = 99999" in world.data.config_ini.read_text(), "the edit itself is never overwritten"

        _edit_config(world, r"^port = 99999$", "port = 8090")
        wait_until(lambda: '"port": 8090' in app.read_text() and "port = 5999" in db.read_text(), 3,
                   "the fixed edit")
        assert engine.status.engine.config_error is None


def test_a_plaintext_secret_typed_by_hand_is_encrypted_in_place(world: SyncWorld) -> None:
    env = world.path("web/secret.env")
    world.standard(secrets={"files": [{"path": str(env), "map": {"PASSWORD": "${web.admin_password}"}}],
                            "reload": world.exec_reload("secrets")})
    typed = "Typed-By-Hand-4242"
    with world.engine() as engine:
        assert f"PASSWORD={ADMIN_PASSWORD}" in env.read_text()
        _edit_config(world, r"^admin_password = enc:v1:\S+$", f"admin_password = {typed}")
        wait_until(lambda: f"PASSWORD={typed}" in env.read_text(), 3, "the new password in the service's file")
        world.settle(engine)
        config = world.data.config_ini.read_text()
        assert typed not in config, "the plaintext is gone from config.ini"
        assert re.search(r"^admin_password = enc:v1:\S+$", config, re.MULTILINE)
        assert world.core.config.snapshot().section_plaintext_value("web", "admin_password") == typed
        assert engine.status.engine.config_error is None
        assert len(world.reloads("secrets")) == 2, "one reload for the new password, none for its encryption"


def test_a_hand_edit_is_audited_with_its_changes(world: SyncWorld) -> None:
    world.standard()
    with world.engine():
        _edit_config(world, r"^port = 8081$", "port = 8082")
        wait_until(lambda: '"port": 8082' in world.path("web/app.json").read_text(), 3, "the edit to propagate")
        wait_until(lambda: world.audit_changes("settings.file"), 3, "the audit event")
        changes = world.audit_changes("settings.file")
        assert [(c["section"], c["key"], c["change"], c["old"], c["new"]) for c in changes] == [
            ("web", "port", "set", "8081", "8082")]
        event = world.audit("settings.file")[0]
        assert (event["actor"], event["source"]) == ("file", "file")


# -- drift ---------------------------------------------------------------------------------------


def test_drift_with_policy_repair_is_rewritten_and_reloaded(world: SyncWorld) -> None:
    world.standard()  # web: drift repair
    app = world.path("web/app.json")
    with world.engine() as engine:
        good = app.read_bytes()
        _save(app, app.read_text().replace('"port": 8081', '"port": 1234'))
        wait_until(lambda: app.read_bytes() == good, 3, "the repair")
        wait_until(lambda: len(world.reloads("web")) == 2, 3, "web's reload")
        assert '"port":8081' in world.reloads("web")[-1].content
        drift = world.audit("sync.drift")
        assert len(drift) == 1
        assert "repair" in drift[0]["message"]
        assert str(app) in str(world.audit_changes("sync.drift"))
        world.settle(engine)
        assert len(world.reloads()) == 3, "its own repair is not seen as drift again"


def test_drift_with_policy_report_is_left_and_shown(world: SyncWorld) -> None:
    world.standard()  # db: drift report (the default)
    db = world.path("db/db.ini")
    with world.engine() as engine:
        edited = db.read_text().replace("port = 5433", "port = 7000")
        _save(db, edited)
        wait_until(lambda: _status(engine.status_dict(), "db")["state"] == "drifted", 3, "the drift report")
        assert _status(engine.status_dict(), "db")["drift"] == [str(db)]
        assert db.read_text() == edited, "reported, not repaired"
        assert len(world.reloads("db")) == 1
        drift = world.audit("sync.drift")
        assert len(drift) == 1
        assert "report" in drift[0]["message"]


def test_editing_an_unmapped_key_of_a_merged_file_is_not_drift(world: SyncWorld) -> None:
    world.standard()
    app = world.path("web/app.json")
    with world.engine() as engine:
        syncs = engine.status.engine.syncs
        edited = app.read_text().replace('"workers": 4', '"workers": 16')
        _save(app, edited)
        wait_until(lambda: engine.status.engine.syncs > syncs, 3, "the engine to look at the edit")
        world.settle(engine)
        assert app.read_text() == edited
        assert world.audit("sync.drift") == []
        assert len(world.reloads()) == 2
        assert _status(engine.status_dict(), "web")["state"] == "applied"


def test_the_periodic_drift_check_finds_an_edit_without_file_events(world: SyncWorld) -> None:
    world.core.system.update({"sync": {"drift_interval_s": 1}}, TEST_ACTOR)
    world.standard()
    app = world.path("web/app.json")
    with world.engine(watch=False):
        good = app.read_bytes()
        _save(app, app.read_text().replace('"port": 8081', '"port": 1234'))
        wait_until(lambda: app.read_bytes() == good, 3, "the periodic repair")
        assert len(world.audit("sync.drift")) == 1


# -- only what a change touches --------------------------------------------------------------------


def test_a_change_plans_only_the_services_that_read_it(world: SyncWorld) -> None:
    world.standard()
    with world.engine(watch=False) as engine:
        world.set("web", port=9001)
        report = world.sync_now(engine)
        assert report.outcomes["web"].result == "applied"
        assert set(report.outcomes) == {"web"}, (
            f"a change of web.port rendered {sorted(report.outcomes)}; only web reads it")


def test_a_write_whose_request_comes_after_the_watcher_gets_the_round_that_applied_it(
        world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher sees a write before the writer asks for its sync: the round the watcher starts
    reads the new version, and the writer's wait must get that round's report (the next round
    finds nothing left to do and reports no service)."""
    world.standard()
    with world.engine(watch=False) as engine:
        world.settle(engine)
        tickets: list[int] = []
        recover = engine._recover_backends

        def write_and_ask_meanwhile() -> None:
            if not tickets:  # between the round's start and its reading of config.ini
                world.set("web", title="Asked Late")
                tickets.append(engine.request(immediate=True))
            recover()

        monkeypatch.setattr(engine, "_recover_backends", write_and_ask_meanwhile)
        engine.request(immediate=True)  # the watcher's request: it starts the round
        wait_until(lambda: tickets, 5, "the write during the round")
        report = engine.wait(tickets[0], 10)
        assert report is not None
        assert report.outcomes["web"].result == "applied", report
        assert "Asked Late" in world.path("web/app.json").read_text()


def test_a_full_sync_asked_for_during_a_round_gets_a_full_round_of_its_own(
        world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world.standard()
    with world.engine(watch=False) as engine:
        world.settle(engine)
        tickets: list[int] = []
        recover = engine._recover_backends

        def ask_for_a_full_sync_meanwhile() -> None:
            if not tickets:
                tickets.append(engine.request(immediate=True, full=True))
            recover()

        monkeypatch.setattr(engine, "_recover_backends", ask_for_a_full_sync_meanwhile)
        world.set("web", title="Only Web")
        engine.request(immediate=True)
        wait_until(lambda: tickets, 5, "the request during the round")
        report = engine.wait(tickets[0], 10)
        assert report is not None
        assert set(report.outcomes) == {"web", "db"}, "a full sync plans every service"


def test_a_reported_drift_is_not_overwritten_by_an_unrelated_change(world: SyncWorld) -> None:
    world.standard()  # db: drift report
    db = world.path("db/db.ini")
    with world.engine() as engine:
        edited = db.read_text().replace("port = 5433", "port = 7000")
        _save(db, edited)
        wait_until(lambda: _status(engine.status_dict(), "db")["state"] == "drifted", 3, "the drift report")
        world.set("web", port=9001)  # nothing db reads
        wait_until(lambda: '"port": 9001' in world.path("web/app.json").read_text(), 3, "web's change")
        world.settle(engine)
        assert db.read_text() == edited, "policy report: the operator's edit stays until they decide"
        assert len(world.reloads("db")) == 1, "db was not restarted by a change of web.port"
        assert _status(engine.status_dict(), "db")["state"] == "drifted"


def test_a_reported_drift_that_is_undone_by_hand_clears(world: SyncWorld) -> None:
    world.standard()
    db = world.path("db/db.ini")
    with world.engine() as engine:
        original = db.read_text()
        _save(db, original.replace("port = 5433", "port = 7000"))
        wait_until(lambda: _status(engine.status_dict(), "db")["state"] == "drifted", 3, "the drift report")
        _save(db, original)  # the operator puts it back
        wait_until(lambda: _status(engine.status_dict(), "db")["state"] == "applied", 3,
                   "the status to stop saying drifted")
        assert _status(engine.status_dict(), "db")["drift"] == []


def test_a_refused_hand_edit_that_is_undone_clears_the_error(world: SyncWorld) -> None:
    world.standard()
    with world.engine() as engine:
        original = world.data.config_ini.read_text()
        _edit_config(world, r"^port = 8081$", "port = 99999")
        wait_until(lambda: engine.status.engine.config_error is not None, 3, "the refusal")
        _save(world.data.config_ini, original)  # the operator undoes the edit in the editor
        wait_until(lambda: engine.status.engine.config_error is None, 3,
                   "the status to stop saying config.ini is refused")
        assert len(world.reloads()) == 2


def test_a_problem_already_in_the_file_does_not_block_a_valid_hand_edit(world: SyncWorld) -> None:
    # An adopted file can hold what the schema does not know (a section of a newer Websoft9).
    # Accepted once, it must not make every later hand edit of something else a refusal.
    world.standard()
    app = world.path("web/app.json")
    _save(world.data.config_ini, world.data.config_ini.read_text() + "\n[from_elsewhere]\nkey = value\n")
    world.core.config.account_for_outside_change(world.core.config.snapshot())  # accepted, audited
    with world.engine() as engine:
        _edit_config(world, r"^port = 8081$", "port = 8095")
        wait_until(lambda: '"port": 8095' in app.read_text(), 3, "the valid edit")
        assert engine.status.engine.config_error is None
        # ...while an edit that brings a problem of its own is still refused
        _edit_config(world, r"^port = 8095$", "port = 99999")
        wait_until(lambda: "[web] port" in str(engine.status.engine.config_error), 3, "the refusal")
        assert '"port": 8095' in app.read_text()
        assert "from_elsewhere" not in str(engine.status.engine.config_error)


def test_drift_is_seen_in_a_folder_the_first_apply_created(world: SyncWorld) -> None:
    app = world.path("created/by/apply/app.json")
    assert not app.parent.exists()
    world.manifest({"web": {"files": [{"path": str(app), "format": "json", "map": {"port": "${web.port}"}}],
                            "reload": world.exec_reload("web"), "drift": "repair"}})
    with world.engine() as engine:  # the periodic check is 60 s away: only a file event repairs in time
        good = app.read_bytes()
        world.settle(engine)
        _save(app, '{"port": 1234}')
        wait_until(lambda: app.read_bytes() == good, 3, "the repair of a file in a folder created by apphub")
        assert len(world.audit("sync.drift")) == 1
