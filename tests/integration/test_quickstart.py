"""The quickstart, end to end, as a newcomer runs it: `examples/quickstart/start.sh DATA` (a real
supervisord with the two demo services), then `apphub serve` as a subprocess, then changes
through the API (`?wait=true`), the CLI and an editor that saves by rename.

Ports are free ones passed through start.sh's environment; supervisord and the server are
stopped at the end whatever happened.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.conftest import StartServe, cli_environment, eventually, run_cli
from tests.integration.quickstart import (
    PROGRAMS,
    START,
    Quickstart,
    health,
    quickstart_folder,
    services_status,
    settled,
)


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[Quickstart]:
    with quickstart_folder(tmp_path / "xdg") as made:
        yield made


def outcomes(answer: httpx.Response) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    sync = answer.json()["sync"]
    assert sync["done"] is True, sync
    return {outcome["service"]: outcome for outcome in sync["services"]}


def edit_by_rename(path: Path, old: str, new: str) -> None:
    """Save the way vim and most IDEs do: write a temporary file next to it, rename it over."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text.replace(old, new), encoding="utf-8")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 41 s alone, 66 s seen beside other tests
def test_quickstart_end_to_end(quickstart: Quickstart, serve: StartServe) -> None:
    started = quickstart.start()
    assert started.returncode == 0, started.stderr
    assert "quickstart: ready" in started.stderr
    assert f"http://127.0.0.1:{quickstart.json_port}/health" in started.stderr
    assert (quickstart.data.root / "services.yaml").is_file()
    system = run_cli(quickstart.data, "getsysconfig", "--section", "sync")
    assert json.loads(system.stdout)["roots"] == str(quickstart.demo)
    for program in PROGRAMS:
        assert quickstart.supervisor.state(program)["statename"] in ("STARTING", "RUNNING")

    server = serve(quickstart.data)
    key = quickstart.data.admin_key.read_text().strip()
    with server.client(key) as api:
        version = api.get("/api/v1/settings").json()["version"]
        # The first sync writes both files and restarts the services waiting for them.
        eventually(lambda: settled(api, version), "both services applied after the first sync", 30)
        config = json.loads(quickstart.json_file.read_text())
        assert config == {"log_requests": False, "port": quickstart.json_port, "greeting": "Hello from apphub",
                          "color": "teal"}  # merged: the key apphub does not manage is kept
        assert quickstart.ini_file.stat().st_mode & 0o777 == 0o600  # it holds the token
        assert f"backend = http://127.0.0.1:{quickstart.json_port}/" in quickstart.ini_file.read_text()
        assert health(quickstart.json_port)[0] == 200
        assert health(quickstart.ini_port)[0] == 200
        # hello-env got its port and heading through its environment (supervisord's environment=)
        assert health(quickstart.env_port)[1]["env"] == {"HELLO_PORT": str(quickstart.env_port),
                                                        "HELLO_MOTD": "Hello from the environment"}

        # A restart key through the API: hello-json restarts on its new port, then hello-ini
        # (its backend line reads that port) restarts after it.
        json_pid, ini_pid = quickstart.pid("hello-json"), quickstart.pid("hello-ini")
        new_port = free_port()
        answer = api.put("/api/v1/settings/hello_json?wait=true", json={"port": new_port})
        done = outcomes(answer)
        assert answer.json()["sync"]["ok"] is True, answer.text
        assert (done["hello-json"]["result"], done["hello-json"]["action"]) == ("applied", "supervisor-restart")
        assert (done["hello-ini"]["result"], done["hello-ini"]["action"]) == ("applied", "supervisor-restart")
        assert json.loads(quickstart.json_file.read_text())["port"] == new_port
        assert quickstart.pid("hello-json") != json_pid
        assert quickstart.pid("hello-ini") != ini_pid
        json_info, ini_info = quickstart.supervisor.state("hello-json"), quickstart.supervisor.state("hello-ini")
        assert ini_info["start"] > json_info["start"], "hello-ini depends on hello-json: it must start after it"
        code, body = health(new_port)
        assert (code, body["settings"]["port"]) == (200, new_port)
        with pytest.raises(httpx.ConnectError):
            health(quickstart.json_port)
        status = services_status(api)
        version = answer.json()["version"]
        assert status["hello-json"]["state"] == "applied"
        assert status["hello-json"]["applied_version"] == version
        assert status["hello-json"]["last_action"] == "supervisor-restart"
        assert status["hello-json"]["timings_ms"]["healthy"] > 0

        # A port hello-json cannot listen on: its restart fails, it gets its previous file back and
        # runs it again; hello-ini, which depends on it, is held back with its previous file.
        json_before, ini_before = quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()
        ini_pid = quickstart.pid("hello-ini")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            # The port rule sees who holds it and refuses the write (rules/ports.py)...
            refused = api.put("/api/v1/settings/hello_json?wait=true", json={"port": busy})
            assert refused.status_code == 422, refused.text
            assert f"port {busy} is already listened on by" in refused.text
            assert f"(pid {os.getpid()})" in refused.text
            # ...and with its probes off, the restart fails and is undone.
            assert run_cli(quickstart.data, "setsysconfig", "--section", "rules", "--key", "port_probes",
                           "--value", "false").returncode == 0
            answer = api.put("/api/v1/settings/hello_json?wait=true", json={"port": busy})
            done = outcomes(answer)
        assert answer.json()["sync"]["ok"] is False
        assert done["hello-json"]["result"] == "failed"
        assert f"cannot listen on 127.0.0.1:{busy}: Address already in use" in done["hello-json"]["error"]
        assert done["hello-ini"]["result"] == "failed"
        assert "held back because hello-json failed" in done["hello-ini"]["error"]
        assert (quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()) == (json_before, ini_before)
        assert quickstart.pid("hello-ini") == ini_pid
        assert health(new_port)[0] == 200
        assert {name: s["state"] for name, s in services_status(api).items()} == {
            "hello-json": "failed", "hello-ini": "failed", "hello-env": "applied"}
        # Back to the port it runs on: nothing to do (tests/integration/test_sync_supervisor.py checks the status).
        answer = api.put("/api/v1/settings/hello_json?wait=true", json={"port": new_port})
        assert answer.json()["sync"]["ok"] is True, answer.text
        assert quickstart.json_file.read_bytes() == json_before

        # A reload key: a SIGHUP, same pid, the page shows the new title.
        ini_pid = quickstart.pid("hello-ini")
        done = outcomes(api.put("/api/v1/settings/hello_ini?wait=true", json={"title": "Reloaded, not restarted"}))
        assert (done["hello-ini"]["result"], done["hello-ini"]["action"]) == ("applied", "supervisor-signal")
        assert done.get("hello-json", {"result": "unchanged"})["result"] == "unchanged"  # reads nothing that changed
        assert quickstart.pid("hello-ini") == ini_pid
        code, body = health(quickstart.ini_port)
        assert (code, body["pid"], body["settings"]["title"], body["reloads"]) == \
            (200, ini_pid, "Reloaded, not restarted", 1)
        page = httpx.get(f"http://127.0.0.1:{quickstart.ini_port}/", timeout=3).text
        assert "<h1>Reloaded, not restarted</h1>" in page

        # A hot key: the file changes, nothing is reloaded, the next request shows it.
        json_pid = quickstart.pid("hello-json")
        done = outcomes(api.put("/api/v1/settings/hello_json?wait=true", json={"color": "orange"}))
        assert (done["hello-json"]["result"], done["hello-json"]["action"]) == ("applied", "none")
        assert quickstart.pid("hello-json") == json_pid
        assert health(new_port)[1]["settings"]["color"] == "orange"

        # The CLI writes config.ini; the server's watcher picks it up.
        result = run_cli(quickstart.data, "config", "set", "hello_ini", "title", "Set from the CLI")
        assert result.returncode == 0, result.stderr
        saved = time.monotonic()
        eventually(lambda: "title = Set from the CLI" in quickstart.ini_file.read_text(), "the INI file written", 2)
        eventually(lambda: health(quickstart.ini_port)[1]["settings"]["title"] == "Set from the CLI",
                   "hello-ini re-read its file", 2 - (time.monotonic() - saved))
        assert quickstart.pid("hello-ini") == ini_pid

        # An editor that saves by rename; greeting is a restart key.
        edit_by_rename(quickstart.data.config_ini, "greeting = Hello from apphub", "greeting = Saved by an editor")
        eventually(lambda: json.loads(quickstart.json_file.read_text())["greeting"] == "Saved by an editor",
                   "config.json written after the hand edit", 2)
        eventually(lambda: health(new_port)[1]["settings"]["greeting"] == "Saved by an editor",
                   "hello-json restarted into the new greeting", 15)
        version = api.get("/api/v1/settings").json()["version"]
        eventually(lambda: settled(api, version), "both services applied at the edited version", 15)
        audit = api.get("/api/v1/audit", params={"action": "settings.file"}).json()
        assert any(change["key"] == "greeting" for event in audit["entries"] for change in event["changes"]), audit

        # An environment variable from the CLI: hello-env alone restarts with it.
        pids = {program: quickstart.pid(program) for program in PROGRAMS}
        result = run_cli(quickstart.data, "env", "set", "hello-env", "APP_MODE", "demo")
        assert result.returncode == 0, result.stderr
        eventually(lambda: health(quickstart.env_port)[1]["env"].get("APP_MODE") == "demo",
                   "hello-env restarted with APP_MODE", 15)
        assert quickstart.pid("hello-env") != pids["hello-env"]
        assert {p: quickstart.pid(p) for p in ("hello-json", "hello-ini")} == \
            {p: pids[p] for p in ("hello-json", "hello-ini")}
        eventually(lambda: settled(api, version), "every service applied with the new variable", 15)

    # apphub restarted with no change: nothing is reloaded.
    pids = {program: quickstart.pid(program) for program in PROGRAMS}
    server.stop()
    server = serve(quickstart.data)
    with server.client(key) as api:
        eventually(lambda: api.get("/api/v1/sync/status").json()["engine"]["syncs"] >= 1, "the first sync", 15)
        assert settled(api, version) is not None
    assert {program: quickstart.pid(program) for program in PROGRAMS} == pids

    # start.sh again: supervisord is running, and nothing is installed twice.
    manifest = (quickstart.data.root / "services.yaml").read_bytes()
    again = quickstart.start()
    assert again.returncode == 0, again.stderr
    assert "supervisord is running" in again.stderr
    assert "installing" not in again.stderr
    assert (quickstart.data.root / "services.yaml").read_bytes() == manifest
    assert {program: quickstart.pid(program) for program in PROGRAMS} == pids


