"""The audit trail of one file's versions: every version the file holds has the event that made it.

A write records its event (durably, pending) before it replaces the file and marks it done after;
whoever next holds the file's lock settles what a writer that died in between left, by whether
its staged file is still there; a version on disk that no event made (a hand edit) is recorded as
such. Call everything here with the file's write lock held.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

from apphub.audit.log import Actor, AuditLog, Change
from apphub.errors import ApphubError, DataDirError
from apphub.store.atomic import Replacement
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
                audit_changes: list[Change], prepare: Callable[[], Replacement]) -> None:
        """Replace the file with `written` (staged by `prepare`), its audit event recorded first.

        The new file is staged and the event flushed to disk (pending, naming the staged file)
        before the rename; the event is marked done after the folder is flushed. Anything that
        fails after the rename (the flush, marking the event) undoes it: the previous file back,
        the new one back under its staged name, the write reported failed. A process that dies
        anywhere leaves a pending event that `settle` resolves by whether the staged file is
        still there.
        """
        replacement = prepare()
        try:
            event = self._audit.begin(actor, action, audit_changes, file=self.name, version_before=current.version,
                                      version_after=written.version, marker=str(replacement.staged.absolute()))
        except BaseException:
            replacement.discard()
            raise
        try:
            replacement.swap()
        except BaseException as exc:
            if replacement.swapped and not self._undo(replacement, written, exc):
                self._made_after_all(event, replacement)
                raise DataDirError(f"{self.name} now holds the new version {written.version} (audited as this "
                                   f"write), but it may not survive a power loss: {exc}") from exc
            self._not_made(event, replacement, exc)
            raise
        try:
            self._audit.complete(event)
        except BaseException as exc:
            if not self._undo(replacement, written, exc):
                self._made_after_all(event, replacement)
                return  # made and durable; its event is settled as done by the next holder of the lock
            self._not_made(event, replacement, exc)
            raise
        replacement.finish()

    def _undo(self, replacement: Replacement, written: Snapshot, cause: BaseException) -> bool:
        try:
            replacement.undo()
            return True
        except DataDirError as exc:
            logger.error("%s: cannot undo version %s after %s: %s", self.name, written.version, cause, exc)
            return False

    def _made_after_all(self, event: int, replacement: Replacement) -> None:
        """The rename stands and could not be undone: the write is made; its event says so when it can."""
        replacement.finish()
        with contextlib.suppress(ApphubError):  # else settle finds the staged file gone: done
            self._audit.complete(event)

    def _not_made(self, event: int, replacement: Replacement, cause: BaseException) -> None:
        """The write was not made: its event abandoned, the staged file removed; or, if even the
        abandon fails (a full disk), the staged file kept, for `settle` to find."""
        try:
            self._audit.abandon(event, f"{type(cause).__name__}: {cause}")
        except ApphubError:
            replacement.discard(keep_staged=True)
            return
        replacement.discard()

    def settle(self) -> None:
        """Resolve the events dead writers left pending: a write whose staged file is still there
        was not made (abandoned, and the file removed), one whose staged file is gone was made
        (done). Call it with the lock held (a write in flight has a pending event too). It raises
        if it cannot record that (a full disk): a write must not begin while an earlier one is
        unsettled."""
        for event, marker in self._audit.pending(self.name):
            if marker is not None and os.path.lexists(marker):
                self._audit.abandon(event, f"stopped before replacing {self.name}")
                with contextlib.suppress(OSError):
                    os.unlink(marker)
            else:
                self._audit.complete(event)
                logger.info("%s: the write of audit event %d was made before its writer stopped; recorded as done",
                            self.name, event)

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
