"""Random change / rollback cycles with the quickstart's services running: every rollback exact.

Changes come through the API, the CLI and hand edits of config.ini (saved by rename, as editors
do); rollbacks through the API (`?wait=true`) and the CLI, to any earlier version, the very first
included. After each one, config.ini holds exactly the target version (its bytes, so its version,
and every setting, secrets decrypted), and once the sync is done the services' files are those
they had at that version. APPHUB_ROLLBACK_CYCLES sets the number of cycles (default 100: 1,000
took 311 s of CI's 30-minute budget once every write ran the rules; set 1000 or more when touching
rollback).
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from apphub.store.snapshot import version_of
from tests.integration.conftest import StartServe, run_cli
from tests.integration.test_quickstart import PROGRAMS, Quickstart, edit_by_rename, quickstart  # noqa: F401

CYCLES = int(os.environ.get("APPHUB_ROLLBACK_CYCLES", "100"))
COLORS = ["teal", "navy", "olive", "maroon", "purple", "#112233", "#a0b0c0", "coral", "orchid", "plum"]


@dataclass(frozen=True)
class Known:
    """A version as it was first applied: its bytes, its settings (secrets in plaintext), the files."""

    version: str
    raw: bytes
    settings: dict[str, Any]
    files: tuple[bytes, bytes]


def settings_of(api: httpx.Client) -> tuple[str, dict[str, Any]]:
    answer = api.get("/api/v1/settings", params={"reveal": "true"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["version"], body["settings"]


def applied(api: httpx.Client, version: str, within: float = 30) -> None:
    """Wait until every service reports `version` applied."""
    deadline = time.monotonic() + within
    while True:
        services = {s["service"]: s for s in api.get("/api/v1/sync/status").json()["services"]}
        if set(services) == set(PROGRAMS) and all(s["applied_version"] == version and s["state"] == "applied"
                                                  for s in services.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"version {version} not applied within {within} s: {services}")
        time.sleep(0.02)


def waited(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if "sync" in body and body["sync"] is not None:
        assert body["sync"]["done"] is True, body["sync"]
        assert body["sync"].get("ok", True) is True, body["sync"]
    return str(body["version"])


def hand_edit(demo: Quickstart, key: str, value: str) -> None:
    text = demo.data.config_ini.read_text(encoding="utf-8")
    old = re.search(rf"^{key} = .*$", text, re.MULTILINE)
    assert old is not None, key
    edit_by_rename(demo.data.config_ini, old.group(0), f"{key} = {value}")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_rollback_restores_the_version_and_its_files_exactly(quickstart: Quickstart,  # noqa: F811
                                                                    serve: StartServe) -> None:
    rng = random.Random(2026)
    started = quickstart.start()
    assert started.returncode == 0, started.stderr
    server = serve(quickstart.data, "warning")
    key = quickstart.data.admin_key.read_text().strip()
    known: dict[str, Known] = {}
    made = {"api": 0, "cli": 0, "hand": 0}
    rollbacks = {"api": 0, "cli": 0, "first": 0}
    exact = 0

    def capture(version: str) -> None:
        applied(api, version)
        raw = quickstart.data.config_ini.read_bytes()
        now, settings = settings_of(api)
        assert now == version == version_of(raw)
        files = (quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes())
        if version in known:  # the same bytes again: the same files
            assert known[version].files == files, f"version {version} applied twice, different files"
        else:
            known[version] = Known(version, raw, settings, files)

    with server.client(key) as api:
        first = api.get("/api/v1/settings").json()["version"]
        capture(first)
        order = [first]
        began = time.monotonic()
        for cycle in range(CYCLES):
            if cycle % 3 == 2 and len(order) > 1:  # a rollback
                target = order[0] if rng.random() < 0.1 else rng.choice(order[:-1])
                rollbacks["first"] += target == order[0]
                if rng.random() < 0.8:
                    version = waited(api.post("/api/v1/settings/rollback", params={"wait": "true"},
                                              json={"version": target[: rng.choice((8, 12, 32))]}))
                    rollbacks["api"] += 1
                else:
                    done = run_cli(quickstart.data, "rollback", target)
                    assert done.returncode == 0, done.stderr
                    version = version_of(quickstart.data.config_ini.read_bytes())
                    rollbacks["cli"] += 1
                applied(api, version)
                expected = known[target]
                assert version == target, f"cycle {cycle}: rolled back to {target}, config.ini is at {version}"
                assert quickstart.data.config_ini.read_bytes() == expected.raw
                assert settings_of(api)[1] == expected.settings, f"cycle {cycle}"
                assert (quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()) == expected.files, \
                    f"cycle {cycle}: the services' files are not those of {target}"
                exact += 1
            else:  # a change
                way = rng.choice(("api", "api", "cli", "hand"))
                color, title = rng.choice(COLORS), f"Title {rng.randrange(10**6)}"
                if way == "api":
                    body: dict[str, dict[str, Any]] = {"hello_json": {"color": color}, "hello_ini": {"title": title}}
                    if rng.random() < 0.3:
                        body["hello_ini"]["token"] = os.urandom(12).hex()
                    if rng.random() < 0.3:
                        body["gitea"] = {"user_email": f"u{cycle}@example.com"}
                    version = waited(api.put("/api/v1/settings", params={"wait": "true"}, json=body))
                elif way == "cli":
                    done = run_cli(quickstart.data, "config", "set", "hello_ini", "title", title)
                    assert done.returncode == 0, done.stderr
                    version = version_of(quickstart.data.config_ini.read_bytes())
                else:
                    hand_edit(quickstart, "color", color)
                    wanted = version_of(quickstart.data.config_ini.read_bytes())
                    deadline = time.monotonic() + 10
                    while api.get("/api/v1/settings").json()["version"] != wanted:
                        assert time.monotonic() < deadline, "the hand edit was not taken"
                        time.sleep(0.02)
                    version = wanted
                made[way] += 1
                capture(version)
                if version not in order:
                    order.append(version)
        took = time.monotonic() - began

        # The history holds every version made, and nothing leaked into it.
        entries = api.get("/api/v1/settings/history", params={"limit": 500, "file": "config.ini"}).json()
        assert entries["entries"][0]["version"] == version_of(quickstart.data.config_ini.read_bytes())
    total = sum(rollbacks[way] for way in ("api", "cli"))
    assert exact == total
    print(f"\nrollback cycles: {CYCLES} cycles in {took:.0f} s, changes {made}, rollbacks {rollbacks}, "
          f"exact restores {exact}/{total} ({100 * exact // max(total, 1)} %)")
