"""Notifications end to end with a served apphub: a write through the API reaches a webhook
receiver as one signed `settings.changed` event (who, what, old and new, secrets masked), a write
no destination asked for queues nothing, and a CLI write is queued for the server to deliver."""

from __future__ import annotations

import json
import time

import httpx
from standardwebhooks.webhooks import Webhook

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import MASK
from tests.conftest import LiveServer
from tests.notify.receivers import Receiver

NEW_PASSWORD = "Notify-Secret-Horse-4417"
NOBODY = "http://127.0.0.1:9/hook"


def wait_for(receiver: Receiver, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.got) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(receiver.got) >= count, f"{len(receiver.got)} of {count} messages arrived"


def test_a_write_reaches_a_webhook_as_one_signed_event_with_secrets_masked(
        core: Core, live_server: LiveServer, admin: httpx.Client) -> None:
    with Receiver() as receiver:
        hook = core.notifications.destinations.add("ops", "webhook", receiver.url, events=["settings.changed"])
        answer = admin.put("/api/v1/settings/gitea", json={"user_email": "notified@example.org",
                                                           "user_pwd": NEW_PASSWORD})
        assert answer.status_code == 200, answer.text
        wait_for(receiver, 1)
        time.sleep(0.3)  # nothing more is coming: one change set, one message
    assert len(receiver.got) == 1
    headers, body = receiver.got[0].headers, receiver.got[0].body
    assert hook.secret is not None
    payload = Webhook(hook.secret.reveal()).verify(body, headers)
    assert payload["type"] == "settings.changed"
    data = payload["data"]
    assert data["version"] == answer.json()["version"]
    changes = {(c["section"], c["key"]): c for c in data["data"]["changes"]}
    assert changes[("gitea", "user_email")]["new"] == "notified@example.org"
    assert changes[("gitea", "user_pwd")]["new"] == MASK
    assert NEW_PASSWORD not in body.decode()
    stored = json.dumps([d.as_dict() for d in core.notifications.outbox.deliveries()])
    assert NEW_PASSWORD not in stored


def test_a_write_no_destination_asked_for_queues_nothing(core: Core) -> None:
    core.notifications.destinations.add("failures", "webhook", "http://127.0.0.1:9/hook", events=["sync.failed"])
    core.config.update({"gitea": {"user_email": "quiet@example.org"}}, Actor("notify-test", "test"))
    assert core.notifications.outbox.deliveries() == []


def test_a_cli_write_is_queued_and_the_server_delivers_it(data_dir: DataDir) -> None:
    from tests.conftest import serving

    with Receiver() as receiver:
        cli = Core(data_dir)
        try:
            cli.notifications.destinations.add("ops", "webhook", receiver.url)
            cli.config.update({"gitea": {"user_email": "from-cli@example.org"}}, Actor("cli", "cli"))
            assert [d.state for d in cli.notifications.outbox.deliveries()] == ["pending"]
        finally:
            cli.close()
        assert receiver.got == []  # a CLI command only queues
        with serving(data_dir):
            wait_for(receiver, 1)
    assert receiver.got[0].json()["data"]["data"]["source"] == "cli"


def test_a_rollback_is_told_as_one_with_the_version_it_brought_back(
        core: Core, live_server: LiveServer, admin: httpx.Client) -> None:
    first = admin.put("/api/v1/settings/gitea", json={"user_email": "first@example.org",
                                                      "user_pwd": NEW_PASSWORD}).json()["version"]
    admin.put("/api/v1/settings/gitea", json={"user_email": "second@example.org", "user_pwd": "Second-Horse-99"})
    core.notifications.destinations.add("ops", "webhook", "http://127.0.0.1:9/hook", events=["settings.rolled_back"])

    rolled = admin.post("/api/v1/settings/rollback", json={"version": first})

    assert rolled.status_code == 200, rolled.text
    deadline = time.monotonic() + 10  # the server queues it once its sync round reported
    while not core.notifications.outbox.deliveries() and time.monotonic() < deadline:
        time.sleep(0.02)
    [told] = [d.event for d in core.notifications.outbox.deliveries()]
    assert told.type == "settings.rolled_back"
    assert told.version == first
    assert told.data["source"] == "rollback"
    assert first[:12] in told.data["message"]
    changes = {c["key"]: c for c in told.data["changes"]}
    assert (changes["user_email"]["old"], changes["user_email"]["new"]) == ("second@example.org", "first@example.org")
    assert changes["user_pwd"]["new"] == MASK
    assert NEW_PASSWORD not in json.dumps(told.as_dict())


