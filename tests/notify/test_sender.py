"""How the sender schedules its work, against real HTTP receivers on loopback: every delivery is
posted once however rounds and tasks interleave; nothing is looked at again while a request hangs
or a destination is paced; a destination enabled again is served at once; stopping cuts off a
hanging request and leaves its delivery pending, untried, for the next start."""

from __future__ import annotations

import threading
import time

from apphub.notify.events import Event
from apphub.notify.outbox import Outbox
from apphub.notify.sender import Sender
from tests.notify.receivers import Receiver, SlackReceiver
from tests.notify.test_delivery import render
from tests.sync.conftest import wait_until


class CountedSender(Sender):
    """A sender that counts its rounds (its thread's passes through dispatch) and their CPU time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.rounds = 0
        self.cpu_s = 0.0

    def dispatch(self) -> int:
        if threading.current_thread().name == "apphub-notify":
            self.rounds += 1
            self.cpu_s = time.thread_time()  # the thread's CPU time so far: its last round's is its total
        return super().dispatch()


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


def test_a_hanging_request_leaves_the_sender_asleep(parts) -> None:
    # The delivery in flight is still pending and its time has come: the sender used to look again
    # every 50 ms until the request ended (0.1 s of CPU a second, with nothing to do).
    _, destinations, outbox = parts
    with Receiver() as receiver:
        receiver.hang(30)
        destinations.add("hangs", "webhook", receiver.url)
        for number in range(3):
            outbox.enqueue(change(f"change {number}"), ["hangs"])
        sender = CountedSender(outbox, destinations, render)
        sender.start()
        try:
            wait_until(lambda: receiver.got, 5, "the request")
            time.sleep(0.2)
            rounds, cpu_s = sender.rounds, sender.cpu_s
            time.sleep(1.0)
            rounds, cpu_s = sender.rounds - rounds, sender.cpu_s - cpu_s
        finally:
            sender.stop()
    assert rounds <= 1, f"{rounds} rounds in 1 s while the only destination's request hung"
    assert cpu_s < 0.02, f"{cpu_s * 1000:.1f} ms of CPU in 1 s"


def test_a_paced_chat_destination_is_looked_at_again_when_it_may_be_sent_to(parts) -> None:
    # Slack takes one message a second: what comes meanwhile waits for that second, and the sender
    # sleeps until then (it used to look every 50 ms).
    _, destinations, outbox = parts
    with SlackReceiver() as slack:
        destinations.add("chat", "slack", slack.url)
        sender = CountedSender(outbox, destinations, render)
        sender.start()
        try:
            outbox.enqueue(change("first"), ["chat"])
            sender.wake()
            wait_until(lambda: slack.got, 5, "the first message")
            sent_at = time.monotonic()
            rounds = sender.rounds
            outbox.enqueue(change("second"), ["chat"])
            sender.wake()
            wait_until(lambda: len(slack.got) == 2, 5, "the second message")
            waited, rounds = time.monotonic() - sent_at, sender.rounds - rounds
        finally:
            sender.stop()
    assert waited >= 0.9, f"the second message came {waited:.2f} s after the first"
    assert rounds <= 4, f"{rounds} rounds while the destination was paced"


def test_a_destination_enabled_again_is_served_at_once(parts) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        destinations.add("ops", "webhook", receiver.url)
        destinations.set_enabled("ops", False, "paused")
        outbox.enqueue(change("while paused"), ["ops"])
        sender = Sender(outbox, destinations, render)
        sender.start()
        try:
            time.sleep(0.3)  # the sender has looked, and found nothing it may send
            assert receiver.got == []
            enabled = time.monotonic()
            destinations.set_enabled("ops", True)
            wait_until(lambda: receiver.got, 5, "the delivery")
            took = time.monotonic() - enabled
        finally:
            sender.stop()
    assert took < 1.0, f"sent {took:.2f} s after the destination was enabled again"


def test_stopping_cuts_off_a_hanging_request_and_its_delivery_stays_pending(parts) -> None:
    _, destinations, outbox = parts
    with Receiver() as receiver:
        receiver.hang(30)
        destinations.add("hangs", "webhook", receiver.url)
        [made] = outbox.enqueue(change("in flight at stop"), ["hangs"])
        sender = Sender(outbox, destinations, render)
        sender.start()
        wait_until(lambda: receiver.got, 5, "the request")
        started = time.monotonic()
        sender.stop(timeout=5.0)
        took = time.monotonic() - started
        cut = outbox.get(made)
        assert (cut.state, cut.attempts, outbox.attempts(made)) == ("pending", 0, []), "counted as tried"

        receiver.reset()  # answers at once from now on
        restarted = Sender(outbox, destinations, render)
        restarted.start()
        try:
            wait_until(lambda: outbox.get(made).state == "delivered", 5, "the delivery at the next start")
        finally:
            restarted.stop()
    assert took < 1.0, f"stop took {took:.2f} s"
    assert [attempt.status for attempt in outbox.attempts(made)] == [200]
