"""Regressions of the defects a review of the notifications found (issue 13), each reproduced first:
a paused destination made the sender spin and starved the others; a URL httpx cannot use was never
recorded; an error page repeating the URL's token was stored; `Retry-After: inf` broke the
deliveries API; a write made during a pause was told at the next start; both config.ini and
env.ini refused were told every round, env.ini's as config.ini's; a change set whose sync failed
was split; a replay went to a destination added later under the same name; stopping waited its
whole timeout; a push URL with credentials was quoted; filters were not checked."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from apphub.api.app import notify_of_sync
from apphub.audit.log import Actor, Change
from apphub.core import Core
from apphub.errors import HistoryError, NotFound, ValidationFailed
from apphub.history.push import PushSettings
from apphub.notify import events
from apphub.notify import outbox as outbox_module
from apphub.notify import sender as sender_module
from apphub.notify.destinations import Destinations
from apphub.notify.events import Event
from apphub.notify.outbox import Outbox, next_delay
from apphub.notify.sender import Sender
from apphub.reload.build import build_backends
from apphub.sync.engine import SyncEngine
from tests.notify.receivers import TOKEN, Answer, Receiver, SlackReceiver
from tests.notify.test_delivery import render
from tests.sync.conftest import make_world, wait_until

ADMIN = Actor("alice", "api")
NOBODY = "http://127.0.0.1:9/hook"




def attempted_once(destinations: Destinations, outbox: Outbox, delivery: int) -> None:
    """A sender of its own dispatches once and stops when `delivery` has one attempt recorded."""
    sender = Sender(outbox, destinations, render)
    try:
        sender.dispatch()
        wait_until(lambda: outbox.get(delivery).attempts == 1, 5, "the attempt recorded")
    finally:
        sender.stop()


def change(summary: str = "a change") -> Event:
    return Event("settings.changed", summary, "v1", {})


def test_a_paused_destination_neither_spins_the_sender_nor_starves_another(parts, monkeypatch) -> None:
    _, destinations, outbox = parts
    served: list[str] = []
    real_get = destinations.get
    with Receiver() as quick:
        destinations.add("paused", "webhook", NOBODY)
        destinations.add("quick", "webhook", quick.url)
        for number in range(600):
            outbox.enqueue(change(f"pile {number}"), ["paused"])
        destinations.set_enabled("paused", False, "paused")
        outbox.enqueue(change("for quick"), ["quick"])
        monkeypatch.setattr(destinations, "get", lambda name: served.append(name) or real_get(name))
        sender = Sender(outbox, destinations, render)
        sender.start()
        try:
            wait_until(lambda: quick.got, 5, "the quick destination's event")
            time.sleep(1.0)
        finally:
            sender.stop()
    assert served == ["quick"]  # served once; the paused one never (it spun 7,000 times in 2 s)


def test_a_url_httpx_cannot_use_is_refused_and_an_old_one_is_recorded(parts) -> None:
    _, destinations, outbox = parts
    for url in ("https://hooks..slack.com/services/x", "http://[::1/T0KEN", "http://a\x00b.example/x",
                "https://example.org/" + "x" * 3000, "ftp://example.org/x", "http://exa mple.org/"):
        with pytest.raises(ValidationFailed) as refused:
            destinations.add("bad", "slack", url)
        assert [error.key for error in refused.value.errors] == ["url"], url
    destinations.add("old", "slack", "https://ok.example.org/hook")
    with outbox._db.transaction() as connection:  # stored by an older apphub, before the check
        connection.execute("UPDATE notify_destinations SET url = ? WHERE name = 'old'",
                           (destinations._box.encrypt("https://hooks..slack.com/T0KEN"),))
    [made] = outbox.enqueue(change(), ["old"])
    attempted_once(destinations, outbox, made)
    [attempt] = outbox.attempts(made)
    assert attempt.error is not None
    assert "the URL cannot be used" in attempt.error
    assert "T0KEN" not in attempt.error


def test_filters_are_checked_naming_the_field(parts) -> None:
    _, destinations, _ = parts
    with pytest.raises(ValidationFailed) as refused:
        destinations.add("ops", "webhook", NOBODY, services=["", "web"], sections=["x" * 1000])
    assert sorted(error.key for error in refused.value.errors) == ["sections", "services"]


def test_an_error_page_repeating_the_token_is_stored_without_it(parts, monkeypatch) -> None:
    _, destinations, outbox = parts
    monkeypatch.setattr(outbox_module, "RETRY_SCHEDULE_S", (60,))
    with Receiver() as receiver:
        receiver.plan(Answer(404, f"<pre>Cannot POST /hook/{TOKEN}?token=abcdefghijkl</pre>".encode()))
        destinations.add("ops", "slack", f"{receiver.url}?token=abcdefghijkl")
        [made] = outbox.enqueue(change(), ["ops"])
        attempted_once(destinations, outbox, made)
    stored = outbox.get(made).last_error or ""
    assert stored.startswith("HTTP 404: <pre>Cannot POST ")
    assert TOKEN not in stored
    assert "abcdefghijkl" not in stored


def test_retry_after_is_believed_only_so_far(parts) -> None:
    assert (next_delay(1, float("inf")) or 0) < 10
    assert next_delay(1, 365 * 86400.0) == outbox_module.MAX_RETRY_AFTER_S
    response = httpx.Response(429, headers={"retry-after": "inf"})
    assert sender_module._retry_after(response) is None


def test_a_write_made_during_a_pause_is_not_told_at_the_next_start(core: Core) -> None:
    core.notifications.catch_up()
    core.notifications.destinations.add("ops", "webhook", NOBODY)
    core.notifications.destinations.set_enabled("ops", False, "paused")
    core.config.update({"gitea": {"user_email": "paused@example.org"}}, ADMIN)
    time.sleep(0.01)
    core.notifications.destinations.set_enabled("ops", True)
    assert core.notifications.catch_up() == []
    assert core.notifications.outbox.deliveries() == []


def test_refusals_of_config_ini_and_env_ini_are_each_told_once_under_their_name(
        core: Core, tmp_path: Path) -> None:
    world = make_world(core, tmp_path)
    world.standard()
    core.notifications.destinations.add("ops", "webhook", NOBODY, events=["settings.refused"])
    engine = SyncEngine(core, build_backends, watch=False)
    notify_of_sync(core, engine)
    engine.start()
    try:
        wait_until(lambda: engine.status.engine.syncs >= 1, 10, "the first sync")
        config = core.data.config_ini
        config.write_text(re.sub(r"(?m)^port = 8081$", "port = not-a-port", config.read_text()))
        env = core.data.env_ini
        env.write_text(env.read_text() + "\n[global]\n1NOT_A_NAME = x\n")
        for _ in range(4):
            world.sync_now(engine)
    finally:
        engine.stop()
    told = sorted(d.event.data["file"] for d in core.notifications.outbox.deliveries(limit=500))
    assert told == ["config.ini", "env.ini"]


def test_a_change_whose_sync_failed_is_one_message_for_a_destination_of_failures(core: Core) -> None:
    notifier = core.notifications
    with SlackReceiver() as slack:
        notifier.destinations.add("chat", "slack", slack.url, events=["settings.changed", "sync.failed"])
        notifier.start()
        try:
            notifier.publish(events.settings_changed(ADMIN, "config.ini", [Change("web", "port", "set", "1", "2")],
                                                     "v2", sync_expected=True))
            time.sleep(0.3)
            assert slack.got == []  # held for its sync
            notifier.publish(events.sync_applied("v2", [{"service": "web", "result": "failed"}], {"total": 3.0}))
            wait_until(lambda: slack.got, 5, "the message")
            time.sleep(0.5)
        finally:
            assert notifier.sender is not None
            notifier.sender.stop()
    [message] = [request.json() for request in slack.got]
    assert "changed [web] port" in message["text"]
    assert "web failed" in message["text"]


def test_a_replay_never_goes_to_a_destination_added_later_under_the_name(parts) -> None:
    _, destinations, outbox = parts
    destinations.add("ops", "slack", "https://hooks.example.org/old")
    [made] = outbox.enqueue(change(), ["ops"])
    destinations.remove("ops")
    time.sleep(0.01)
    destinations.add("ops", "slack", "https://hooks.example.org/new")
    with pytest.raises(NotFound, match="added since under that name is another"):
        outbox.replay(made)
    assert outbox.get(made).state == "failed"


def test_stopping_does_not_wait_for_tasks_that_never_ran(parts, monkeypatch) -> None:
    _, destinations, outbox = parts
    receivers = [Receiver() for _ in range(8)]
    for receiver in receivers:
        receiver.__enter__()
        receiver.hang(0.3)
    try:
        for number, receiver in enumerate(receivers):
            destinations.add(f"d{number}", "webhook", receiver.url)
            outbox.enqueue(change(), [f"d{number}"])
        sender = Sender(outbox, destinations, render, workers=4)
        sender.dispatch()
        started = time.monotonic()
        sender.stop(timeout=5.0)
        took = time.monotonic() - started
    finally:
        for receiver in receivers:
            receiver.__exit__(None, None, None)
    assert took < 3.0, f"stop took {took:.1f} s"


def test_a_push_url_holding_credentials_is_never_quoted(core: Core) -> None:
    system = core.data.system_ini  # a hand edit: the schema refuses such a URL through apphub
    text = system.read_text()
    url = "ssh://git:S3cretPushT0ken@example.org/repo.git"
    if re.search(r"(?m)^remote_url\s*=", text):
        text = re.sub(r"(?m)^remote_url\s*=.*$", f"remote_url = {url}", text)
    else:
        text = text.replace("[history]", f"[history]\nremote_url = {url}", 1)
    system.write_text(text)
    with pytest.raises(HistoryError) as refused:
        PushSettings.from_system(core.system.snapshot())
    assert "S3cretPushT0ken" not in str(refused.value)
