"""The watcher, through the engine, on the real file system: every way of saving config.ini is
seen and propagates within 2 s; apphub's own writes are processed once; a deleted config.ini
stops nothing and writes nothing; services.yaml and templates are watched too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import serving
from tests.sync.conftest import SyncWorld, wait_until

PROPAGATION_S = 2.0


def _edited_text(path: Path, new_port: int) -> str:
    text = path.read_text(encoding="utf-8")
    edited, count = re.subn(r"^port = 8081$", f"port = {new_port}", text, count=1, flags=re.MULTILINE)
    assert count == 1
    return edited


def _in_place(path: Path, port: int) -> None:
    text = _edited_text(path, port)
    with open(path, "r+", encoding="utf-8") as handle:  # same inode, truncated and rewritten
        handle.write(text)
        handle.truncate()


def _temp_and_rename(path: Path, port: int) -> None:
    text = _edited_text(path, port)
    temporary = path.with_name(".config.ini.swp")  # vim, IDEs: a new inode renamed over the file
    temporary.write_text(text, encoding="utf-8")
    os.rename(temporary, path)


def _sed_in_place(path: Path, port: int) -> None:
    subprocess.run([shutil.which("sed") or "sed", "-i", f"s/^port = 8081$/port = {port}/", str(path)], check=True)


def _delete_and_recreate(path: Path, port: int) -> None:
    text = _edited_text(path, port)
    path.unlink()
    path.write_text(text, encoding="utf-8")


def _cp_over(path: Path, port: int) -> None:
    source = path.parent.parent / "config.ini.new"
    source.write_text(_edited_text(path, port), encoding="utf-8")
    subprocess.run(["cp", str(source), str(path)], check=True)


SAVES: dict[str, Callable[[Path, int], None]] = {
    "write in place": _in_place,
    "temp file and rename": _temp_and_rename,
    "sed -i": _sed_in_place,
    "delete and recreate": _delete_and_recreate,
    "cp over it": _cp_over,
}


@pytest.mark.parametrize("save", list(SAVES), ids=list(SAVES))
def test_every_way_of_saving_config_ini_propagates(world: SyncWorld, save: str) -> None:
    world.standard()
    app = world.path("web/app.json")
    with world.engine() as engine:
        SAVES[save](world.data.config_ini, 8095)
        wait_until(lambda: '"port": 8095' in app.read_text(), PROPAGATION_S, f"{save}: the change to app.json")
        wait_until(lambda: len(world.reloads("web")) == 2, PROPAGATION_S, f"{save}: web's reload")
        world.settle(engine)
        assert len(world.reloads("web")) == 2, "one save, one reload"
        assert len(world.reloads("db")) == 1
        assert engine.status.engine.config_error is None
        changes = world.audit_changes("settings.file")
        assert ("web", "port", "8081", "8095") in [(c["section"], c["key"], c["old"], c["new"]) for c in changes]


def test_a_write_through_the_api_is_processed_once(world: SyncWorld) -> None:
    world.standard()
    app = world.path("web/app.json")
    admin_key = world.data.admin_key.read_text().strip()
    with serving(world.data) as server, server.client(admin_key) as client:
        wait_until(lambda: len(world.reloads()) == 2 and len(world.audit("sync.apply")) == 1, 5, "the first sync")
        applies = len(world.audit("sync.apply"))
        response = client.put("/api/v1/settings/web", json={"port": 9001})
        assert response.status_code == 200, response.text
        wait_until(lambda: '"port": 9001' in app.read_text(), PROPAGATION_S, "the change")
        # the watcher sees the write too (a rename in the data folder): it must not be applied again
        _settle(client)
        assert len(world.reloads("web")) == 2, "reloaded once for one write"
        assert len(world.audit("sync.apply")) == applies + 1
        assert world.audit("settings.file") == [], "its own write is not taken for a hand edit"


def _settle(client: httpx.Client, quiet: float = 0.5, timeout: float = 10.0) -> None:
    """Wait until the status shows no new round for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        syncs = client.get("/api/v1/sync/status").json()["engine"]["syncs"]
        if syncs != seen:
            seen, since = syncs, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError("the engine did not settle")


def test_a_deleted_config_ini_writes_nothing_and_recovers_when_recreated(world: SyncWorld) -> None:
    world.standard()
    app, db = world.path("web/app.json"), world.path("db/db.ini")
    with world.engine() as engine:
        before = {app: app.read_bytes(), db: db.read_bytes()}
        text = world.data.config_ini.read_text()
        world.data.config_ini.unlink()
        wait_until(lambda: engine.status.engine.config_error is not None, PROPAGATION_S, "the error")
        assert "config.ini" in str(engine.status.engine.config_error)
        assert "does not exist" in str(engine.status.engine.config_error)
        assert {path: path.read_bytes() for path in before} == before, "nothing written without config.ini"
        assert len(world.reloads()) == 2
        assert world.audit("settings.invalid")

        world.data.config_ini.write_text(text.replace("port = 8081", "port = 8096"))
        wait_until(lambda: '"port": 8096' in app.read_text(), PROPAGATION_S, "the recreated file to propagate")
        wait_until(lambda: engine.status.engine.config_error is None, PROPAGATION_S, "the error to clear")
        assert db.read_bytes() == before[db]


def test_an_edited_manifest_re_renders(world: SyncWorld) -> None:
    world.standard()
    app = world.path("web/app.json")
    with world.engine():
        world.standard(web={"files": [{"path": str(app), "mode": "merge",
                                       "map": {"server.port": "${web.port}", "server.name": "${db.name}"}}]})
        wait_until(lambda: '"name": "app"' in app.read_text(), PROPAGATION_S, "the new mapping in app.json")
        wait_until(lambda: len(world.reloads("web")) == 2, PROPAGATION_S, "web's reload")
        assert len(world.reloads("db")) == 1, "db's files did not change"


def test_an_edited_template_re_renders(world: SyncWorld) -> None:
    site = world.path("web/site.conf")
    template = world.template("site.conf.j2", "listen {{ settings.web.port }};\n")
    world.manifest({"site": {"files": [{"path": str(site), "template": "site.conf.j2"}],
                             "reload": world.exec_reload("site", quote=site)}})
    with world.engine() as engine:
        assert site.read_text() == "listen 8081;\n"
        template.write_text("listen 127.0.0.1:{{ settings.web.port }};\nserver_name {{ settings.db.name }};\n")
        wait_until(lambda: site.read_text() == "listen 127.0.0.1:8081;\nserver_name app;\n", PROPAGATION_S,
                   "the new template's render")
        wait_until(lambda: len(world.reloads("site")) == 2, PROPAGATION_S, "site's reload")
        assert "server_nameapp;" in world.reloads("site")[-1].content

        # and the template's new reads count: a change of db.name now re-renders site
        world.set("db", name="shop")
        wait_until(lambda: "server_name shop;" in site.read_text(), PROPAGATION_S, "db.name in the template")
        world.settle(engine)



def test_config_ini_restored_with_the_same_bytes_after_a_delete_recovers(world: SyncWorld) -> None:
    world.standard()
    with world.engine() as engine:
        original = world.data.config_ini.read_bytes()
        world.data.config_ini.unlink()  # deleted by accident...
        wait_until(lambda: engine.status.engine.config_error is not None, PROPAGATION_S, "the error")
        world.data.config_ini.write_bytes(original)  # ...and restored from a backup
        wait_until(lambda: engine.status.engine.config_error is None, PROPAGATION_S,
                   "the status to stop saying config.ini does not exist")
        assert len(world.reloads()) == 2
