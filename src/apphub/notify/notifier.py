"""Notifications for one data folder: the destinations, the outbox, the sender, and what turns a
write, a sync round, a history push or an initialiser's run into an event. The server starts the
sender; a CLI command only queues (the server, or the next one started, delivers).

What publishing costs the change it tells of: choosing the event's recipients from the
destinations' filters held in memory (Destinations.filters), then, with the sender running, handing
both over; without it (a CLI command), one SQLite transaction. Sending happens elsewhere.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apphub.audit.log import Actor, AuditEvent, AuditLog, AuditQuery, normalise_time
from apphub.db import Database
from apphub.notify import events
from apphub.notify.destinations import Destinations, Kind
from apphub.notify.events import Event, iso_time
from apphub.notify.outbox import RETAIN_S, Outbox
from apphub.notify.sender import Render, Sender
from apphub.store.inistore import WriteResult
from apphub.store.secrets import SecretBox
from apphub.sync.apply import ApplyReport

logger = logging.getLogger("apphub.notify")

# Results of a service in a round worth telling of (`unchanged` and `skipped` are not news).
NEWS = frozenset({"applied", "failed"})
# The files whose writes are told (IniStore.after_change): config.ini, its overlays, system.ini, env.ini.
TOLD_FILES = re.compile(r"config(\.[^./]+)?\.ini|system\.ini|env\.ini")
CATCH_UP_PAGE = 500


class Notifier:
    def __init__(self, database: Path, box: SecretBox, audit: AuditLog, render: Render | None = None) -> None:
        self._db = Database(database)  # its own connection: the sender's threads do not queue behind the audit's
        self._audit = audit
        self.destinations = Destinations(self._db, box)
        self.outbox = Outbox(self._db)
        self._render = render or _default_render
        self.sender: Sender | None = None
        # Which files' writes the sync reports on (set when a sync engine runs): a chat destination
        # holds their change until that report comes, to send both as one message.
        self.synced: Callable[[str], bool] = lambda file: False
        self._lock = threading.Lock()
        self._last_version: str | None = None  # of the last sync report heard
        # (event, its recipients) to queue, in the sender's thread; an event leaves once queued (flush)
        self._told: collections.deque[tuple[Event, tuple[str, ...]]] = collections.deque()
        self._flushing = threading.Lock()
        self._drift_told: dict[str, tuple[str, ...]] = {}  # service -> the edit last told of

    def start(self) -> None:
        """Deliver in the background (the server); what is pending from before goes out first,
        with the writes a process made but died before queuing their event (catch_up)."""
        try:
            self.catch_up()
        except Exception:  # the server must start; what could not be caught up is in the log
            logger.exception("notifications: the writes since the last start could not be looked at")
        self.sender = Sender(self.outbox, self.destinations, self._render, before_dispatch=self.flush)
        self.sender.start()

    def catch_up(self) -> list[Event]:
        """Queue the event of every write since the last start that none tells of: a process
        killed between its write (durable) and the event's queuing (its own transaction, just
        after). The events are built from the audit log, as the write would have built them.
        The events queued."""
        cursor = self.outbox.audit_cursor()
        oldest = iso_time(time.time() - RETAIN_S)  # older writes' deliveries may be pruned since: not told again
        made: list[AuditEvent] = []
        before: int | None = None
        while page := self._audit.query(AuditQuery(since=oldest, after_id=cursor, before_id=before,
                                                   limit=CATCH_UP_PAGE)):
            made += page
            before = page[-1].id
        told = self.outbox.told_audit_events(cursor)
        filters = self.destinations.filters()
        since = {found.name: normalise_time(found.wanting_since) for found in filters}
        queued = []
        for write in sorted(made, key=lambda event: event.id):
            if write.id in told or not _is_told_write(write):
                continue
            event = events.settings_changed(Actor(write.actor, write.source, write.request_id), write.file or "",
                                            write.changes, write.version_after, message=write.message,
                                            audit_event=write.id, at=write.at)
            wanted = tuple(found.name for found in filters if found.wants(event) and since[found.name] <= write.at)
            if self._queue(event, wanted):
                queued.append(event)
                logger.warning("notifications: the event of audit event %d (%s) was queued at start: the process "
                               "that wrote it stopped first", write.id, write.file)
        if made:
            self.outbox.move_audit_cursor(max(event.id for event in made))
        return queued

    def close(self) -> None:
        if self.sender is not None:
            self.sender.stop()
            self.flush()  # what the last moments told, queued for the next start
        self._db.close()

    def publish(self, event: Event) -> None:
        """Queue `event` for every destination that wants it now. Never raises: a notification
        that cannot be queued must not fail the change it tells of.

        The recipients are chosen here, in the publishing thread, from the destinations as they
        are at this moment: one enabled right after a change does not get its event, and one
        paused right before does not get it later. With the sender running (the server), the
        event and its recipients are then only handed over, and queued by the sender's thread: a
        write or a sync round pays for no outbox transaction. One that would be lost with the
        process is a write's, and the audit log holds it (catch_up). A change the sync will report
        on pauses the sender until the report: the round has the interpreter and the database to
        itself."""
        try:
            recipients = self._recipients(event)
            if self.sender is None:
                self._queue(event, recipients)
                return
            awaits_sync = events.awaits_sync(event)
            if awaits_sync:
                self.sender.pause()  # before the hand-over: not queued before the round reports
            if recipients:
                self._told.append((event, recipients))
                if not awaits_sync:
                    self.sender.wake()
        except Exception:
            logger.exception("notifications: the event %s (%s) could not be queued", event.id, event.type)

    def flush(self) -> None:
        """Queue what was handed over (the sender's thread, before each round), in order."""
        with self._flushing:  # the sender's thread, or close() after it stopped (or gave up waiting for it)
            while self._told:
                event, recipients = self._told[0]
                try:
                    self._queue(event, recipients)
                except Exception:
                    logger.exception("notifications: the event %s (%s) could not be queued", event.id, event.type)
                self._told.popleft()  # only now: _recipients looks for it here until it is in the outbox

    def _recipients(self, event: Event) -> tuple[str, ...]:
        """The destinations that want `event`; and for a sync event, also the chat destinations
        holding a change for it (the end of their change set, whatever they filter on)."""
        filters = self.destinations.filters()
        wanted = [found.name for found in filters if found.wants(event)]
        if event.type in events.SYNC_TYPES:
            holders = {found.name for found in filters if found.enabled and found.holds_change_sets()}
            # The hand-over first, then the outbox: an event moves from the one to the other, never
            # out of both (flush), so it is seen in one of them.
            holding = {name for told, recipients in list(self._told) if events.awaits_sync(told)
                       for name in recipients if name in holders}
            holding |= self.outbox.awaiting_sync()
            wanted += sorted(holding - set(wanted))
        return tuple(wanted)

    def test(self, name: str) -> list[int]:
        """Queue a test event for the destination `name` alone (DestinationNotFound if none)."""
        self.destinations.get(name)
        return self._queue(events.test_event(name), [name])

    def _queue(self, event: Event, destinations: Sequence[str]) -> list[int]:
        made = self.outbox.enqueue(event, destinations) if destinations else []
        if made and self.sender is not None:
            self.sender.wake()
        return made

    # -- what the store, the sync engine, the history and the initialisers report ------------

    def on_write(self, file: str, result: WriteResult, actor: Actor, message: str | None) -> None:
        if result.changed:
            self.publish(events.settings_changed(actor, file, result.changes, result.snapshot.version,
                                                 message=message, sync_expected=self.synced(file),
                                                 audit_event=result.audit_event))

    def on_report(self, report: ApplyReport) -> None:
        """A sync round: its drift, then how the services took the version (one event, also when
        no service needed a change: it ends the change set a chat destination holds)."""
        try:
            self._tell_round(report)
        finally:
            if self.sender is not None:
                self.sender.resume()

    def _tell_round(self, report: ApplyReport) -> None:
        if report.refused:
            return  # the refusal is told where it is decided (settings.refused)
        repaired = [name for name in report.drift if _result(report, name) == "applied"]
        for event in self._drift_news(report, repaired):
            self.publish(event)
        news = [outcome.to_dict() for name, outcome in report.outcomes.items()
                if outcome.result in NEWS and name not in repaired]
        with self._lock:
            first, new_version = self._last_version is None, report.version != self._last_version
            self._last_version = report.version
        # The first round after a start tells only if a change waits for it (it is no news otherwise).
        if news or (new_version and not first) or (first and (_awaiting_in(self._told)
                                                               or self.outbox.awaiting_sync())):
            timings = {name: round(seconds * 1000, 3) for name, seconds in report.timings.items()}
            self.publish(events.sync_applied(report.version, news, timings))

    def _drift_news(self, report: ApplyReport, repaired: Sequence[str]) -> list[Event]:
        """Drift events, each edit told once: a periodic check finds a reported edit again."""
        with self._lock:
            for name, outcome in report.outcomes.items():
                if outcome.result == "applied" and name not in report.drift:
                    self._drift_told.pop(name, None)  # its files are apphub's again
            fresh = {name: paths for name, paths in report.drift.items()
                     if name in repaired or self._drift_told.get(name) != tuple(paths)}
            for name, paths in fresh.items():
                self._drift_told[name] = () if name in repaired else tuple(paths)
        return events.drift(fresh, repaired, report.version) if fresh else []

    def on_push_failed(self, remote: str, branch: str | None, error: str, failures: int) -> None:
        """The history push failed: told on the first failure in a row, not on every retry."""
        if failures == 1:
            self.publish(events.push_failed(remote, branch, error, failures))

    def on_init_run(self, run: Mapping[str, Any], previous_state: str | None) -> None:
        """An initialiser's run ended: told when it failed and the run before it did not."""
        if run.get("state") == "failed" and previous_state != "failed":
            self.publish(events.init_failed(run))


def _awaiting_in(told: collections.deque[tuple[Event, tuple[str, ...]]]) -> bool:
    return any(events.awaits_sync(event) for event, _ in list(told))


def _is_told_write(event: AuditEvent) -> bool:
    """Whether on_write tells of this audit event: a version of a settings file with changes (a
    hand edit found by a write, `settings.unaudited`, is left to the sync, which tells of it)."""
    return (event.version_after is not None and bool(event.changes) and event.action != "settings.unaudited"
            and TOLD_FILES.fullmatch(event.file or "") is not None)


def _result(report: ApplyReport, service: str) -> str | None:
    outcome = report.outcomes.get(service)
    return outcome.result if outcome is not None else None


def _default_render(kind: Kind, found: Sequence[Event]) -> dict[str, object]:
    from apphub.notify.formats import body_for_many  # the formats are only needed where something is sent

    return body_for_many(kind, found)