def test_start_sh_leaves_a_folder_with_its_own_manifest_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "services.yaml").write_text("services: {}\n")
    result = subprocess.run(["bash", str(START), str(data)], capture_output=True, text=True, timeout=60, check=False,
                            env=cli_environment(tmp_path / "xdg"))
    assert result.returncode == 0, result.stderr
    assert "has a services.yaml of its own" in result.stderr
    assert sorted(path.name for path in data.iterdir()) == ["services.yaml"]


def test_start_sh_without_a_data_folder_says_how_to_call_it() -> None:
    result = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "DATA_DIR" in result.stderr



def test_a_bad_hand_edit_is_refused_until_it_is_undone(quickstart: Quickstart, serve: StartServe) -> None:
    started = quickstart.start()
    assert started.returncode == 0, started.stderr
    server = serve(quickstart.data)
    key = quickstart.data.admin_key.read_text().strip()
    with server.client(key) as api:
        version = api.get("/api/v1/settings").json()["version"]
        eventually(lambda: settled(api, version), "both services applied after the first sync", 30)
        good = quickstart.data.config_ini.read_bytes()
        files = quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()
        pids = {program: quickstart.pid(program) for program in PROGRAMS}
        port_line = f"port = {quickstart.json_port}\n"

        # `sed -i`: a port no service can have. Refused; the last good version stays applied.
        subprocess.run(["sed", "-i", f"s/^{port_line.strip()}$/port = 99999/", str(quickstart.data.config_ini)],
                       check=True)
        error = eventually(lambda: api.get("/api/v1/sync/status").json()["engine"]["config_error"],
                           "the status saying config.ini is refused", 5)
        assert "[hello_json] port = '99999'" in error
        assert "65535" in error
        assert (quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()) == files
        assert {program: quickstart.pid(program) for program in PROGRAMS} == pids
        assert api.get("/api/v1/audit", params={"action": "settings.invalid"}).json()["entries"]

        # Undone: config.ini is the last good version again, and the status must stop saying it is refused.
        edit_by_rename(quickstart.data.config_ini, "port = 99999\n", port_line)
        assert quickstart.data.config_ini.read_bytes() == good
        eventually(lambda: api.get("/api/v1/sync/status").json()["engine"]["config_error"] is None,
                   "the refusal cleared once config.ini is valid again", 5)
        assert {program: quickstart.pid(program) for program in PROGRAMS} == pids
