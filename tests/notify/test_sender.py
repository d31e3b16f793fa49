"""How the sender schedules its work, against real HTTP receivers on loopback: every delivery is
posted once however rounds and tasks interleave."""

from __future__ import annotations

import time

from apphub.notify.events import Event
from apphub.notify.outbox import Outbox
from apphub.notify.sender import Sender
from tests.notify.receivers import Receiver
from tests.notify.test_delivery import render
from tests.sync.conftest import wait_until


def change(summary: str) -> Event:
    return Event("settings.changed", summary, "v1", {})


def pending(outbox: Outbox, destination: str) -> int:
    return sum(1 for d in outbox.deliveries(destination=destination, limit=1000) if d.state == "pending")


def test_every_delivery_is_posted_once_however_rounds_and_tasks_interleave(parts, monkeypatch) -> None:
    # A round used to read the due deliveries before it looked which destinations were busy: a task
    # that ended in between left the round a list it had just delivered, posted again (71 requests
    # for 50 events). Reading takes a while (8.6 ms in the benchmark, a hanging destination's
    # backlog read too): every read is slowed down here, so that tasks end while a round reads.
    db, destinations, outbox = parts
    read = db.query

    def slow_read(*args: object) -> object:
        found = read(*args)  # type: ignore[arg-type]
        time.sleep(0.01)
        return found

    monkeypatch.setattr(db, "query", slow_read)
    with Receiver() as receiver:
        destinations.add("ops", "webhook", receiver.url)
        sender = Sender(outbox, destinations, render)
        sender.start()
        try:
            for number in range(50):
                outbox.enqueue(change(f"change {number}"), ["ops"])
                sender.wake()
                time.sleep(0.01)  # as long as a read: rounds and tasks overlap most
            wait_until(lambda: pending(outbox, "ops") == 0, 15, "every delivery done")
            time.sleep(0.3)  # a second post of any would come meanwhile
        finally:
            sender.stop()
        posted = [request.headers["webhook-id"] for request in receiver.got]
    assert len(posted) == 50, f"{len(posted)} requests for 50 deliveries"
    assert len(set(posted)) == 50
    assert {d.state for d in outbox.deliveries(limit=1000)} == {"delivered"}
