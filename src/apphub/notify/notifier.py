"""Notifications for one data folder: the destinations, the outbox, the sender, and what turns a
write or a sync round into an event. The server starts the sender; a CLI command only queues (the
server, or the next one started, delivers).

What publishing costs the change it tells of: one query of the destinations' filters (no secret
decrypted) and, when one wants the event, one SQLite transaction. Sending happens elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from apphub.audit.log import Actor
from apphub.db import Database
from apphub.notify.destinations import Destinations, Kind
from apphub.notify.events import Event, settings_changed, sync_applied, test_event
from apphub.notify.outbox import Outbox
from apphub.notify.sender import Render, Sender
from apphub.store.inistore import WriteResult
from apphub.store.secrets import SecretBox
from apphub.sync.apply import ApplyReport

logger = logging.getLogger("apphub.notify")

# Results of a service in a round worth telling of (`unchanged` and `skipped` are not news).
NEWS = frozenset({"applied", "failed"})


class Notifier:
    def __init__(self, database: Path, box: SecretBox, render: Render | None = None) -> None:
        self._db = Database(database)  # its own connection: the sender's threads do not queue behind the audit's
        self.destinations = Destinations(self._db, box)
        self.outbox = Outbox(self._db)
        self._render = render or _default_render
        self.sender: Sender | None = None

    def start(self) -> None:
        """Deliver in the background (the server); what is pending from before goes out first."""
        self.sender = Sender(self.outbox, self.destinations, self._render)
        self.sender.start()

    def close(self) -> None:
        if self.sender is not None:
            self.sender.stop()
        self._db.close()

    def publish(self, event: Event) -> list[int]:
        """Queue `event` for every destination that wants it; the deliveries made. Never raises:
        a notification that cannot be queued must not fail the change it tells of."""
        try:
            wanted = self.destinations.wanting(event)
            made = self.outbox.enqueue(event, wanted) if wanted else []
        except Exception:
            logger.exception("notifications: the event %s (%s) could not be queued", event.id, event.type)
            return []
        if made and self.sender is not None:
            self.sender.wake()
        return made

    def test(self, name: str) -> list[int]:
        """Queue a test event for the destination `name` alone (DestinationNotFound if none)."""
        self.destinations.get(name)
        made = self.outbox.enqueue(test_event(name), [name])
        if self.sender is not None:
            self.sender.wake()
        return made

    # -- what the store and the sync engine report ------------------------------------------

    def on_write(self, file: str, result: WriteResult, actor: Actor, message: str | None) -> None:
        if result.changed:
            self.publish(settings_changed(actor, file, result.changes, result.snapshot.version, message=message))

    def on_report(self, report: ApplyReport) -> None:
        news = [outcome.to_dict() for outcome in report.outcomes.values() if outcome.result in NEWS]
        if news:
            timings = {name: round(seconds * 1000, 3) for name, seconds in report.timings.items()}
            self.publish(sync_applied(report.version, news, timings))


def _default_render(kind: Kind, events: Sequence[Event]) -> dict[str, object]:
    from apphub.notify.formats import body_for_many  # the formats are only needed where something is sent

    return body_for_many(kind, events)
