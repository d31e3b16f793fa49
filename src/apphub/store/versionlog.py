"""The audit trail of one file's versions: every version the file holds has the event that made it.

A write records its event (durably, pending) before it replaces the file, and it counts as done from
the rename on (the next write marks it); whoever next holds the file's lock settles what a writer
that died in between left, by its staged file (see Replacement: a write is made while its staged
name is gone or the file holds its new version); a version on disk that no event made (a hand edit)
is recorded as such. Call everything here with the file's write lock held.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath

from apphub.audit.log import Actor, AuditLog, Change
from apphub.errors import ApphubError, DataDirError
from apphub.store.atomic import Replacement, final_path, remove_stale_temporaries, temporary_pid
from apphub.store.snapshot import Snapshot, changed_keys, recordable, version_changes, version_of

logger = logging.getLogger("apphub.store")

# Who a change nobody made through apphub is attributed to.
OUTSIDE_ACTOR = Actor("file", "file")


class VersionLog:
    """The events of the file at `path` in the audit log."""

    def __init__(self, audit: AuditLog, path: Path) -> None:
        self._audit = audit
        self._path = path
        self.name = path.name
        # Temporaries nobody's event names may be left (a writer killed while staging, a failed
        # write that could not remove its own): removed by the first settle of a process, and after those.
        self._leftovers = True
        audit.judge_writes(path, self.is_made)

    def staged_file(self, marker: str) -> Path | None:
        """The staged file an event's marker names: a name in the folder of the file its writes
        replace now (so a data folder moved or mounted elsewhere since is still right; markers were
        once absolute paths, of which the name counts). None if it is no staged file of ours."""
        target = final_path(self._path)
        name = PurePath(marker).name
        return target.parent / name if temporary_pid(target.name, name) is not None else None

    def is_made(self, marker: str | None, version_after: str | None) -> bool:
        """Whether the write a pending event describes was made: its staged file is gone (renamed
        into place), or an undo has put the staged name back (an empty file) but not yet the
        previous version (the file holds the new one). A staged file with the new bytes in it was
        never renamed: not made, even if the file holds the same bytes (a hand edit since)."""
        staged = self.staged_file(marker) if marker is not None else None
        if staged is None:
            return False
        try:
            if os.lstat(staged).st_size != 0:
                return False
        except FileNotFoundError:
            return True
        except OSError:
            return False
        try:
            return version_of(final_path(self._path).read_bytes()) == version_after
        except OSError:
            return False

    def staged_files_left(self) -> bool:
        """Whether a pending event's staged file is there: a write not made (a writer stopped before
        its rename), or the name an undo put back. `settle` resolves them."""
        staged = (self.staged_file(write.marker) for write in self._audit.pending(self.name) if write.marker)
        return any(path is not None and os.path.lexists(path) for path in staged)

    def replace(self, current: Snapshot, written: Snapshot, actor: Actor, action: str,
                audit_changes: list[Change], prepare: Callable[[], Replacement], *, made: Sequence[int] = (),
                message: str | None = None, warnings: Sequence[str] = ()) -> int:
        """Replace the file with `written` (staged by `prepare`), its audit event recorded first;
        the event's id.

        The new file is staged and the event flushed to disk (pending, naming the staged file)
        before the rename, so nothing can fail after the rename that would make the write
        untrue: from the rename on, the event counts as done (the staged file is gone, see
        AuditLog), and marking it done is bookkeeping. Only a failed flush of the folder undoes
        the rename (the previous file back, the new one back under its staged name) and fails the
        write. The event is marked done by the next write's transaction (`made`: the events
        `settle(mark=False)` found made), so that a write commits to the database once. A process
        that dies anywhere leaves an event that `settle` resolves by whether the staged file is
        still there.
        """
        try:
            return self._replace(current, written, actor, action, audit_changes, prepare, made, message, warnings)
        except BaseException:
            self._leftovers = True  # a staged file the failure could not remove: the next settle does
            raise

    def _replace(self, current: Snapshot, written: Snapshot, actor: Actor, action: str,
                 audit_changes: list[Change], prepare: Callable[[], Replacement], made: Sequence[int],
                 message: str | None, warnings: Sequence[str]) -> int:
        replacement = prepare()
        marker = replacement.staged.name
        try:
            event = self._audit.begin(actor, action, audit_changes, file=self.name, version_before=current.version,
                                      version_after=written.version, marker=marker, complete=made,
                                      message=message, content=recordable(written), warnings=warnings)
        except BaseException as exc:
            # Committed or not (Ctrl-C may come right after the commit), an event naming the staged
            # file says "not made" while the file is there: abandon it before the file goes.
            self._not_begun(marker, replacement, exc)
            raise
        try:
            replacement.swap()
        except BaseException as exc:
            if replacement.swapped and not self._undo(replacement, written, exc):
                raise DataDirError(f"{self.name} now holds the new version {written.version} (audited as this "
                                   f"write), but it may not survive a power loss: {exc}") from exc
            self._not_made(event, replacement, exc)
            raise
        return event

    def _undo(self, replacement: Replacement, written: Snapshot, cause: BaseException) -> bool:
        try:
            replacement.undo()
            return True
        except DataDirError as exc:
            logger.error("%s: cannot undo version %s after %s: %s", self.name, written.version, cause, exc)
            replacement.discard()  # the new version is in place (the rename back failed): its staged name goes
            return False

    def _not_begun(self, marker: str, replacement: Replacement, cause: BaseException) -> None:
        """The write's event may or may not be committed: abandoned if it is, then the staged file
        removed; or, if the abandon fails, the staged file kept (for settle: it says not made)."""
        try:
            self._audit.abandon_marked(self.name, marker, f"{type(cause).__name__}: {cause}")
        except BaseException as exc:
            if isinstance(exc, ApphubError):
                return  # the error to tell is the one that stopped the write
            raise
        replacement.discard()

    def _not_made(self, event: int, replacement: Replacement, cause: BaseException) -> None:
        """The write was not made: its event abandoned, the staged file removed; or, if even the
        abandon fails (a full disk), the staged file kept, for `settle` to find."""
        try:
            self._audit.abandon(event, f"{type(cause).__name__}: {cause}")
        except ApphubError:
            return
        replacement.discard()

    def settle(self, *, mark: bool = True) -> list[int]:
        """Resolve the events earlier writers left pending (see is_made): a write not made is
        abandoned (a dead writer's, or one whose abandon failed), a write made is marked done
        (unless `mark` is false: then the caller's next transaction does it); then their staged
        files go. Returns the events found made. Call it with the lock held (a write in flight
        has a pending event too). It raises if it cannot record what it found (a full disk)."""
        made = []
        for write in self._audit.pending(self.name):
            staged = self.staged_file(write.marker) if write.marker is not None else None
            if self.is_made(write.marker, write.version_after):
                made.append(write.id)
            else:
                self._audit.abandon(write.id, f"stopped before replacing {self.name}")
            if staged is not None:  # the new bytes never put in place, or the name an undo put back
                with contextlib.suppress(OSError):
                    os.unlink(staged)
        if made and mark:
            self._audit.complete(made)
        if self._leftovers:  # every event is settled: a temporary left now is nobody's
            remove_stale_temporaries(self._path)
            self._leftovers = False
        return made

    def unjudged_keys(self, current: Snapshot, known: Snapshot | None) -> frozenset[tuple[str, str]] | None:
        """The keys a change made outside apphub (a hand edit) changed in `current`, which no write
        through apphub has judged: none when an event made `current`; None when they cannot be told
        (`known`, the version this process last wrote or accounted for, is not the last audited one)."""
        if known is not None and known.version == current.version:
            return frozenset()
        audited = self._audit.last_version(self.name)
        if audited is None or audited == current.version:
            return frozenset()
        if known is None or known.version != audited:
            return None
        return frozenset(changed_keys(known, current) or ())

    def account_for(self, current: Snapshot, previous: Snapshot | None = None, action: str = "settings.unaudited",
                    message: str | None = None, *, made: Sequence[int] | None = None,
                    warnings: Sequence[str] = ()) -> int | None:
        """Record a version on disk that no audit event produced, so the chain has no gap: a hand
        edit (or a writer of an apphub older than the pending events). Call `settle` first; `made`:
        what it returned, if it did not mark them. The event recorded, if one was.
        """
        audited = self._audit.last_version(self.name, made=made)
        if audited is None or audited == current.version:
            return None
        known = previous if previous is not None and previous.version == audited else None
        return self._audit.record(
            OUTSIDE_ACTOR,
            action,
            version_changes(known, current) if known is not None else [],
            file=self.name,
            version_before=audited,
            version_after=current.version,
            message=message or f"{self.name} changed outside apphub (a hand edit)",
            content=recordable(current),
            warnings=warnings,
        )
