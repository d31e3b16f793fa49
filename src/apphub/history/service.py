"""The history of one data folder: its repository, recorder and index behind one small interface.

Reads record what waits first, so a version acknowledged a moment ago is in every answer. The
server starts it (`start`: a damaged repository is moved aside, a config.ini that is not the last
commit is committed as recovered); the CLI only records and reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from apphub.audit.log import AuditLog
from apphub.db import Database
from apphub.errors import ApphubError, HistoryError, IniParseError, VersionNotFound
from apphub.history.gitrepo import GitRepository
from apphub.history.index import HistoryEntry, HistoryIndex, HistoryQuery
from apphub.history.inidiff import KeyChange, SecretRule, file_diff
from apphub.history.recorder import CONFIG, STORE_FILES, Recorder, versioned_system_files
from apphub.paths import DataDir
from apphub.store.atomic import exclusive_lock
from apphub.store.check import field_errors
from apphub.store.inistore import IniStore
from apphub.store.snapshot import Snapshot, recordable

logger = logging.getLogger("apphub.history")

SYSTEM = "system.ini"

LOCK_WAIT_S = 30.0


@dataclass(frozen=True)
class VersionDiff:
    """Two versions of one file: per key and as a unified diff, secrets masked."""

    file: str
    old: HistoryEntry | None
    new: HistoryEntry | None  # None: the file as it is now, not yet a commit
    new_version: str
    changes: list[KeyChange]
    unified: str

    @property
    def equal(self) -> bool:
        return not self.changes and not self.unified

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "from": {"commit": self.old.commit if self.old else None,
                     "version": self.old.config_version if self.old else None},
            "to": {"commit": self.new.commit if self.new else None, "version": self.new_version},
            "equal": self.equal,
            "changes": [change.as_dict() for change in self.changes],
            "unified": self.unified,
        }


class History:
    """Commits every accepted version; answers history, show and diff."""

    def __init__(self, data: DataDir, audit: AuditLog, stores: Mapping[str, IniStore]) -> None:
        self.data = data
        self.path = data.state_dir / "history"
        self._lock_path = data.lock_dir / "history.lock"
        self._stores = stores
        # The stores that come and go (environments' overlays): settled and committed like the others.
        self.more_stores: Callable[[], Mapping[str, IniStore]] = dict
        self._db = Database(data.database)  # the history's own connection
        self.index = HistoryIndex(self._db)
        self.audit = audit
        self._recorder = Recorder(data, audit, self.index, self._secret_rule)
        self._repository: GitRepository | None = None
        self.problem: str | None = None  # what start found wrong with the repository, for the status
        self.last_error: str | None = None  # why the last record failed (None once one works)
        self.listeners: list[Callable[[], None]] = []  # told after new commits (the pusher)
        self._seen: dict[str, str] = {}  # the version of each store file last accounted for
        self.wakers: list[Callable[[], None]] = []  # told after each write (the history process)

    def close(self) -> None:
        self._db.close()

    # -- writing --------------------------------------------------------------------------------

    def start(self) -> None:
        """At the server's start: open the repository (a damaged one moved aside, intact, and a new
        one begun), commit what waits, then the files on disk that are not the last commit."""
        with self._locked():
            self._repository = self._open(move_damaged=True)
            self._recorder.record(self._repository)
            self._recover(self._repository)
        self._told()

    def record(self) -> int:
        """Commit every version waiting (and changed system files); the number of commits made."""
        try:
            with self._locked():
                self._account_for_hand_edit(SYSTEM)
                for store in [*self._stores.values(), *self.more_stores().values()]:
                    store.settle_made()  # the history commits only what is done: see versions_to_record
                made = self._recorder.record(self.repository())
        except ApphubError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        if made:
            self._checkpoint()
            self._told()
        return made

    def _checkpoint(self) -> None:
        """Move the database's write-ahead log into it now, from here, without waiting on anyone
        (PASSIVE): the history's rows make the log grow faster, and SQLite checkpoints from
        whichever connection's commit finds it over 1,000 pages (flushing the database file):
        left to them, that fell on a write's request now and then (its p99)."""
        try:
            self._db.query("PRAGMA wal_checkpoint(PASSIVE)")
        except ApphubError as exc:
            logger.debug("history: checkpoint skipped: %s", exc)

    def _account_for_hand_edit(self, name: str) -> None:
        """A hand edit of system.ini (the operator's way to change it) is audited, so committed, as
        the sync thread does for config.ini: if it parses, validates and holds no plaintext secret."""
        store = self._stores[name]
        try:
            snapshot = store.snapshot()
            if snapshot.version == self._seen.get(name):
                return  # looked at already (a write's version, or one accounted for)
            if recordable(snapshot) is None or field_errors(snapshot.document, store.schema, snapshot.box, name):
                return
            store.account_for_outside_change(None)  # nothing when an event made this version
            self._seen[name] = snapshot.version
        except ApphubError as exc:  # where a parse error is, never the line (a token may be on it)
            logger.debug("history: %s not accounted for now: %s", name,
                         exc.public if isinstance(exc, IniParseError) else exc)

    def record_files(self, files: Mapping[str, bytes | None], author: str, source: str,
                     message: str | None = None) -> str | None:
        """Commit files written outside a store (a rollback of services.yaml); the commit, or None.
        Call `record` before writing them, or they are committed as the files on disk."""
        with self._locked():
            commit = self._recorder.record_files(self.repository(), files, author, source, message)
        if commit:
            self._told()
        return commit

    def compact(self) -> None:
        """`git gc --auto` (the recorder also runs it every 1,000 commits; this is for a server that
        restarts more often than that)."""
        with self._locked():
            self.repository().compact()

    def notify(self) -> None:
        """A write was made: the history process records it soon (history/worker.py)."""
        for waker in self.wakers:
            waker()

    def _told(self) -> None:
        for listener in self.listeners:
            listener()

    def repository(self) -> GitRepository:
        if self._repository is None:
            self._repository = self._open(move_damaged=False)
        return self._repository

    def _locked(self) -> Any:
        return exclusive_lock(self._lock_path, timeout=LOCK_WAIT_S, what="the history")

    def _open(self, *, move_damaged: bool) -> GitRepository:
        if not self.path.exists():
            if self.index.last() is not None:
                self.problem = f"the history repository {self.path} was missing; a new one starts from now"
                logger.error("history: %s", self.problem)
                self.index.clear()
            return GitRepository.create(self.path)
        try:
            return GitRepository.open_checked(self.path)
        except HistoryError as exc:
            if not move_damaged:
                raise HistoryError(f"{exc} (`apphub serve` moves it aside and starts a new one)") from exc
            aside = self.path.with_name(f"history.damaged-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
            shutil.move(self.path, aside)
            self.problem = (f"the history repository was damaged ({exc}); it was moved, intact, to {aside}, "
                            "and a new one starts from the current configuration")
            logger.error("history: %s", self.problem)
            self.index.clear()
            return GitRepository.create(self.path)

    def _recover(self, repository: GitRepository) -> None:
        """Commit config.ini and system.ini as they are on disk if the last commit does not hold
        them (a first start with history, a repository begun again, a hand edit made while apphub
        was stopped): marked as recovered. A file with a plaintext secret waits for its encryption.
        Each file under its write lock, after what its writers did is committed: a CLI write landing
        meanwhile is no hand edit (it is committed as itself, in its place)."""
        first = repository.head() is None
        if first:
            files: dict[str, bytes | None] = {name: data for name in STORE_FILES
                                              if (data := self._recoverable(name)) is not None}
            files.update(versioned_system_files(self.data))
            self._recorder.record_files(repository, files, "file", "file",
                                        "history begun from the current configuration")
            return
        for name in STORE_FILES:
            store = self._stores[name]
            store.settle_made()
            with store.write_lock(LOCK_WAIT_S):
                self._recorder.record(repository)
                if self.audit.pending(name):
                    continue  # a write was made since: no hand edit to recover
                data = self._recoverable(name)
                commit = self._recorder.record_files(repository, {name: data}, "file", "file",
                                                     recovered=True) if data is not None else None
            if commit is not None:
                logger.warning("history: %s on disk was not the last commit; committed as recovered (%s)",
                               name, commit[:12])

    def _recoverable(self, name: str) -> bytes | None:
        """The bytes of a store's file if they may be committed: they parse, validate, and hold no
        plaintext secret."""
        store = self._stores[name]
        try:
            snapshot = store.snapshot()
            problems = field_errors(snapshot.document, store.schema, snapshot.box, name, plaintext_secrets=False)
        except ApphubError as exc:  # where a parse error is, never the line (a password may be on it)
            reason = exc.public if isinstance(exc, IniParseError) else str(exc)
            logger.warning("history: %s is not committed at start: %s", name, reason)
            return None
        if problems:  # a hand edit the sync thread refuses is no accepted version
            logger.warning("history: %s is not committed at start: it does not validate (%d problems; "
                           "`apphub check` lists them)", name, len(problems))
            return None
        return recordable(snapshot)

    # -- reading --------------------------------------------------------------------------------

    def _current(self) -> None:
        """Record what waits, so that a read sees every version acknowledged so far. A history that
        cannot record now answers from what it has (the status says what waits, and why)."""
        if not self.audit.versions_waiting():
            return
        try:
            self.record()
        except ApphubError as exc:
            logger.error("history: versions wait to be committed: %s", exc)

    def page(self, query: HistoryQuery) -> tuple[list[HistoryEntry], int | None]:
        """Commits newest first, and the cursor of the next page (None: this was the last)."""
        self._current()
        entries = self.index.page(dataclasses.replace(query, limit=query.limit + 1))
        if len(entries) > query.limit:
            return entries[: query.limit], entries[query.limit - 1].seq
        return entries, None

    def resolve(self, reference: str, *, with_changes: bool = False) -> HistoryEntry:
        self._current()
        return self.index.resolve(reference, with_changes=with_changes)

    def content(self, entry: HistoryEntry, file: str = CONFIG) -> bytes:
        data = self.repository().read(entry.commit, file)
        if data is None:
            raise VersionNotFound(f"the commit {entry.commit[:12]} holds no {file}")
        return data

    def snapshot(self, entry: HistoryEntry, file: str = CONFIG) -> Snapshot:
        """The file at that commit, read under today's schema (its secrets still encrypted)."""
        return self._stores[file].parse(self.content(entry, file))

    def diff(self, old: str, new: str | None = None, file: str = CONFIG) -> VersionDiff:
        """`old` to `new` (None: the file as it is now), per key and unified, secrets masked."""
        if file not in STORE_FILES:
            raise VersionNotFound(f"the history compares {', '.join(STORE_FILES)} key by key, not {file}")
        old_entry = self.resolve(old)
        before = self.content(old_entry, file)
        if new is None:
            snapshot = self._stores[file].snapshot()
            new_entry, after, label = None, snapshot.raw, snapshot.version
        else:
            new_entry = self.resolve(new)
            after = self.content(new_entry, file)
            label = new_entry.config_version or new_entry.commit
        changes, unified = file_diff(before, after, self._secret_rule(file), file,
                                     old_entry.config_version or old_entry.commit[:12], label)
        return VersionDiff(file, old_entry, new_entry, label, changes, unified)

    def status(self) -> dict[str, Any]:
        last = self.index.last()
        return {
            "repository": str(self.path),
            "commits": self.index.count(),
            "head": last.commit if last else None,
            "version": last.config_version if last else None,
            "waiting": self.audit.versions_waiting(),
            # the history process logs why it cannot commit; this says since when versions wait
            "oldest_waiting_at": self.audit.oldest_waiting(),
            "problem": self.problem,
            "last_error": self.last_error,
        }

    def _secret_rule(self, file: str) -> SecretRule:
        store = self._stores.get(file) or self.more_stores().get(file)
        schema = (store if store is not None else self._stores["config.ini"]).schema  # an overlay gone since
        return schema.is_secret
