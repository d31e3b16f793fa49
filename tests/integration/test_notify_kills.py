"""Notifications survive a SIGKILL: a real `apphub serve` queues signed webhook events while the
receiver hangs on the first one, is killed with the events pending (one of them in flight), and the
next server delivers every one of them, exactly as queued, with the same id."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from apphub.notify.destinations import new_signing_secret
from apphub.paths import DataDir
from tests.conftest import free_port
from tests.integration.conftest import StartServe
from tests.notify.receivers import WebhookReceiver

WRITES = 5


def queued_events(data: DataDir) -> dict[str, dict[str, Any]]:
    """The events in the outbox, by id, as stored (read as another process would)."""
    with sqlite3.connect(f"file:{data.database}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT event FROM notify_outbox WHERE destination = 'ops'").fetchall()
    events = [json.loads(row[0]) for row in rows]
    return {event["id"]: event for event in events}


def test_events_pending_at_a_sigkill_arrive_after_the_restart_as_queued(serve: StartServe, data_dir: DataDir) -> None:
    key = data_dir.admin_key.read_text().strip()
    secret = new_signing_secret()
    with WebhookReceiver(secret, port=free_port()) as receiver:
        receiver.hang(120)  # the first delivery stays in flight until the kill
        first = serve(data_dir)
        with first.client(key) as admin:
            added = admin.post("/api/v1/notifications/destinations", json={
                "name": "ops", "kind": "webhook", "url": receiver.url, "secret": secret,
                "events": ["settings.changed"]})
            assert added.status_code == 201, added.text
            for number in range(WRITES):
                answer = admin.put("/api/v1/settings/gitea", json={"user_email": f"kill{number}@example.org"})
                assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 15
        while not receiver.got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.got, "the first delivery was not sent"
        while len(queued_events(data_dir)) < WRITES and time.monotonic() < deadline:
            time.sleep(0.02)  # the server queues a write's event once its sync round reported
        queued = queued_events(data_dir)
        assert len(queued) == WRITES

        first.process.kill()  # SIGKILL: no shutdown, the hanging send cut off
        first.process.wait()
        receiver.reset()  # from now on it answers 200 at once

        serve(data_dir)
        deadline = time.monotonic() + 30
        while {payload["data"]["id"] for payload in receiver.verified} < set(queued) \
                and time.monotonic() < deadline:
            time.sleep(0.05)

    assert receiver.problems == []  # every request verified with the Standard Webhooks library
    arrived = {payload["data"]["id"]: payload for payload in receiver.verified}
    assert set(arrived) == set(queued), "every event queued before the kill arrived"
    for event_id, event in queued.items():
        payload = arrived[event_id]
        assert payload["type"] == event["type"]
        assert payload["timestamp"] == event["at"]
        assert payload["data"] == {name: value for name, value in event.items() if name not in ("type", "at")}
    assert {request.headers["webhook-id"] for request in receiver.got} == set(queued)
    emails = [payload["data"]["data"]["changes"][0]["new"] for payload in arrived.values()]
    assert sorted(emails) == sorted(f"kill{number}@example.org" for number in range(WRITES))
