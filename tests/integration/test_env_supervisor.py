"""Environment variables reach a supervisord program through its `environment=`, end to end: the
env API writes env.ini, the sync engine merges the program's environment into its included
supervisord file, supervisord rereads it and restarts that program only.

A real supervisord (tests/reload/conftest.py) runs `other` from its main file and `worker` from an
included file under the test's sync root. `worker` dumps its pid and environment as JSON at start.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apphub.paths import DataDir
from tests.integration.conftest import admin_api, eventually
from tests.integration.test_sync_supervisor import make_data, outcomes, services_status
from tests.reload.conftest import PYTHON, Supervisord, scripts, start_supervisord
from tests.reload.test_supervisor_env import DUMP_ENV_PY

__all__ = ["scripts", "start_supervisord"]  # fixtures, used by name

SCHEMA = """\
    config:
      sections:
        box:
          keys:
            message: {type: string, default: first message, apply: hot}
    """
SECRET = "s3cr3t %(here)s it's"


@dataclass
class Worker:
    daemon: Supervisord
    conf: Path
    out: Path
    data: DataDir

    def seen(self) -> tuple[int, dict[str, str]]:
        found = json.loads(self.out.read_text(encoding="utf-8"))
        return found["pid"], found["env"]

    def pid(self, program: str) -> int:
        return int(self.daemon.client().state(program)["pid"])

    def api(self) -> contextlib.AbstractContextManager[httpx.Client]:
        return admin_api(self.data)


@pytest.fixture
def worker(tmp_path: Path, start_supervisord: object) -> Worker:
    root = tmp_path / "srv"
    confd = root / "supervisor"
    confd.mkdir(parents=True)
    script, out = tmp_path / "dump_env.py", tmp_path / "worker.json"
    script.write_text(DUMP_ENV_PY)
    conf = confd / "worker.conf"
    conf.write_text(f"[program:worker]\ncommand={PYTHON} {script} {out}\nstartsecs=1\nstartretries=0\n"
                    "autorestart=false\nstopwaitsecs=5\n")
    daemon = start_supervisord({  # type: ignore[operator]
        "other": f"command=/bin/sleep 1000\nstartsecs=1\nautorestart=false\n\n[include]\nfiles = {confd}/*.conf",
    })
    daemon.wait_state("worker", "RUNNING")
    manifest = f"""\
        services:
          worker:
            env:
              MESSAGE: "${{box.message}}"
            inject: {{program: worker, conf: {conf}, timeout: 30}}
            health: {{supervisor: worker, timeout: 15}}
        """
    data = make_data(tmp_path / "data", SCHEMA, manifest, roots=[root], supervisor_url=daemon.url)
    return Worker(daemon, conf, out, data)


def test_env_changes_restart_that_program_only_with_exactly_the_new_values(worker: Worker) -> None:
    other = worker.pid("other")
    with worker.api() as api:
        eventually(lambda: services_status(api).get("worker", {}).get("state") == "applied", "the first sync", 30)
        eventually(lambda: worker.seen()[1].get("MESSAGE") == "first message", "the mapped variable", 15)

        answer = api.put("/api/v1/env/worker?wait=true", json={"GREETING": "hello, world; #1",
                                                               "TOKEN": {"value": SECRET, "secret": True}})
        outcome = outcomes(answer)["worker"]
        assert (outcome["result"], outcome["action"]) == ("applied", "supervisor-update"), outcome
        pid, env = worker.seen()
        assert (env["GREETING"], env["TOKEN"], env["MESSAGE"]) == ("hello, world; #1", SECRET, "first message")
        assert worker.pid("other") == other  # nothing else restarted
        assert SECRET not in answer.text
        assert SECRET not in api.get("/api/v1/audit").text

        answer = api.put("/api/v1/settings/box?wait=true", json={"message": "second"})
        assert outcomes(answer)["worker"]["result"] == "applied"
        assert worker.seen()[1]["MESSAGE"] == "second"

        gone = api.delete("/api/v1/env/worker/GREETING?wait=true")
        assert outcomes(gone)["worker"]["result"] == "applied"
        new_pid, env = worker.seen()
        assert "GREETING" not in env
        assert new_pid != pid
        assert worker.pid("other") == other


def test_a_value_supervisord_cannot_carry_is_refused_at_the_write(worker: Worker) -> None:
    with worker.api() as api:
        eventually(lambda: services_status(api).get("worker", {}).get("state") == "applied", "the first sync", 30)
        before = (worker.conf.read_bytes(), worker.data.env_ini.read_bytes())
        pid = worker.pid("worker")
        for scope in ("worker", "global"):  # global reaches worker too
            answer = api.put(f"/api/v1/env/{scope}/BOTH?wait=true", json={"value": "it's \"both\""})
            assert answer.status_code == 422, answer.text
            error = answer.json()["errors"][0]
            assert (error["key"], error["rule"]) == ("BOTH", "supervisord")
            assert "service worker runs under supervisord" in error["message"]
            assert "both" not in error["message"].replace("BOTH", "")
        assert (worker.conf.read_bytes(), worker.data.env_ini.read_bytes()) == before
        assert worker.pid("worker") == pid
