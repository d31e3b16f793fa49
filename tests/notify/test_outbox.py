"""The outbox's queries, on a real SQLite database: looking for held change sets reads no other
destination's backlog, and an event chosen for a destination that is gone by the time it is queued
(removed, or removed and added again under its name) makes no delivery."""

from __future__ import annotations

import time
from collections.abc import Callable

from apphub.db import Database
from apphub.notify.events import Event

NOBODY = "http://127.0.0.1:9/hook"




def change(summary: str) -> Event:
    return Event("settings.changed", summary, "v1", {"sync_expected": True})


def work_of(db: Database, read: Callable[[], object]) -> int:
    """The steps of SQLite's virtual machine `read` took, in hundreds: its work, which a loaded
    machine does not change as it changes the time it takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    db._connection.set_progress_handler(count, 100)
    try:
        read()
    finally:
        db._connection.set_progress_handler(None, 0)
    return steps


def test_looking_for_held_change_sets_reads_no_other_destinations_backlog(parts) -> None:
    # It read every pending delivery: 2-4 ms with a hanging webhook's 840, at every sync event.
    db, destinations, outbox = parts
    destinations.add("chat", "slack", NOBODY)
    destinations.add("hangs", "webhook", NOBODY)
    outbox.enqueue(change("held for its sync"), ["chat"])
    alone = work_of(db, outbox.awaiting_sync)
    for number in range(840):
        outbox.enqueue(change(f"piled up {number}"), ["hangs"])
    assert outbox.awaiting_sync() == {"chat"}
    assert work_of(db, outbox.awaiting_sync) <= alone + 1


def test_an_event_for_a_destination_gone_since_it_was_chosen_makes_no_delivery(parts) -> None:
    # The sender's thread queues an event after its recipients were chosen (the notifier hands
    # both over): the destination may be removed meanwhile, and another added under its name.
    _, destinations, outbox = parts
    destinations.add("ops", "webhook", NOBODY)
    destinations.add("kept", "webhook", NOBODY)
    removed, readded = change("before the removal"), change("before the new one was added")
    destinations.remove("ops")
    assert outbox.enqueue(removed, ["ops"]) == []
    time.sleep(0.01)
    destinations.add("ops", "webhook", NOBODY)
    made = outbox.enqueue(readded, ["ops", "kept"])
    assert [(d.id, d.destination) for d in outbox.deliveries()] == [(made[0], "kept")]
