"""Several writers at once: a real `apphub serve` with client threads, and CLI processes beside it.

No write may be lost: every acknowledged write (HTTP 200, CLI exit 0) is in config.ini at the end
(as the last value of its writer's key) and has its audit event, and the audit events form one
chain of versions, each write based on the one before.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from apphub.paths import DataDir
from apphub.store.inidoc import IniDocument
from apphub.store.snapshot import version_of
from tests.integration.conftest import StartServe, add_load_section, assert_stops_cleanly, audit_db, run_cli

API_WRITERS = 4
API_WRITES = 25
CLI_WRITERS = 3
CLI_WRITES = 6
_CLI_VERSION = re.compile(r"\(version ([0-9a-f]{32})\)")


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: the key, the value, who, and the version the writer was told."""

    key: str
    value: str
    actor: str
    source: str
    version: str | None


class Writers:
    """Runs writer functions in threads that start together, collecting acks and refusals."""

    def __init__(self) -> None:
        self.acks: list[Ack] = []
        self.refused: list[str] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def ack(self, ack: Ack) -> None:
        with self._lock:
            self.acks.append(ack)

    def refuse(self, why: str) -> None:
        with self._lock:
            self.refused.append(why)

    def run(self, targets: list[Callable[[], None]]) -> None:
        barrier = threading.Barrier(len(targets))

        def wrapped(target: Callable[[], None]) -> None:
            try:
                barrier.wait(timeout=30)
                target()
            except BaseException as exc:
                with self._lock:
                    self.errors.append(exc)

        threads = [threading.Thread(target=wrapped, args=(target,)) for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=100)
            assert not thread.is_alive(), "a writer hung"
        assert self.errors == []


def test_api_and_cli_writers_at_once_lose_no_update(data_dir: DataDir, serve: StartServe, admin_key: str) -> None:
    add_load_section(data_dir)
    server = serve(data_dir)
    with server.client(admin_key) as client:
        seeded = client.put("/api/v1/settings/load", json={f"legacy{w}": "seed" for w in range(API_WRITERS)})
        assert seeded.status_code == 200, seeded.text
    writers = Writers()

    def api_writer(number: int) -> Callable[[], None]:
        def write() -> None:
            with server.client(admin_key) as client:
                for n in range(API_WRITES):
                    key, value = f"api{number}", f"api{number}-{n}"
                    if number == 0:  # the batch route
                        response = client.put("/api/v1/settings", json={"load": {key: value}})
                    elif number == 1:  # Websoft9's route, which only changes existing keys
                        key = "legacy1"
                        response = client.put("/api/settings/load", params={"key": key, "value": value})
                    else:
                        response = client.put("/api/v1/settings/load", json={key: value})
                    if response.status_code != 200:
                        writers.refuse(f"{key}={value}: {response.status_code} {response.text}")
                        continue
                    body = response.json()
                    version = body.get("version") if number != 1 else None
                    writers.ack(Ack(key, value, "admin", "api", version))
        return write

    def cli_writer(number: int) -> Callable[[], None]:
        def write() -> None:
            for n in range(CLI_WRITES):
                key, value = f"cli{number}", f"cli{number}-{n}"
                if number == 0:
                    key = "legacy0"
                    result = run_cli(data_dir, "setconfig", "--section", "load", "--key", key, "--value", value)
                else:
                    result = run_cli(data_dir, "config", "set", "load", key, value)
                if result.returncode != 0:
                    writers.refuse(f"{key}={value}: exit {result.returncode} {result.stderr}")
                    continue
                found = _CLI_VERSION.search(result.stdout)
                writers.ack(Ack(key, value, "cli", "cli", found.group(1) if found else None))
        return write

    writers.run([api_writer(n) for n in range(API_WRITERS)] + [cli_writer(n) for n in range(CLI_WRITERS)])

    assert writers.refused == [], "no write should be refused: each writer owns its keys"
    assert len(writers.acks) == API_WRITERS * API_WRITES + CLI_WRITERS * CLI_WRITES

    # The file: parses, validates, and holds the last acknowledged value of every key.
    raw = data_dir.config_ini.read_bytes()
    document = IniDocument(raw.decode(), "config.ini")
    last: dict[str, str] = {}
    for ack in writers.acks:
        last[ack.key] = ack.value  # acks of one key come from one sequential writer, in order
    for key, value in last.items():
        assert document.get("load", key) == value, key
    checked = run_cli(data_dir, "check")
    assert checked.returncode == 0, checked.stderr

    # The audit log: one event per acknowledged write, and one unbroken chain of versions.
    with audit_db(data_dir) as db:
        events = db.execute(
            "SELECT id, actor, source, version_before, version_after FROM audit_events"
            " WHERE file = 'config.ini' AND action = 'settings.update' ORDER BY id").fetchall()
        changes = db.execute(
            "SELECT e.id, e.actor, e.source, e.version_after, c.key, c.new FROM audit_events e"
            " JOIN audit_changes c ON c.event_id = e.id WHERE c.section = 'load'").fetchall()
    recorded = {(row["key"], row["new"]): row for row in changes}
    for ack in writers.acks:
        row = recorded.get((ack.key, ack.value))
        assert row is not None, f"no audit event for the acknowledged write {ack}"
        assert (row["actor"], row["source"]) == (ack.actor, ack.source)
        if ack.version is not None:
            assert row["version_after"] == ack.version
    assert len(events) == 1 + len(writers.acks), "the seed write plus one event per acknowledged write"
    for previous, current in itertools.pairwise(events):
        assert current["version_before"] == previous["version_after"], "a write was not based on the one before"
    assert events[-1]["version_after"] == version_of(raw)

    assert_stops_cleanly(server)


