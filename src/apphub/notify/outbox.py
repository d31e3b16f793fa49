"""The durable outbox: one delivery per event and destination, in SQLite, with every attempt.

An event is queued for all its destinations in one transaction: what is queued survives a crash
of the process or a restart (SQLite's WAL holds it when `enqueue` returns). It is not flushed to
the disk then, which would cost each write an fsync: after a power loss, the next start queues
again the events of writes the audit log holds and no delivery tells of (Notifier.catch_up), and a
sync report's event is made again by the first round (it tells what a change waits for). A delivery is `pending` until a
destination answers 2xx (`delivered`), or it has used up the retry schedule, or the destination
answered `410 Gone` (`failed`: kept, listed, and `replay` queues it again).

The schedule is Standard Webhooks' (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with
two more days, about three days in all; a destination's `Retry-After` (or Discord's `retry_after`)
is honoured when it asks for longer.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from apphub.db import Database
from apphub.errors import NotFound
from apphub.notify.events import Event, iso_time, now

logger = logging.getLogger("apphub.notify")

State = Literal["pending", "delivered", "failed"]
# Seconds to wait before each attempt after the first: the Standard Webhooks guidance, then two more days.
RETRY_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000, 86400, 86400)
JITTER = 0.1  # +-10 %: deliveries that failed together do not all come back at the same second
MAX_RETRY_AFTER_S = 86400.0  # a destination asking for longer is believed only this far (the schedule ends)
# How long a delivery is kept once delivered or failed (listed, replayable), and how far back the
# next start looks for writes whose event was never queued (Notifier.catch_up).
RETAIN_S = 30 * 86400


@dataclass(frozen=True)
class Delivery:
    id: int
    event: Event
    destination: str
    state: State
    attempts: int
    next_at: float  # unix time of the next attempt, while pending
    created_at: str
    last_status: int | None
    last_error: str | None
    done_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event_id": self.event.id, "event_type": self.event.type,
                "summary": self.event.summary, "destination": self.destination, "state": self.state,
                "attempts": self.attempts, "next_attempt_at": _iso(self.next_at) if self.state == "pending" else None,
                "created_at": self.created_at, "last_status": self.last_status, "last_error": self.last_error,
                "done_at": self.done_at}


@dataclass(frozen=True)
class Attempt:
    at: str
    status: int | None  # None: no answer (refused, timed out)
    error: str | None
    duration_ms: float


def next_delay(attempts: int, retry_after: float | None = None) -> float | None:
    """Seconds before the next attempt after `attempts` failed ones; None when the schedule is used
    up. `retry_after`, what the destination asked for, wins when it is longer."""
    if attempts > len(RETRY_SCHEDULE_S):
        return None
    delay = RETRY_SCHEDULE_S[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # jitter: no secret
    asked = retry_after if retry_after is not None and math.isfinite(retry_after) else 0.0
    return max(delay, min(asked, MAX_RETRY_AFTER_S))


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    def enqueue(self, event: Event, destinations: Iterable[str]) -> list[int]:
        """Queue `event` for each destination, due now; the ids of the deliveries made. Queuing the
        same event for a destination twice makes no second delivery; nor does queuing it for one
        removed since it was chosen, or added after the event under its name (another destination)."""
        body = json.dumps(event.as_dict(), separators=(",", ":"))
        made = []
        with self._db.transaction() as connection:  # not durable: see the module's docstring
            for destination in dict.fromkeys(destinations):
                cursor = connection.execute(
                    "INSERT OR IGNORE INTO notify_outbox (event_id, destination, event, state, next_at, created_at)"
                    " SELECT ?, name, ?, 'pending', ?, ? FROM notify_destinations WHERE name = ? AND created_at <= ?",
                    (event.id, body, time.time(), event.at, destination, event.at))
                if cursor.rowcount:
                    made.append(int(cursor.lastrowid or 0))
        return made

    def due(self, at: float | None = None, per_destination: int = 100) -> list[Delivery]:
        """The pending deliveries of enabled destinations whose time has come, oldest first, at
        most `per_destination` of each (one destination's backlog never hides another's)."""
        rows = self._db.query(
            "SELECT * FROM (SELECT o.*, row_number() OVER (PARTITION BY o.destination ORDER BY o.id) AS place"
            " FROM notify_outbox o JOIN notify_destinations d ON d.name = o.destination AND d.enabled = 1"
            " WHERE o.state = 'pending' AND o.next_at <= ?) WHERE place <= ? ORDER BY id",
            (time.time() if at is None else at, per_destination))
        return [_delivery(row) for row in rows]

    def due_for(self, destination: str, at: float | None = None, limit: int = 100) -> list[Delivery]:
        """The pending deliveries of `destination` whose time has come, oldest first, at most `limit`."""
        rows = self._db.query("SELECT * FROM notify_outbox WHERE destination = ? AND state = 'pending'"
                              " AND next_at <= ? ORDER BY id LIMIT ?",
                              (destination, time.time() if at is None else at, limit))
        return [_delivery(row) for row in rows]

    def first_due_at(self) -> dict[str, float]:
        """When each enabled destination with pending deliveries has the first of them due (unix
        time): one look at the index per destination, however long a backlog is."""
        rows = self._db.query(
            "SELECT d.name, (SELECT min(o.next_at) FROM notify_outbox o WHERE o.destination = d.name"
            " AND o.state = 'pending') AS first FROM notify_destinations d WHERE d.enabled = 1")
        return {row["name"]: float(row["first"]) for row in rows if row["first"] is not None}

    def untried(self, destination: str) -> list[Delivery]:
        """The pending deliveries of `destination` never sent yet (due, or held: see postpone)."""
        rows = self._db.query("SELECT * FROM notify_outbox WHERE destination = ? AND state = 'pending'"
                              " AND attempts = 0 ORDER BY id", (destination,))
        return [_delivery(row) for row in rows]

    def awaiting_sync(self) -> set[str]:
        """The chat destinations holding a change whose sync report has not come yet (never sent,
        its event says a `sync.*` event follows, and they hold: they want one; see changesets).
        The destinations are looked at first: only their own pending deliveries are read."""
        rows = self._db.query(
            "SELECT d.name FROM notify_destinations d WHERE d.enabled = 1 AND d.kind != 'webhook'"
            " AND EXISTS (SELECT 1 FROM json_each(d.events) WHERE value IN ('*', 'sync.applied', 'sync.failed'))"
            " AND EXISTS (SELECT 1 FROM notify_outbox o WHERE o.destination = d.name AND o.state = 'pending'"
            " AND o.attempts = 0 AND json_extract(o.event, '$.data.sync_expected') = 1"
            " AND json_extract(o.event, '$.type') IN ('settings.changed', 'settings.rolled_back'))")
        return {row["name"] for row in rows}

    def postpone(self, deliveries: Iterable[Delivery], until: float) -> None:
        """Hold pending deliveries until `until` (unix time), unless sent earlier with others."""
        with self._db.transaction() as connection:
            connection.executemany("UPDATE notify_outbox SET next_at = max(next_at, ?) WHERE id = ?"
                                   " AND state = 'pending'", [(until, delivery.id) for delivery in deliveries])

    def prune(self, at: float | None = None) -> int:
        """Forget the deliveries done (delivered or failed) more than RETAIN_S ago, with their
        attempts; how many."""
        cutoff = iso_time((time.time() if at is None else at) - RETAIN_S)
        with self._db.transaction() as connection:
            return connection.execute("DELETE FROM notify_outbox WHERE state != 'pending' AND done_at < ?",
                                      (cutoff,)).rowcount

    def audit_cursor(self) -> int:
        """The audit log's last event the notifications have looked at (see Notifier.catch_up)."""
        rows = self._db.query("SELECT audit_event FROM notify_cursor WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def move_audit_cursor(self, audit_event: int) -> None:
        with self._db.transaction(durable=True) as connection:
            connection.execute("UPDATE notify_cursor SET audit_event = max(audit_event, ?) WHERE id = 1",
                               (audit_event,))

    def told_audit_events(self, after: int) -> set[int]:
        """The audit log's events after `after` that a queued event tells of."""
        rows = self._db.query("SELECT DISTINCT json_extract(event, '$.data.audit_event') FROM notify_outbox"
                              " WHERE json_extract(event, '$.data.audit_event') > ?", (after,))
        return {int(row[0]) for row in rows}

    def next_due_at(self) -> float | None:
        return min(self.first_due_at().values(), default=None)

    def get(self, delivery: int) -> Delivery:
        rows = self._db.query("SELECT * FROM notify_outbox WHERE id = ?", (delivery,))
        if not rows:
            raise NotFound(f"there is no delivery {delivery}")
        return _delivery(rows[0])

    def deliveries(self, *, destination: str | None = None, state: str | None = None, before_id: int | None = None,
             limit: int = 50) -> list[Delivery]:
        """Deliveries, newest first."""
        rows = self._db.query(
            "SELECT * FROM notify_outbox WHERE (:destination IS NULL OR destination = :destination)"
            " AND (:state IS NULL OR state = :state) AND (:before IS NULL OR id < :before)"
            " ORDER BY id DESC LIMIT :limit",
            {"destination": destination, "state": state, "before": before_id, "limit": limit})
        return [_delivery(row) for row in rows]

    def attempts(self, delivery: int) -> list[Attempt]:
        rows = self._db.query("SELECT at, status, error, duration_ms FROM notify_attempts WHERE delivery = ?"
                              " ORDER BY rowid", (delivery,))
        return [Attempt(row["at"], row["status"], row["error"], row["duration_ms"]) for row in rows]

    def record(self, delivery: Delivery, status: int | None, error: str | None, duration_ms: float, *,
               retry_after: float | None = None, final: bool = False) -> State:
        """One attempt's result: delivered on a 2xx without an `error` (WeCom answers errors with
        200); else retried on the schedule, or failed when it is used up or `final` (a 410). The
        state it leaves the delivery in."""
        attempts = delivery.attempts + 1
        delay = None if final else next_delay(attempts, retry_after)
        delivered = error is None and status is not None and 200 <= status < 300
        state: State = "delivered" if delivered else "pending" if delay is not None else "failed"
        with self._db.transaction() as connection:
            connection.execute("INSERT INTO notify_attempts (delivery, at, status, error, duration_ms)"
                               " VALUES (?, ?, ?, ?, ?)", (delivery.id, now(), status, error, duration_ms))
            updated = connection.execute(
                "UPDATE notify_outbox SET state = ?, attempts = ?, next_at = ?, last_status = ?, last_error = ?,"
                " done_at = ? WHERE id = ? AND state = 'pending'",
                (state, attempts, time.time() + (delay or 0.0), status, error,
                 now() if state != "pending" else None, delivery.id)).rowcount
            if not updated:  # sent although it was no longer pending (removed meanwhile): it stays as it was
                found = connection.execute("SELECT state FROM notify_outbox WHERE id = ?", (delivery.id,)).fetchone()
                state = found[0] if found else "failed"
                logger.warning("notifications: delivery %d was sent when it was %s already", delivery.id, state)
        return state

    def replay(self, delivery: int) -> Delivery:
        """A failed (or delivered) delivery queued again, due now, with its schedule from the start."""
        with self._db.transaction(durable=True) as connection:
            changed = connection.execute(
                "UPDATE notify_outbox SET state = 'pending', attempts = 0, next_at = ?, done_at = NULL WHERE id = ?"
                " AND state != 'pending' AND destination IN (SELECT name FROM notify_destinations"
                " WHERE created_at <= notify_outbox.created_at)",  # not one added later under its name
                (time.time(), delivery)).rowcount
        found = self.get(delivery)
        if not changed and found.state != "pending":
            raise NotFound(f"delivery {delivery} cannot be replayed: its destination '{found.destination}' is gone "
                           "(a destination added since under that name is another)")
        return found


def _delivery(row: Any) -> Delivery:
    return Delivery(row["id"], Event.from_dict(json.loads(row["event"])), row["destination"], row["state"],
                    row["attempts"], row["next_at"], row["created_at"], row["last_status"], row["last_error"],
                    row["done_at"])


def _iso(at: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    except (OverflowError, OSError, ValueError):  # a time past what the platform can write
        return "9999-12-31T23:59:59Z"

