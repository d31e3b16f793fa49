"""A target that cannot be written (issue 8): every service a refused version would have changed
shows the failure, the version it wanted and why, not `applied`; and no staged file of apphub's is
left behind in a service's folder.

The folder is made read-only for real: the immutable flag (`chattr +i`) or a read-only bind mount
before the change (tests/sync/conftest.py `read_only`), or the immutable flag set by the file's own
check command, after staging and before the swap (the swap then fails, and the staged files cannot
be removed until the folder is writable again); each undone whatever happens. Stale staging files
are planted with the names apphub gives them, next to files with names that only look alike.
"""

from __future__ import annotations

import os
import subprocess
import time
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


# -- nothing left behind ---------------------------------------------------------------------------

# The check command of app.json makes its folder immutable (once page.json is staged too, when
# the service has it): the files are staged and validated, then can be neither swapped nor removed.
FREEZE = "sh -c '/usr/bin/chattr +i \"$(dirname \"$0\")\"' {staged}"
FREEZE_WHEN_BOTH_STAGED = ("sh -c 'while ! ls \"$(dirname \"$0\")\"/.page.json.*.apphub-tmp >/dev/null 2>&1; "
                           "do sleep 0.01; done; /usr/bin/chattr +i \"$(dirname \"$0\")\"' {staged}")


def _staged_files(*folders: Path) -> list[str]:
    return sorted(name for folder in folders for name in os.listdir(folder) if name.endswith(".apphub-tmp"))


@pytest.mark.parametrize("files", [1, 2])
def test_a_swap_that_fails_leaves_no_staged_file_once_the_folder_can_be_written(world: SyncWorld,
                                                                                 files: int) -> None:
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/chattr"):
        pytest.skip("needs root and chattr")
    app, page, db = world.path("web/app.json"), world.path("web/page.json"), world.path("db/db.ini")
    world.template("page.json.j2", '{"title": "{{ settings.web.title }}"}\n')
    page.write_text('{"title": "Demo"}\n')
    manifest = {
        "web": {"files": [{"path": str(app), "mode": "merge", "map": {"title": "${web.title}"}},
                          {"path": str(page), "template": "page.json.j2"}][:files],
                "reload": world.exec_reload("web")},
        "db": {"files": [{"path": str(db), "format": "ini", "mode": "merge", "map": {"s.title": "${web.title}"}}],
               "reload": world.exec_reload("db")},
    }
    world.manifest(manifest)
    with world.engine(watch=False) as engine:
        before = app.read_bytes(), page.read_bytes(), db.read_bytes()
        manifest["web"]["files"][0]["check"] = FREEZE_WHEN_BOTH_STAGED if files == 2 else FREEZE
        world.manifest(manifest)
        try:
            world.set("web", title="Frozen")
            report = world.sync_now(engine)
            assert subprocess.run(["lsattr", "-d", str(app.parent)], capture_output=True, text=True,
                                  check=True).stdout.split()[0].count("i") == 1, "the check froze the folder"
            assert report.refused, report
            assert "Operation not permitted" in report.refused[0], report.refused
            assert {name: o.result for name, o in report.outcomes.items()} == {"db": "refused", "web": "refused"}
            assert (app.read_bytes(), page.read_bytes(), db.read_bytes()) == before
            assert _staged_files(db.parent) == [], "what could be removed at once was"
        finally:
            subprocess.run(["/usr/bin/chattr", "-i", str(app.parent)], check=True)
        del manifest["web"]["files"][0]["check"]
        world.manifest(manifest)

        report = world.sync_now(engine)  # the next apply of those files
        assert {name: o.result for name, o in report.outcomes.items()} == {"db": "applied", "web": "applied"}
        assert _staged_files(app.parent, db.parent) == []
        assert '"Frozen"' in app.read_text()


def _plant(folder: Path, name: str, *, age_s: float = 0.0) -> Path:
    path = folder / name
    path.write_text("staged bytes of an apply that never finished\n")
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def test_stale_staged_files_are_removed_at_start_and_at_the_next_apply(world: SyncWorld) -> None:
    world.standard()
    app = world.path("web/app.json")
    web = app.parent
    with world.engine(watch=False):
        pass  # the files are at the current version: the next start has nothing to apply
    reloads = len(world.reloads())
    dead = subprocess.Popen(["true"])  # a pid that ran and ended
    dead.wait()
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            stale = [
                _plant(web, f".app.json.{dead.pid}.2760656517850.0.apphub-tmp"),  # a killed apphub's
                _plant(web, f".app.json.{os.getpid()}.123.4.apphub-tmp"),  # this process's, no apply running
                _plant(web, f".app.json.{live.pid}.5.0.apphub-tmp", age_s=7200),  # untouched for 2 h: pid reused
            ]
            kept = [
                _plant(web, f".app.json.{live.pid}.6.0.apphub-tmp"),  # a live process may be writing it
                _plant(web, ".app.json.backup.apphub-tmp"),  # not apphub's names
                _plant(web, ".app.json.1.2.apphub-tmp"),
                _plant(web, ".app.json.1.2.3.4.apphub-tmp"),
                _plant(web, "app.json.1.2.3.apphub-tmp"),
                _plant(web, ".app.json.1.2.3.apphub-tmp.keep"),
                _plant(web, ".other.json.1.2.3.apphub-tmp"),  # not a target's
                _plant(web, ".app.json.99999999999.2.3.apphub-tmp"),  # no pid is that large
            ]
            (web / ".app.json.7.8.9.apphub-tmp").mkdir()  # a folder, and a link: never removed
            (web / ".app.json.7.8.10.apphub-tmp").symlink_to(web / ".app.json.backup.apphub-tmp")
            kept += [web / ".app.json.7.8.9.apphub-tmp", web / ".app.json.7.8.10.apphub-tmp"]

            with world.engine(watch=False) as engine:
                assert len(world.reloads()) == reloads, "nothing was applied: the start removed them"
                assert [path.name for path in stale if os.path.lexists(path)] == []
                assert [path.name for path in kept if not os.path.lexists(path)] == []

                again = _plant(web, f".app.json.{dead.pid}.2760656517851.0.apphub-tmp")
                other = _plant(world.path("db"), f".db.ini.{dead.pid}.2760656517852.0.apphub-tmp")
                world.set("web", port=9002)  # web reads it, db does not
                report = world.sync_now(engine)
                assert {name: o.result for name, o in report.outcomes.items()} == {"web": "applied"}
                assert not again.exists(), "removed at the next apply of app.json"
                assert other.exists(), "db.ini was not applied: its leftover waits for its next apply or start"
                assert [path.name for path in kept if not os.path.lexists(path)] == []
        finally:
            live.kill()