def test_if_match_read_modify_write_counts_every_success(data_dir: DataDir, serve: StartServe,
                                                         admin_key: str) -> None:
    add_load_section(data_dir)
    server = serve(data_dir)
    with server.client(admin_key) as client:
        assert client.put("/api/v1/settings/load", json={"counter": 0}).status_code == 200
    clients, increments = 6, 10
    writers = Writers()
    conflicts: list[int] = []

    def incrementer() -> None:
        done = 0
        with server.client(admin_key) as client:
            for _attempt in range(increments * 50):
                if done == increments:
                    return
                read = client.get("/api/v1/settings/load")
                assert read.status_code == 200, read.text
                counter = read.json()["settings"]["counter"]
                written = client.put("/api/v1/settings/load", json={"counter": counter + 1},
                                     headers={"If-Match": read.headers["etag"]})
                if written.status_code == 412:
                    assert written.headers["content-type"] == "application/problem+json"
                    conflicts.append(1)
                    continue
                assert written.status_code == 200, written.text
                writers.ack(Ack("counter", str(counter + 1), "admin", "api", written.json()["version"]))
                done += 1
            raise AssertionError("too many conflicts in a row")

    writers.run([incrementer for _ in range(clients)])

    successes = len(writers.acks)
    assert successes == clients * increments
    with server.client(admin_key) as client:
        final = client.get("/api/v1/settings/load").json()["settings"]["counter"]
    assert final == successes
    assert sorted(int(ack.value) for ack in writers.acks) == list(range(1, successes + 1))
    with audit_db(data_dir) as db:
        recorded = [row[0] for row in db.execute(
            "SELECT c.new FROM audit_changes c JOIN audit_events e ON e.id = c.event_id"
            " WHERE c.section = 'load' AND c.key = 'counter' ORDER BY e.id")]
    assert recorded == [str(n) for n in range(successes + 1)]
    assert_stops_cleanly(server)


def test_a_stale_if_match_changes_nothing(data_dir: DataDir, serve: StartServe, admin_key: str) -> None:
    server = serve(data_dir)
    with server.client(admin_key) as client:
        stale = client.get("/api/v1/settings/gitea").headers["etag"]
        assert run_cli(data_dir, "config", "set", "gitea", "user_email", "cli@example.com").returncode == 0
        before = data_dir.config_ini.read_bytes()
        refused = client.put("/api/v1/settings/gitea", json={"user_email": "api@example.com"},
                             headers={"If-Match": stale})
        assert refused.status_code == 412
        assert data_dir.config_ini.read_bytes() == before
        fresh = client.get("/api/v1/settings/gitea")
        assert fresh.json()["settings"]["user_email"] == "cli@example.com"
        accepted = client.put("/api/v1/settings/gitea", json={"user_email": "api@example.com"},
                              headers={"If-Match": fresh.headers["etag"]})
        assert accepted.status_code == 200


def test_the_server_sees_a_cli_write_at_once(data_dir: DataDir, serve: StartServe, admin_key: str) -> None:
    server = serve(data_dir)
    with server.client(admin_key) as client:
        first = client.get("/api/v1/settings/cockpit")
        assert first.json()["settings"]["port"] == 9090
        assert run_cli(data_dir, "config", "set", "cockpit", "port", "9191").returncode == 0
        second = client.get("/api/v1/settings/cockpit", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200
    assert second.json()["settings"]["port"] == 9191
    assert second.headers["etag"] != first.headers["etag"]
