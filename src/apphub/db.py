"""The SQLite database of a data folder: opening it the same way everywhere, and its schema."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apphub.errors import DataDirError, StorageFull

# Less free room than this makes an I/O error of SQLite a full disk: its -shm file alone takes 32 KiB.
_ROOM_SQLITE_NEEDS = 64 * 1024

# Each entry moves the database one version up; PRAGMA user_version records where it stands.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE api_keys (
        name TEXT PRIMARY KEY,
        key_id TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
        created_at TEXT NOT NULL
    );
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        request_id TEXT,
        action TEXT NOT NULL,
        file TEXT,
        version_before TEXT,
        version_after TEXT,
        message TEXT
    );
    CREATE TABLE audit_changes (
        event_id INTEGER NOT NULL REFERENCES audit_events (id),
        position INTEGER NOT NULL,
        section TEXT NOT NULL,
        key TEXT,
        change TEXT NOT NULL,
        old TEXT,
        new TEXT,
        PRIMARY KEY (event_id, position)
    );
    CREATE INDEX audit_events_at ON audit_events (at);
    CREATE INDEX audit_events_actor ON audit_events (actor);
    CREATE INDEX audit_changes_section_key ON audit_changes (section, key);
    """,
    """
    CREATE TABLE sync_journal (
        service TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('applying', 'applied', 'failed')),
        wanted_version TEXT,
        applied_version TEXT,
        files TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # the bytes that failed a service's gate, so that a restart of apphub does not try them again
    """
    ALTER TABLE sync_journal ADD COLUMN failed_digest TEXT;
    """,
    # A write's audit event is committed (pending) before the file is replaced, and marked done
    # after; `marker` names the staged file whose existence says the write was not made, so that
    # one a killed writer left pending is settled right at the next start (store/versionlog.py).
    """
    ALTER TABLE audit_events ADD COLUMN state TEXT NOT NULL DEFAULT 'done'
        CHECK (state IN ('pending', 'done', 'abandoned'));
    ALTER TABLE audit_events ADD COLUMN marker TEXT;
    CREATE INDEX audit_events_pending ON audit_events (file) WHERE state = 'pending';
    """,
    # The history (history/): the bytes of each version an event made, kept (in the event's own
    # transaction, so as durable as the write) until the version is a git commit; the commit each
    # event became; and the index of the commits that history pages, filters and lookups read.
    """
    ALTER TABLE audit_events ADD COLUMN commit_id TEXT;
    CREATE TABLE version_contents (
        event_id INTEGER PRIMARY KEY REFERENCES audit_events (id),
        content BLOB NOT NULL
    );
    CREATE TABLE history_commits (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        commit_id TEXT NOT NULL UNIQUE,
        at TEXT NOT NULL,
        author TEXT NOT NULL,
        source TEXT NOT NULL,
        file TEXT NOT NULL,
        version TEXT NOT NULL,
        config_version TEXT,
        message TEXT NOT NULL,
        event_id INTEGER,
        recovered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX history_commits_config_version ON history_commits (config_version);
    CREATE INDEX history_commits_at ON history_commits (at);
    CREATE INDEX history_commits_author ON history_commits (author);
    CREATE TABLE history_changes (
        seq INTEGER NOT NULL REFERENCES history_commits (seq) ON DELETE CASCADE,
        file TEXT NOT NULL,
        section TEXT NOT NULL,
        key TEXT,
        change TEXT NOT NULL
    );
    CREATE INDEX history_changes_key ON history_changes (section, key, seq);
    CREATE TABLE history_push (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        remote TEXT,
        branch TEXT,
        pushed_commit TEXT,
        pushed_at TEXT
    );
    """,
    # First-start initialisation of the products (one row per product: its steps as JSON), and
    # keys that see only one service (init-config.sh's)
    """
    CREATE TABLE service_init (
        service TEXT PRIMARY KEY,
        run TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    ALTER TABLE api_keys ADD COLUMN service TEXT;
    """,
    # The warnings of the rules (rules/) a write was accepted with, as a JSON list of lines
    """
    ALTER TABLE audit_events ADD COLUMN warnings TEXT;
    """,
    # Notifications (notify/): where to, and the outbox of deliveries with every attempt. A
    # destination's URL and signing secret are stored encrypted (SecretBox): a chat webhook's URL
    # is its credential.
    """
    CREATE TABLE notify_destinations (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT,
        events TEXT NOT NULL,
        services TEXT NOT NULL,
        sections TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE notify_outbox (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        created_at TEXT NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        done_at TEXT,
        UNIQUE (event_id, destination)
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (state, next_at);
    CREATE TABLE notify_attempts (
        delivery INTEGER NOT NULL REFERENCES notify_outbox (id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        status INTEGER,
        error TEXT,
        duration_ms REAL NOT NULL
    );
    CREATE INDEX notify_attempts_delivery ON notify_attempts (delivery);
    """,
    # How far the notifications have looked at the audit log (see Notifier.catch_up); what
    # was written before this migration is not told again. When a destination was last enabled:
    # what was written while it was paused is not told to it.
    """
    ALTER TABLE notify_destinations ADD COLUMN enabled_at TEXT;
    CREATE TABLE notify_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        audit_event INTEGER NOT NULL
    );
    INSERT INTO notify_cursor VALUES (1, (SELECT coalesce(max(id), 0) FROM audit_events));
    """,
    # The web console's sessions: a cookie's hash, the key it was exchanged for (its hash, so
    # that revoking or replacing the key ends the session), its role and CSRF token, and when it ends.
    """
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY,
        key_name TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX web_sessions_expires_at ON web_sessions (expires_at);
    """,
    # The notifications' sender looks at one destination at a time (its first due delivery, its
    # due ones, whether a chat destination holds a change): without this, each look read every
    # pending delivery, a hanging destination's backlog included (awaiting_sync: 2-4 ms at 840).
    """
    CREATE INDEX notify_outbox_destination ON notify_outbox (destination, state, next_at);
    """,
]


class Database:
    """One connection, shared by the threads of one component under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        new = not path.exists()
        try:
            self._connection = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
            self._connection.row_factory = sqlite3.Row
            self._connection.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash; a power loss may drop the last
            # ones. What must survive a power loss too asks for transaction(durable=True).
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            if new:
                os.chmod(path, 0o600)  # API key hashes and the audit log; its -wal and -shm inherit the mode
        except (sqlite3.Error, OSError) as exc:
            if _is_full(exc, path):
                raise StorageFull(f"cannot open the database {path}: the disk holding {path.parent} is full "
                                  "(SQLite needs room for its -wal and -shm files)") from exc
            raise DataDirError(f"cannot open the database {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed on success and rolled back on error.

        `durable`: the commit is on the disk when this returns, power loss included (the WAL is
        flushed: synchronous=FULL for this one commit, about 0.3 ms here). Without it, a commit
        survives the process dying but a power loss may take the last ones.
        """
        with self._lock, _translated(self.path):
            if durable:
                self._connection.execute("PRAGMA synchronous=FULL")
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self._connection
                    self._connection.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (a full disk) may leave the transaction open: end it, or every
                    # later BEGIN on this connection fails.
                    if self._connection.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._connection.execute("ROLLBACK")
                    raise
            finally:
                if durable:
                    self._connection.execute("PRAGMA synchronous=NORMAL")

    def query(self, sql: str, parameters: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock, _translated(self.path):
            return self._connection.execute(sql, parameters).fetchall()

    def migrate(self) -> None:
        with self.transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise  # a broken constraint is the caller's to explain (a taken key name, say)
    except sqlite3.Error as exc:
        if _is_full(exc, path):
            raise StorageFull(f"cannot write the database {path}: the disk holding {path.parent} is full") from exc
        raise DataDirError(f"database {path}: {exc}") from exc


def _is_full(exc: BaseException, path: Path) -> bool:
    """Whether an error of SQLite (or of the OS) means the disk holding `path` has no room. SQLite
    says so with SQLITE_FULL, but fails to create its -shm file with an I/O error: ask the disk."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    if code & 0xFF == sqlite3.SQLITE_FULL:  # extended codes keep the primary one in their low byte
        return True
    if code & 0xFF == sqlite3.SQLITE_IOERR:
        with contextlib.suppress(OSError):
            room = os.statvfs(path.parent)
            return room.f_bavail * room.f_frsize < _ROOM_SQLITE_NEEDS
    return False
