"""The outbox and the sender, against real HTTP receivers on loopback: signatures a Standard
Webhooks library verifies, retries with backoff and Retry-After, 410 Gone, a hanging receiver that
holds up no other destination, a pile of chat messages sent as one, what survives a restart, and no
credential in what is stored."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from apphub.db import Database
from apphub.notify import outbox as outbox_module
from apphub.notify.destinations import Destinations, Kind
from apphub.notify.events import Event
from apphub.notify.outbox import Outbox, next_delay
from apphub.notify.sender import Sender
from tests.notify.receivers import TOKEN, Answer, Receiver


def render(kind: Kind, events: Sequence[Event]) -> dict[str, object]:
    if kind == "webhook":
        return {"type": events[0].type, "timestamp": events[0].at, "data": events[0].as_dict()}
    return {"text": f"{len(events)} event(s)", "ids": [event.id for event in events]}




@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "RETRY_SCHEDULE_S", (0.05, 0.05, 0.05))
    monkeypatch.setattr(outbox_module, "JITTER", 0.0)


def event(summary: str = "gitea changed", **data: object) -> Event:
    return Event("settings.changed", summary, "v1", data, sections=("gitea",))


def deliver_until(sender: Sender, outbox: Outbox, done: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sender.dispatch()
        if sum(1 for d in outbox.deliveries(limit=1000) if d.state != "pending") >= done:
            return
        time.sleep(0.02)
    raise AssertionError(f"not {done} deliveries done: {[d.as_dict() for d in outbox.deliveries()]}")


def delivered(outbox: Outbox, destinations: Destinations, done: int) -> None:
    """A sender of its own delivers until `done` deliveries are no longer pending, then stops."""
    sender = Sender(outbox, destinations, render)
    try:
        deliver_until(sender, outbox, done)
    finally:
        sender.stop()


def test_a_webhook_is_signed_so_that_the_standard_webhooks_library_verifies_it(parts, fast_retries) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        hook = destinations.add("ops", "webhook", receiver.url)
        sent = event()
        outbox.enqueue(sent, ["ops"])
        delivered(outbox, destinations, 1)
    headers, body = receiver.got[0].headers, receiver.got[0].body
    assert hook.secret is not None
    verified = Webhook(hook.secret.reveal()).verify(body, headers)
    assert verified["data"]["id"] == sent.id
    assert headers["webhook-id"] == sent.id
    assert outbox.deliveries()[0].state == "delivered"


def test_a_receiver_down_then_up_gets_the_event_with_the_same_id_after_retries(parts, fast_retries) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        receiver.plan(Answer(503, b"down"), Answer(500, b"down"), Answer(429, b"slow down", {"Retry-After": "0"}))
        destinations.add("ops", "webhook", receiver.url)
        sent = event()
        [delivery] = outbox.enqueue(sent, ["ops"])
        delivered(outbox, destinations, 1)
    assert [request.headers["webhook-id"] for request in receiver.got] == [sent.id] * 4
    assert [attempt.status for attempt in outbox.attempts(delivery)] == [503, 500, 429, 200]
    assert outbox.get(delivery).state == "delivered"


def test_retry_after_longer_than_the_schedule_is_honoured_and_the_schedule_ends() -> None:
    assert next_delay(1, retry_after=120) == 120
    assert 4.5 <= (next_delay(1) or 0) <= 5.5
    assert sum(outbox_module.RETRY_SCHEDULE_S) > 2.5 * 86400  # about three days in all
    assert next_delay(len(outbox_module.RETRY_SCHEDULE_S) + 1) is None


def test_a_delivery_that_finally_fails_is_kept_and_can_be_replayed(parts, fast_retries) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        receiver.fail(4, 500)
        destinations.add("ops", "webhook", receiver.url)
        [delivery] = outbox.enqueue(event(), ["ops"])
        sender = Sender(outbox, destinations, render)
        try:
            deliver_until(sender, outbox, 1)
            assert outbox.get(delivery).state == "failed"
            assert len(outbox.attempts(delivery)) == 4
            outbox.replay(delivery)
            deliver_until(sender, outbox, 1)
        finally:
            sender.stop()
    assert outbox.get(delivery).state == "delivered"


def test_410_gone_disables_the_destination_and_says_so(parts, fast_retries) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        receiver.gone()
        destinations.add("chat", "slack", receiver.url)
        [delivery] = outbox.enqueue(event(), ["chat"])
        delivered(outbox, destinations, 1)
    assert outbox.get(delivery).state == "failed"
    found = destinations.get("chat")
    assert not found.enabled
    assert "410 Gone" in (found.disabled_reason or "")


def test_a_hanging_receiver_holds_up_no_other_destination(parts, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client gives up on the hanging one after 3 s: served one after the other, the quick one
    # would wait that long; served side by side, it is served at once (2.5 s: room for a loaded CI).
    _, destinations, outbox = parts
    monkeypatch.setattr("apphub.notify.sender.TIMEOUT_S", 3.0)
    with Receiver() as hanging, Receiver() as quick:
        hanging.hang(4.0)
        destinations.add("hangs", "webhook", hanging.url)
        destinations.add("quick", "webhook", quick.url)
        outbox.enqueue(event(), ["hangs", "quick"])
        sender = Sender(outbox, destinations, render, client=httpx.Client(timeout=3.0))
        started = time.monotonic()
        try:
            sender.dispatch()
            while not quick.got and time.monotonic() - started < 6:
                time.sleep(0.01)
            took = time.monotonic() - started
        finally:
            sender.stop()
    assert quick.got
    assert took < 2.5, f"the quick destination waited {took:.2f} s for the hanging one"


def test_a_pile_of_chat_events_goes_out_as_one_message(parts, fast_retries) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        destinations.add("chat", "slack", receiver.url)
        queued = [event(f"change {n}") for n in range(12)]
        for one in queued:
            outbox.enqueue(one, ["chat"])
        delivered(outbox, destinations, 12)
    assert len(receiver.got) == 1
    assert receiver.got[0].json()["ids"] == [one.id for one in queued]


def test_what_is_pending_survives_a_restart(parts, tmp_path: Path) -> None:
    _db, destinations, outbox = parts
    destinations.add("ops", "webhook", "http://127.0.0.1:9/hook")
    sent = event()
    outbox.enqueue(sent, ["ops"])
    reopened = Database(tmp_path / "apphub.db")
    try:
        [pending] = Outbox(reopened).due()
    finally:
        reopened.close()
    assert pending.event == sent


def test_no_credential_is_stored_or_shown_in_plaintext(parts, tmp_path: Path, fast_retries) -> None:
    db, destinations, outbox = parts
    hook = destinations.add("ops", "webhook", f"http://127.0.0.1:9/hook/{TOKEN}")  # nothing listens: refused
    outbox.enqueue(event(), ["ops"])
    delivered(outbox, destinations, 1)
    assert hook.secret is not None
    shown = json.dumps([hook.public(), *[d.as_dict() for d in outbox.deliveries()]])
    assert TOKEN not in shown
    assert hook.secret.reveal() not in shown
    db.close()
    raw = (tmp_path / "apphub.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("apphub.db-*"))
    assert TOKEN.encode() not in raw
    assert hook.secret.reveal().encode() not in raw


def test_deliveries_done_long_ago_are_forgotten_and_pending_ones_never(parts, fast_retries) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        destinations.add("ops", "webhook", receiver.url)
        [old] = outbox.enqueue(event("old"), ["ops"])
        delivered(outbox, destinations, 1)
    [recent] = outbox.enqueue(event("recent"), ["ops"])
    outbox.record(outbox.get(recent), 200, None, 1.0)
    [pending] = outbox.enqueue(event("pending"), ["ops"])
    month_later = time.time() + outbox_module.RETAIN_S + 60
    with outbox._db.transaction() as connection:  # the recent one was done just now, in that month
        connection.execute("UPDATE notify_outbox SET done_at = ? WHERE id = ?",
                           (outbox_module.iso_time(month_later - 10), recent))
    assert outbox.prune(at=month_later) == 1
    assert {d.id for d in outbox.deliveries()} == {recent, pending}
    assert outbox.attempts(old) == []
