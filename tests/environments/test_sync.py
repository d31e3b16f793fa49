"""The sync engine renders the active environment: config.ini with the overlay of the environment
system.ini names over it. Switching environments, writing the active or an inactive overlay, a hand
edit of the active overlay (valid, broken), and the watcher that sees such edits.

Real engine, real watcher, real reloads (tests/sync/conftest.py's `world`): `web` renders
web/app.json from [web] port/title/motd, `db` renders db/db.ini from [db] port/name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apphub.core import Core
from apphub.errors import ValidationFailed
from apphub.store.secrets import is_encrypted
from apphub.sync.watcher import Watcher
from tests.sync.conftest import TEST_ACTOR, SyncWorld, wait_until, world

__all__ = ["world"]  # the sync tests' fixture, used here

PROPAGATION_S = 3.0


def _app(world: SyncWorld) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(world.path("web/app.json").read_text(encoding="utf-8"))
    return found


def _served(world: SyncWorld) -> tuple[int, str]:
    """[web] port and title as the web service got them."""
    app = _app(world)
    return app["server"]["port"], app["server"]["title"]


def _overlay(world: SyncWorld, environment: str, section: str, **values: object) -> None:
    """A write of an environment's overlay through its store, as the API makes it."""
    world.core.environments.store(environment, create=True).update({section: values}, TEST_ACTOR,
                                                            action="environments.update")


def _use(world: SyncWorld, name: str) -> None:
    world.core.system.update({"environments": {"active": "" if name == "base" else name}}, TEST_ACTOR)


