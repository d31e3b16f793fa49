"""One change set, one message: a write and how the services took it reach a chat destination as
one message (a real sync engine reloading real processes, a Slack-shaped receiver on loopback),
while a webhook gets each event on its own as it comes; a change whose sync report never comes is
sent alone once its hold is over; drift is told once per edit, and its repair is not told twice."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apphub.api.app import notify_of_sync
from apphub.audit.log import Actor
from apphub.core import Core
from apphub.notify import changesets
from apphub.notify.events import Event
from apphub.notify.outbox import Delivery
from apphub.reload.build import build_backends
from apphub.sync.engine import SyncEngine
from tests.notify.receivers import Receiver, SlackReceiver
from tests.sync.conftest import SyncWorld, make_world, wait_until

ADMIN = Actor("alice", "api")


def at(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def delivery(number: int, kind: str, *, awaits: bool = True, seconds_ago: float = 0.0) -> Delivery:
    data = {"sync_expected": awaits} if kind.startswith("settings.") else {}
    event = Event(kind, f"{kind} {number}", "v", data, at=at(seconds_ago))  # type: ignore[arg-type]
    return Delivery(number, event, "chat", "pending", 0, 0.0, event.at, None, None, None)


# -- which part of a pile waits ------------------------------------------------------------------

def test_a_change_waits_for_its_sync_then_both_go_together() -> None:
    change = delivery(1, "settings.changed")
    now, held, until = changesets.split([change], time.time())
    assert (now, held) == ([], [change])
    assert until is not None
    assert 55 < until - time.time() <= changesets.HOLD_S
    sync = delivery(2, "sync.applied")
    assert changesets.split([change, sync], time.time())[:2] == ([change, sync], [])


def test_only_what_came_after_the_last_sync_waits() -> None:
    pile = [delivery(1, "settings.changed"), delivery(2, "sync.applied"), delivery(3, "settings.refused"),
            delivery(4, "settings.changed")]
    now, held, _ = changesets.split(pile, time.time())
    assert [d.id for d in now] == [1, 2]
    assert [d.id for d in held] == [3, 4]


def test_nothing_waits_past_its_hold_or_without_a_sync_to_come() -> None:
    stale = delivery(1, "settings.changed", seconds_ago=changesets.HOLD_S + 1)
    assert changesets.split([stale], time.time())[:2] == ([stale], [])
    unsynced = delivery(2, "settings.changed", awaits=False)  # an inactive overlay's write: no sync follows
    assert changesets.split([unsynced], time.time())[:2] == ([unsynced], [])
    refused = delivery(3, "settings.refused")
    assert changesets.split([refused], time.time())[:2] == ([refused], [])


# -- with a real sync engine ---------------------------------------------------------------------

@pytest.fixture
def world(core: Core, tmp_path: Path) -> SyncWorld:
    return make_world(core, tmp_path)


@pytest.fixture
def notified(world: SyncWorld) -> Iterator[Callable[[], SyncEngine]]:
    """Starts the engine wired to the notifications as the server wires them, with the sender on."""
    world.standard()
    notifications = world.core.notifications
    engines: list[SyncEngine] = []

    def start() -> SyncEngine:
        engine = SyncEngine(world.core, build_backends)
        notify_of_sync(world.core, engine)
        engine.start()
        wait_until(lambda: engine.status.engine.syncs >= 1, 10, "the first sync")
        world.settle(engine)
        notifications.start()
        engines.append(engine)
        return engine

    try:
        yield start
    finally:
        for engine in engines:
            engine.stop()
        if notifications.sender is not None:
            notifications.sender.stop()


def messages(receiver: Receiver, count: int, *, quiet: float = 1.0, timeout: float = 15.0) -> list[dict]:
    """The messages the receiver got once it has `count` and no more came for `quiet` seconds."""
    wait_until(lambda: len(receiver.got) >= count, timeout, f"{count} message(s)")
    time.sleep(quiet)
    return [request.json() for request in receiver.got]


def test_a_write_and_its_sync_reach_slack_as_one_message(world: SyncWorld, notified) -> None:
    engine = notified()
    with SlackReceiver() as slack:
        world.core.notifications.destinations.add("chat", "slack", slack.url)
        world.core.config.update({"web": {"port": 8090}}, ADMIN)
        [message] = messages(slack, 1)
        assert slack.problems == []
    text = json.dumps(message, ensure_ascii=False)
    assert "alice (api) changed [web] port" in message["text"]
    assert "web took the new version" in message["text"]
    assert "`8081` → `8090`" in text  # old and new
    assert "applied (exec)" in text  # the service, its result and action
    assert world.reloads("web")[-1].content.count("8090") == 1
    assert engine.status.engine.syncs >= 2


def test_a_webhook_gets_the_change_and_the_sync_each_on_its_own(world: SyncWorld, notified) -> None:
    notified()
    with Receiver() as hook:
        world.core.notifications.destinations.add("ops", "webhook", hook.url)
        world.core.config.update({"web": {"title": "Hooked"}}, ADMIN)
        got = messages(hook, 2)
    assert [message["type"] for message in got] == ["settings.changed", "sync.applied"]
    assert got[0]["data"]["data"]["sync_expected"] is True
    assert [service["service"] for service in got[1]["data"]["data"]["services"]] == ["web"]


def test_a_write_no_service_reads_still_ends_its_change_set(world: SyncWorld, notified) -> None:
    notified()
    with SlackReceiver() as slack:
        world.core.notifications.destinations.add("chat", "slack", slack.url)
        world.core.config.update({"gitea": {"user_email": "nobody-reads@example.org"}}, ADMIN)
        [message] = messages(slack, 1)
    assert "no service needed a change" in message["text"]
    assert "[gitea] user_email" in message["text"]


def test_a_destination_that_wants_no_sync_event_is_not_held(world: SyncWorld, notified) -> None:
    notified()
    with SlackReceiver() as slack:
        world.core.notifications.destinations.add("chat", "slack", slack.url, events=["settings.changed"])
        started = time.monotonic()
        world.core.config.update({"web": {"title": "Unheld"}}, ADMIN)
        [message] = messages(slack, 1, quiet=0.5)
        assert time.monotonic() - started < 5
    assert "took the new version" not in message["text"]


def test_a_change_whose_sync_never_reports_goes_alone_after_its_hold(
        world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changesets, "HOLD_S", 1.0)
    notifications = world.core.notifications
    notifications.synced = lambda file: True  # a sync is expected, but none runs
    with SlackReceiver() as slack:
        notifications.destinations.add("chat", "slack", slack.url)
        notifications.start()
        try:
            world.core.config.update({"web": {"title": "Alone"}}, ADMIN)
            time.sleep(0.5)
            assert slack.got == [], "held while its sync may still come"
            [message] = messages(slack, 1, quiet=0.3)
        finally:
            assert notifications.sender is not None
            notifications.sender.stop()
    assert "alice (api) changed [web] title" in message["text"]


def test_a_reported_drift_is_told_once_and_a_repair_without_a_sync_message(world: SyncWorld, notified) -> None:
    engine = notified()
    with Receiver() as hook:
        world.core.notifications.destinations.add("ops", "webhook", hook.url, events=["drift.found",
                                                                                       "drift.repaired",
                                                                                       "sync.applied"])
        db = world.path("db/db.ini")  # policy report
        db.write_text(db.read_text().replace("port = 5433", "port = 7000"))
        wait_until(lambda: len(hook.got) >= 1, 10, "the drift event")
        world.sync_now(engine, full=True)  # the periodic check finds the same edit again
        app = world.path("web/app.json")  # policy repair
        app.write_text(app.read_text().replace('"port": 8081', '"port": 1234'))
        got = messages(hook, 2)
    assert [message["type"] for message in got] == ["drift.found", "drift.repaired"]
    assert got[0]["data"]["data"]["edited"] == {"db": [str(db)]}
    assert got[1]["data"]["services"] == ["web"]


def test_a_destination_filtered_by_section_gets_its_change_set_whole(world: SyncWorld, notified) -> None:
    # The sync event names services, not sections: it still ends the change set the destination holds.
    engine = notified()
    with SlackReceiver() as slack:
        world.core.notifications.destinations.add("web-team", "slack", slack.url, sections=["web"])
        world.core.config.update({"db": {"port": 5500}}, ADMIN)  # not theirs
        wait_until(lambda: len(world.reloads("db")) == 2, 10, "db's reload")
        world.settle(engine)
        world.core.config.update({"web": {"port": 8091}}, ADMIN)
        [message] = messages(slack, 1)
    assert "[web] port" in message["text"]
    assert "web took the new version" in message["text"]
    assert "db" not in message["text"]
