"""Pushing the history to a real git remote over HTTP (git http-backend), with Gitea's API to create it.

The remote is down, slow, refuses the token, or has a branch our history lacks: a write is never
blocked, a change never lost, a rejected push never forced, and the token is in no argument, file,
URL, log or status.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import HistoryError
from apphub.history.push import Pusher, PushSettings
from apphub.notify.outbox import Delivery
from apphub.paths import DataDir
from tests.conftest import LiveServer, serving
from tests.history.git_http_remote import GitRemote

API = Actor("admin", "api")
CLI = Actor("cli", "cli")


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[GitRemote]:
    server = GitRemote(tmp_path / "remote").start()
    try:
        yield server
    finally:
        server.down()


def configure(core: Core, remote: GitRemote, *, token: str | None = None, owner: str = "websoft9",
              create: bool = True) -> None:
    core.system.update({"history": {"remote_url": remote.url(owner), "remote_user": remote.user,
                                    "remote_token": token if token is not None else remote.token,
                                    "remote_create": create}}, CLI)
    core.history.record()  # system.ini's new version too, as the server's history thread would


def pusher_of(core: Core) -> Pusher:
    return Pusher(core.history, lambda: PushSettings.from_system(core.system.snapshot()))


def our_log(data: DataDir) -> list[str]:
    return subprocess.run(["git", "--git-dir", str(data.state_dir / "history"), "log", "--format=%H", "main"],
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture
def started(core: Core) -> Core:
    core.history.start()
    return core


def test_the_first_push_creates_the_repository_through_giteas_api(started: Core, remote: GitRemote) -> None:
    configure(started, remote)
    started.config.update({"gitea": {"user_email": "a@example.com"}}, API)
    started.history.record()
    pusher = pusher_of(started)

    assert pusher.push_once()

    assert remote.log() == our_log(started.data)
    assert remote.spec_violations == []
    api = [(seen.method, seen.path) for seen in remote.requests if seen.path.startswith("/api/v1")]
    assert api == [("GET", "/api/v1/repos/websoft9/apphub-config"), ("GET", "/api/v1/user"),
                   ("POST", "/api/v1/user/repos")]
    assert all(seen.authorization == f"token {remote.token}" for seen in remote.requests
               if seen.path.startswith("/api/v1"))
    status = pusher.status()
    assert status["state"] == "ok"
    assert status["pending_commits"] == 0
    assert status["last_pushed_commit"] == our_log(started.data)[0]


def test_a_repository_of_an_organisation_is_created_under_it(started: Core, remote: GitRemote) -> None:
    configure(started, remote, owner="websoft9-org")

    assert pusher_of(started).push_once()

    assert ("POST", "/api/v1/orgs/websoft9-org/repos") in [(s.method, s.path) for s in remote.requests]
    assert remote.log(owner="websoft9-org") == our_log(started.data)
    assert remote.spec_violations == []


def test_later_commits_are_pushed_as_fast_forwards(started: Core, remote: GitRemote) -> None:
    configure(started, remote)
    pusher = pusher_of(started)
    assert pusher.push_once()
    for n in range(3):
        started.config.update({"gitea": {"user_email": f"u{n}@example.com"}}, API)
    started.history.record()
    assert pusher.status()["pending_commits"] == 3

    assert pusher.push_once()

    assert remote.log() == our_log(started.data)
    assert pusher.status()["pending_commits"] == 0


def test_a_wrong_token_fails_at_once_and_says_so_without_the_token(started: Core, remote: GitRemote,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    remote.create_repo()
    wrong = "wrong-token-must-not-leak-42"
    configure(started, remote, token=wrong, create=False)
    pusher = pusher_of(started)

    began = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        assert not pusher.push_once()

    assert time.monotonic() - began < 10  # no prompt waited on
    status = pusher.status()
    assert status["state"] == "failing"
    assert "credentials" in status["last_error"]
    basic = base64.b64encode(f"{remote.user}:{wrong}".encode()).decode()
    for text in (str(status), caplog.text):
        assert wrong not in text
        assert basic not in text
    assert remote.log() == []


def test_a_remote_that_is_down_loses_nothing_and_gets_everything_when_back(started: Core,
                                                                          remote: GitRemote) -> None:
    configure(started, remote)
    pusher = pusher_of(started)
    assert pusher.push_once()
    remote.down()
    began = time.monotonic()
    for n in range(4):
        started.config.update({"gitea": {"user_email": f"down{n}@example.com"}}, API)
    assert time.monotonic() - began < 2  # writes never wait for the remote
    started.history.record()

    assert not pusher.push_once()
    status = pusher.status()
    assert status["state"] == "failing"
    assert status["pending_commits"] == 4
    assert status["next_attempt_in_s"] is not None

    remote.up()
    assert pusher.push_once()
    assert remote.log() == our_log(started.data)


def test_a_slow_remote_does_not_slow_writes(started: Core, remote: GitRemote) -> None:
    configure(started, remote)
    pusher = pusher_of(started)
    remote.delay = 1.0
    pushing = threading.Thread(target=pusher.push_once)
    pushing.start()
    time.sleep(0.2)

    began = time.monotonic()
    started.config.update({"gitea": {"user_email": "during@example.com"}}, API)
    took = time.monotonic() - began
    pushing.join(30)

    assert took < 0.5
    assert remote.log()[-1] == our_log(started.data)[-1]  # the push landed, slowly


def test_a_rejected_push_is_reported_and_never_forced(started: Core, remote: GitRemote) -> None:
    configure(started, remote)
    pusher = pusher_of(started)
    assert pusher.push_once()
    theirs = remote.diverge()
    started.config.update({"gitea": {"user_email": "after@example.com"}}, API)
    started.history.record()

    assert not pusher.push_once()

    status = pusher.status()
    assert status["state"] == "rejected"
    assert "rejected" in status["last_error"]
    assert "never forced" in status["last_error"]
    assert remote.log()[0] == theirs  # their commit is still there
    assert status["pending_commits"] >= 1


def test_the_token_is_in_no_argument_url_or_file(started: Core, remote: GitRemote,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    configure(started, remote)
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def watching(command: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append((list(command), dict(kwargs.get("env") or {})))
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr("apphub.history.push.subprocess.run", watching)
    assert pusher_of(started).push_once()

    basic = base64.b64encode(f"{remote.user}:{remote.token}".encode()).decode()
    pushes = [(command, env) for command, env in seen if "push" in command]
    assert pushes
    for command, env in pushes:
        assert not any(remote.token in part or basic in part for part in command)
        assert env["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {basic}"
        assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert all(remote.token not in seen_request.path for seen_request in remote.requests)
    for path in (started.data.state_dir / "history").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert remote.token.encode() not in data, path
            assert basic.encode() not in data, path
    assert remote.token.encode() not in started.data.system_ini.read_bytes()  # encrypted there


def test_a_url_holding_credentials_is_refused(started: Core, remote: GitRemote) -> None:
    configure(started, remote)
    with_credentials = remote.url().replace("http://", f"http://{remote.user}:{remote.token}@")
    raw = started.system.snapshot().raw.replace(remote.url().encode(), with_credentials.encode())

    with pytest.raises(HistoryError, match="never in the URL") as refused:
        PushSettings.from_system(started.system.parse(raw))

    assert remote.token not in str(refused.value)


def test_the_server_pushes_in_the_background_and_the_status_says_so(data_dir: DataDir, remote: GitRemote) -> None:
    core = Core(data_dir)
    try:
        configure(core, remote)
    finally:
        core.close()
    key = data_dir.admin_key.read_text().strip()
    with serving(data_dir) as server, server.client(key) as client:
        version = client.put("/api/v1/settings/gitea", json={"user_email": "bg@example.com"}).json()["version"]
        pushed = wait_for(lambda: client.get("/api/v1/history/status").json()["push"],
                          lambda push: push["state"] == "ok" and push["pending_commits"] == 0)
        # the write is a commit (the services' initialisers, at the server's start, may write later ones)
        entries = client.get("/api/v1/settings/history", params={"limit": 500}).json()["entries"]
        assert version in [entry["version"] for entry in entries]
        assert pushed["last_pushed_commit"] == remote.log()[0]
        remote.down()
        client.put("/api/v1/settings/gitea", json={"user_email": "while-down@example.com"}).raise_for_status()
        failing = wait_for(lambda: status_of(client, server), lambda push: push["state"] == "failing")
        assert failing["pending_commits"] >= 1  # the write's commit (a loaded machine may show one more in flight)
        remote.up()
        wait_for(lambda: status_of(client, server),
                 lambda push: push["state"] == "ok" and push["pending_commits"] == 0, timeout=20)
        assert remote.log() == our_log(data_dir)
    assert remote.spec_violations == []


def status_of(client: httpx.Client, server: LiveServer) -> dict[str, Any]:
    push: dict[str, Any] = client.get("/api/v1/sync/status").json()["history"]["push"]
    return push


def wait_for(read: Any, done: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return dict(value)
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {value}")
        time.sleep(0.1)


# -- told to the notifications ----------------------------------------------------------------

NOBODY = "http://127.0.0.1:9/hook"  # nothing listens: the events stay queued for the test to read


def queued(core: Core, kind: str) -> list[Delivery]:
    return [d for d in core.notifications.outbox.deliveries(limit=1000) if d.event.type == kind]


def test_a_failing_history_push_is_told_once_without_its_token(started: Core, remote: GitRemote) -> None:
    started.notifications.destinations.add("ops", "webhook", NOBODY, events=["history.push_failed"])
    remote.create_repo()
    wrong = "wrong-token-must-not-leak-77"
    configure(started, remote, token=wrong, create=False)
    pusher = pusher_of(started)
    pusher.on_failure.append(started.notifications.on_push_failed)

    assert not pusher.push_once()
    assert not pusher.push_once()  # the retry fails too: not told again

    [told] = queued(started, "history.push_failed")
    assert told.event.data["remote"] == remote.url("websoft9")
    assert "credentials" in told.event.data["error"]
    assert told.event.data["failures"] == 1
    assert wrong not in json.dumps(told.event.as_dict())