def _save_by_rename(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.swp")  # vim, IDEs
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _edit(path: Path, pattern: str, replacement: str) -> None:
    edited, count = re.subn(pattern, replacement, path.read_text(encoding="utf-8"), count=1, flags=re.MULTILINE)
    assert count == 1, f"{pattern!r} is not in {path.name}"
    _save_by_rename(path, edited)


def _config_error(engine_status: dict[str, Any]) -> str:
    return str(engine_status["engine"]["config_error"])


# -- switching ------------------------------------------------------------------------------------


def test_switching_the_active_environment_renders_its_overlay_and_back(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", port=8181, title="Prod")
    with world.engine() as engine:
        assert _served(world) == (8081, "Demo")  # an overlay that is not active changes nothing
        db_reloads = len(world.reloads("db"))

        _use(world, "prod")
        world.sync_now(engine)
        assert _served(world) == (8181, "Prod")
        assert _app(world)["motd"] == "hello", "a key the overlay leaves alone keeps config.ini's value"
        assert len(world.reloads("db")) == db_reloads, "db reads nothing the overlay sets"
        assert engine.status_dict()["engine"]["config_error"] is None

        _use(world, "base")
        world.sync_now(engine)
        assert _served(world) == (8081, "Demo")


def test_the_switch_alone_is_noticed_by_the_watcher(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    with world.engine():
        _use(world, "prod")
        wait_until(lambda: _served(world)[1] == "Prod", PROPAGATION_S, "the switch to reach web")


# -- writes of the overlays ---------------------------------------------------------------------


def test_a_write_to_the_active_overlay_re_renders(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    with world.engine():
        assert _served(world) == (8081, "Prod")
        web_reloads = len(world.reloads("web"))
        _overlay(world, "prod", "web", title="Prod 2")  # no sync asked for: the watcher sees the file
        wait_until(lambda: _served(world)[1] == "Prod 2", PROPAGATION_S, "the overlay's new title")
        wait_until(lambda: len(world.reloads("web")) == web_reloads + 1, PROPAGATION_S, "web's reload")
        world.core.environments.store("prod").update({}, TEST_ACTOR, deletes=[("web", "title")],
                                                     action="environments.delete")
        wait_until(lambda: _served(world)[1] == "Demo", PROPAGATION_S, "config.ini's title again")


def test_a_write_to_config_ini_under_a_key_the_active_overlay_sets_does_not_reach_the_services(
        world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    with world.engine() as engine:
        world.set("web", title="Base title", motd="from config.ini")
        world.sync_now(engine)
        assert _served(world)[1] == "Prod"
        assert _app(world)["motd"] == "from config.ini"


def test_a_write_to_an_inactive_overlay_does_not_touch_the_services(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    with world.engine() as engine:
        files = {path: path.read_bytes() for path in (world.path("web/app.json"), world.path("db/db.ini"))}
        reloads = world.reloads()
        syncs = engine.status.engine.syncs
        _overlay(world, "staging", "web", title="Staging", port=8282)
        _overlay(world, "staging", "db", name="staging")
        wait_until(lambda: engine.status.engine.syncs > syncs, PROPAGATION_S, "the round the new file wakes")
        world.settle(engine)
        world.sync_now(engine)
        assert {path: path.read_bytes() for path in files} == files
        assert world.reloads() == reloads


# -- hand edits of the active overlay -------------------------------------------------------------


def test_a_hand_edit_of_the_active_overlay_is_applied(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    with world.engine():
        _edit(world.data.root / "config.prod.ini", r"^title = Prod$", "title = Edited by hand")
        wait_until(lambda: _served(world)[1] == "Edited by hand", PROPAGATION_S, "the hand edit to reach web")


def test_a_broken_hand_edit_of_the_active_overlay_keeps_its_last_good_version_and_says_why(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", port=8181, title="Prod")
    _use(world, "prod")
    overlay = world.data.root / "config.prod.ini"
    with world.engine() as engine:
        assert _served(world) == (8181, "Prod")
        _edit(overlay, r"^port = 8181$", "port = 99999")
        wait_until(lambda: "config.prod.ini" in _config_error(engine.status_dict()), PROPAGATION_S, "the refusal")
        error = _config_error(engine.status_dict())
        assert "[web] port" in error, error
        assert "its last good version stays applied" in error, error
        # never a half-valid merge: the last good overlay stays, as config.ini's last good version does
        world.settle(engine)
        assert _served(world) == (8181, "Prod")
        refused = world.audit("settings.invalid")
        assert len(refused) == 1, refused
        assert "config.prod.ini" in refused[0]["message"]
        assert "port = 99999" in overlay.read_text(encoding="utf-8"), "the edit itself is never overwritten"

        _edit(overlay, r"^port = 99999$", "port = 8182")
        wait_until(lambda: _served(world) == (8182, "Prod"), PROPAGATION_S, "the fixed overlay")
        wait_until(lambda: engine.status_dict()["engine"]["config_error"] is None, PROPAGATION_S,
                   "the error to clear")


def test_an_overlay_that_does_not_parse_keeps_its_last_good_version(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    overlay = world.data.root / "config.prod.ini"
    with world.engine() as engine:
        _edit(overlay, r"^title = Prod$", "title Prod")
        wait_until(lambda: "config.prod.ini" in _config_error(engine.status_dict()), PROPAGATION_S, "the refusal")
        world.settle(engine)
        assert _served(world)[1] == "Prod"


def test_an_overlay_refused_before_any_good_version_leaves_config_ini_values(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    (world.data.root / "config.prod.ini").write_text("[web]\ntitle Prod\n", encoding="utf-8")
    _use(world, "prod")
    with world.engine() as engine:
        wait_until(lambda: "config.ini alone is applied" in _config_error(engine.status_dict()), PROPAGATION_S,
                   "the refusal")
        assert _served(world)[1] == "Demo"


def test_an_active_environment_whose_file_is_removed_keeps_its_last_good_version_and_says_why(
        world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    with world.engine() as engine:
        assert _served(world)[1] == "Prod"
        (world.data.root / "config.prod.ini").unlink()
        wait_until(lambda: "prod" in _config_error(engine.status_dict()), PROPAGATION_S, "the refusal")
        assert "active" in _config_error(engine.status_dict())
        world.settle(engine)
        assert _served(world)[1] == "Prod"


def test_a_hand_edit_of_the_active_overlay_is_audited_like_config_ini(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    overlay = world.data.root / "config.prod.ini"
    with world.engine():
        _edit(overlay, r"^title = Prod$", "title = Edited by hand")
        wait_until(lambda: _served(world)[1] == "Edited by hand", PROPAGATION_S, "the hand edit to reach web")
        edits = [event for event in world.audit("settings.file") if event["file"] == "config.prod.ini"]
        assert edits, "the services got a version of config.prod.ini that no audit event records"


def test_a_hand_edit_of_the_active_overlay_that_breaks_a_rule_is_refused(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", port=8181)
    _use(world, "prod")
    overlay = world.data.root / "config.prod.ini"
    with world.engine() as engine:
        _edit(overlay, r"^port = 8181$", "port = 5433")  # [db] port's: the port rule refuses it in any write
        world.sync_now(engine)
        world.settle(engine)
        assert _served(world)[0] != 5433, "web was given the port db listens on"
        assert "port_conflict" in _config_error(engine.status_dict())


def test_a_hand_edit_of_an_inactive_overlay_recorded_by_a_later_write_is_judged_when_it_starts_to_run(
        world: SyncWorld) -> None:
    # A write through apphub over the hand edit judges it too (and is refused); one that could not
    # tell what the hand edit changed (the first write of a process) warns and makes the hand-edited
    # version the audited one: the rules must judge it when the overlay starts to run.
    world.standard()
    _overlay(world, "qa", "web", title="QA")
    overlay = world.data.root / "config.qa.ini"
    _edit(overlay, r"^title = QA$", "title = QA\nport = 5433")  # [db] port's
    with pytest.raises(ValidationFailed) as refused:
        _overlay(world, "qa", "web", title="QA 2")
    assert [(f.file, f.key, f.rule) for f in refused.value.errors] == [("config.qa.ini", "port", "port_conflict")]
    assert "set by a hand edit" in refused.value.errors[0].message
    another_process = Core(world.data)  # which has written nothing yet
    try:
        another_process.environments.store("qa").update({"web": {"title": "QA 2"}}, TEST_ACTOR)
    finally:
        another_process.close()
    with world.engine() as engine:
        served = _served(world)
        with pytest.raises(ValidationFailed) as refused:  # switched through apphub: judged, refused
            _use(world, "qa")
        assert [(f.file, f.section, f.key, f.rule) for f in refused.value.errors] == [
            ("config.qa.ini", "web", "port", "port_conflict")]
        _edit(world.data.system_ini, r"^active = *$", "active = qa")  # switched by hand
        world.sync_now(engine)
        world.settle(engine)
        assert _served(world) == served, "web was given the port db listens on"
        assert "port_conflict" in _config_error(engine.status_dict())
        assert "config.qa.ini" in _config_error(engine.status_dict())


def test_a_typo_in_active_or_a_switch_to_a_broken_overlay_keeps_the_running_environment(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _overlay(world, "staging", "web", title="Staging")
    _use(world, "prod")
    with world.engine() as engine:
        world.sync_now(engine)
        assert _served(world)[1] == "Prod"
        _edit(world.data.system_ini, r"^active = prod$", "active = Prod")  # typed by hand
        world.sync_now(engine)
        world.settle(engine)
        assert _served(world)[1] == "Prod"
        assert "the environment 'prod' stays applied" in _config_error(engine.status_dict())
        _edit(world.data.root / "config.staging.ini", r"^title = Staging$", "title = Staging\nport = abc")
        _edit(world.data.system_ini, r"^active = Prod$", "active = staging")
        world.sync_now(engine)
        world.settle(engine)
        assert _served(world)[1] == "Prod"
        assert "config.staging.ini" in _config_error(engine.status_dict())


def test_a_plaintext_secret_typed_into_the_active_overlay_is_encrypted_in_place(world: SyncWorld) -> None:
    world.standard()
    _overlay(world, "prod", "web", title="Prod")
    _use(world, "prod")
    overlay = world.data.root / "config.prod.ini"
    with world.engine() as engine:
        _save_by_rename(overlay, overlay.read_text(encoding="utf-8") + "admin_password = Typed-By-Hand-Plain-42\n")
        world.sync_now(engine)
        world.settle(engine)
        stored = world.core.environments.store("prod").snapshot().document.get("web", "admin_password")
        assert stored is not None
        assert is_encrypted(stored), "the overlay holds a plaintext password"


# -- the watcher ----------------------------------------------------------------------------------


def _in_place(path: Path, text: str) -> None:
    with open(path, "r+", encoding="utf-8") as handle:
        handle.write(text)
        handle.truncate()


def _sed(path: Path, text: str) -> None:
    del text
    subprocess.run([shutil.which("sed") or "sed", "-i", "s/^title = Prod$/title = Sed/", str(path)], check=True)


def _delete_and_recreate(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text, encoding="utf-8")


WRITERS: dict[str, Callable[[Path, str], None]] = {
    "in place": _in_place,
    "temp and rename": _save_by_rename,
    "sed -i": _sed,
    "delete and recreate": _delete_and_recreate,
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_the_watcher_reports_a_hand_edit_of_an_overlay_as_config(tmp_path: Path, writer: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    overlay = root / "config.prod.ini"
    overlay.write_text("[web]\ntitle = Prod\n", encoding="utf-8")
    (root / "notes.txt").write_text("", encoding="utf-8")
    events: list[tuple[str, str]] = []
    seen = threading.Event()

    def callback(kind: str, path: str) -> None:
        events.append((kind, path))
        if path == str(overlay):
            seen.set()

    watcher = Watcher(root, root / "templates", callback)
    watcher.start()
    try:
        (root / "notes.txt").write_text("not watched", encoding="utf-8")
        (root / "config.Prod.ini").write_text("[web]\n", encoding="utf-8")  # not an environment's name
        WRITERS[writer](overlay, "[web]\ntitle = Edited\n")
        assert seen.wait(PROPAGATION_S), f"no event for config.prod.ini: {events}"
    finally:
        watcher.stop()
    assert {kind for kind, path in events if path == str(overlay)} == {"config"}
    assert not [path for _, path in events if not path.endswith("config.prod.ini")], events


# -- substitution ---------------------------------------------------------------------------------


def test_the_services_get_the_overlays_references_resolved_against_the_merge(world: SyncWorld,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPHUB_TEST_REGION", "eu-west")
    monkeypatch.delenv("APPHUB_TEST_UNSET", raising=False)
    world.standard()
    _overlay(world, "prod", "db", name="proddb")
    _overlay(world, "prod", "web", title="${db.name} in ${env:APPHUB_TEST_REGION}",
             motd="${env:APPHUB_TEST_UNSET:-no motd} (${web.port})")
    _use(world, "prod")
    with world.engine() as engine:  # the engine reads the environment as it starts
        assert _served(world)[1] == "proddb in eu-west"  # [db] name as prod sets it, not config.ini's
        assert _app(world)["motd"] == "no motd (8081)"  # [web] port from config.ini
        _overlay(world, "prod", "db", name="otherdb")
        world.sync_now(engine)
        assert _served(world)[1] == "otherdb in eu-west", "a key the reference reads changed: re-rendered"
