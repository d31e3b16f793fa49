"""The audit trail of one file's versions: every version the file holds has the event that made it.

A write records its event (durably, pending) before it replaces the file and marks it done after;
whoever next holds the file's lock settles what a writer that died in between left; a version on
disk that no event made (a hand edit) is recorded as such. Call everything here with the file's
write lock held.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from apphub.audit.log import Actor, AuditLog, Change
from apphub.errors import ApphubError
from apphub.store.snapshot import Snapshot, version_changes

logger = logging.getLogger("apphub.store")

# Who a change nobody made through apphub is attributed to.
OUTSIDE_ACTOR = Actor("file", "file")


class VersionLog:
    """The events of one file (`name`) in the audit log."""

    def __init__(self, audit: AuditLog, name: str) -> None:
        self._audit = audit
        self.name = name

    def replace(self, current: Snapshot, written: Snapshot, actor: Actor, action: str,
                audit_changes: list[Change], write: Callable[[], None]) -> None:
        """Replace the file with `written` (by calling `write`), its audit event recorded first:
        after the replace nothing can fail that would make the write untrue.

        The event is on disk (pending) before the file changes; the file is replaced and flushed
        all or nothing (atomic_write puts the previous bytes back if the flush fails); then the
        event is marked done. A process dying in between leaves a pending event that `settle`
        resolves by what the file holds; an error before the replace abandons it.
        """
        event = self._audit.begin(actor, action, audit_changes, file=self.name, version_before=current.version,
                                  version_after=written.version)
        try:
            write()
        except BaseException as exc:
            with contextlib.suppress(ApphubError):  # a full disk may refuse this too: settle will do it
                self._audit.abandon(event, f"{type(exc).__name__}: {exc}")
            raise
        try:
            self._audit.complete(event)
        except ApphubError as exc:
            # The write is made and durable, and so is its event, which lists as done while the file
            # holds its version; the next holder of the lock marks it. Saying it failed would be untrue.
            logger.warning("%s version %s written; its audit event %d stays pending until the next write: %s",
                           self.name, written.version, event, exc)

    def settle(self, version_on_disk: str) -> None:
        """A pending event is done if the file holds the version it wrote, else it was not made.
        Call it with the lock held (a write in flight has a pending event too). It raises if it
        cannot record that (a full disk): a write must not begin while an earlier one is unsettled."""
        for event, version_after in self._audit.pending(self.name):
            if version_after == version_on_disk:
                self._audit.complete(event)
                logger.info("%s: the write of audit event %d was made before its writer stopped; recorded as done",
                            self.name, event)
            else:
                self._audit.abandon(event, f"{self.name} was found at version {version_on_disk}")

    def account_for(self, current: Snapshot, previous: Snapshot | None = None, action: str = "settings.unaudited",
                    message: str | None = None) -> None:
        """Record a version on disk that no audit event produced, so the chain has no gap: a hand
        edit (or a writer of an apphub older than the pending events). Call `settle` first.
        """
        audited = self._audit.last_version(self.name)
        if audited is not None and audited != current.version:
            known = previous if previous is not None and previous.version == audited else None
            self._audit.record(
                OUTSIDE_ACTOR,
                action,
                version_changes(known, current) if known is not None else [],
                file=self.name,
                version_before=audited,
                version_after=current.version,
                message=message or f"{self.name} changed outside apphub (a hand edit)",
            )