def test_with_the_sender_running_a_change_is_queued_after_its_sync_round_reports(core: Core) -> None:
    from apphub.notify import events
    from apphub.sync.apply import ApplyReport, ServiceOutcome

    notifier = core.notifications
    notifier.destinations.add("ops", "webhook", "http://127.0.0.1:9/hook")
    notifier.start()
    try:
        notifier.publish(events.settings_changed(Actor("alice", "api"), "config.ini", [], "v2", sync_expected=True))
        time.sleep(0.3)
        assert notifier.outbox.deliveries() == []  # the round has the interpreter and the database to itself
        notifier.on_report(ApplyReport("v2", {"web": ServiceOutcome("web", "applied", "v2", "reload")}))
        deadline = time.monotonic() + 5
        while len(notifier.outbox.deliveries()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [d.event.type for d in reversed(notifier.outbox.deliveries())] == ["settings.changed", "sync.applied"]
        notifier.publish(events.settings_changed(Actor("alice", "api"), "config.ini", [], "v3", sync_expected=True))
    finally:
        notifier.close()  # what was told but not queued yet is queued on the way out
    reopened = Core(core.data)
    try:
        assert reopened.notifications.outbox.deliveries()[0].event.version == "v3"
    finally:
        reopened.close()


def test_an_event_goes_to_the_destinations_enabled_when_it_happened(core: Core) -> None:
    # The sender's thread used to choose them when it queued the event, once the sync round had
    # reported: one enabled meanwhile got the change made before, one paused meanwhile lost it.
    from apphub.notify import events
    from apphub.sync.apply import ApplyReport, ServiceOutcome

    notifier = core.notifications
    notifier.destinations.add("earlier", "webhook", NOBODY)
    notifier.destinations.add("later", "webhook", NOBODY)
    notifier.destinations.set_enabled("later", False, "paused")
    notifier.start()
    try:
        notifier.publish(events.settings_changed(Actor("alice", "api"), "config.ini", [], "v2", sync_expected=True))
        notifier.destinations.set_enabled("later", True)  # while the change waits for its round's report
        notifier.destinations.set_enabled("earlier", False, "paused")
        notifier.on_report(ApplyReport("v2", {"web": ServiceOutcome("web", "applied", "v2", "reload")}))
        deadline = time.monotonic() + 5
        while len(notifier.outbox.deliveries()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # anything more would be queued meanwhile
    finally:
        assert notifier.sender is not None
        notifier.sender.stop()
    queued = {(d.destination, d.event.type) for d in notifier.outbox.deliveries()}
    assert queued == {("earlier", "settings.changed"), ("later", "sync.applied")}


def test_a_destination_paused_by_another_process_is_no_longer_chosen(core: Core) -> None:
    # The destinations' filters are held in memory: one paused by a CLI command (another
    # connection to the database) is seen at the next event, not at the next start.
    from apphub.db import Database
    from apphub.notify import events
    from apphub.notify.destinations import Destinations

    notifier = core.notifications
    notifier.destinations.add("ops", "webhook", NOBODY)
    notifier.publish(events.push_failed("origin", "main", "refused", 1))
    cli = Database(core.data.database)
    try:
        Destinations(cli, core.box).set_enabled("ops", False, "disabled by an admin")
    finally:
        cli.close()
    notifier.publish(events.push_failed("origin", "main", "refused again", 1))
    assert [d.event.summary for d in notifier.outbox.deliveries()] == [
        "the history could not be pushed to origin: refused"]
