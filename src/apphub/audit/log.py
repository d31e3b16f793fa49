"""The audit log in SQLite: one event per accepted write, one row per changed key.

Values of secret keys never reach this module in plaintext: callers pass them masked.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from apphub.db import Database


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_time(value: str) -> str:
    """An ISO 8601 time, with or without zone, as the UTC text the log stores (for comparisons)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Change:
    """One key's change inside an event: `set`, `add` or `delete`, old and new values (masked if secret)."""

    section: str
    key: str | None
    change: str
    old: str | None = None
    new: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through what: the key's name (or `cli`), the source, the request id."""

    name: str
    source: str
    request_id: str | None = None


# AuditEvent's fields, in order (the warnings last, as JSON)
_EVENT_COLUMNS = ("e.id, e.at, e.actor, e.source, e.request_id, e.action, e.file, e.version_before, "
                  "e.version_after, e.message, e.commit_id, e.warnings")


@dataclass
class AuditEvent:
    id: int
    at: str
    actor: str
    source: str
    request_id: str | None
    action: str
    file: str | None
    version_before: str | None
    version_after: str | None
    message: str | None
    commit: str | None = None  # the history's commit of the version it made, once committed
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the rules' warnings the write was accepted with

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "source": self.source,
            "request_id": self.request_id,
            "action": self.action,
            "file": self.file,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "message": self.message,
            "commit": self.commit,
            "changes": [change.__dict__ for change in self.changes],
            "warnings": self.warnings,
        }


def _event(row: Sequence[Any]) -> AuditEvent:
    *fields, warnings = row
    event = AuditEvent(*fields)
    event.warnings = json.loads(warnings) if warnings else []
    return event


class PendingWrite(NamedTuple):
    """A write's event not yet marked done or abandoned: its id, its marker (see AuditLog.begin),
    the version it would leave its file at."""

    id: int
    marker: str | None
    version_after: str | None


# Whether a pending write of a file was made, from its marker and new version (see judge_writes).
WriteJudge = Callable[[str | None, str | None], bool]


@dataclass(frozen=True)
class VersionToRecord:
    """A version an event made whose bytes wait for the history (see AuditLog.versions_to_record)."""

    event_id: int
    at: str
    actor: str
    source: str
    action: str
    file: str
    version: str
    message: str | None
    content: bytes


def link_recorded(connection: sqlite3.Connection, commits: Sequence[tuple[int, str]]) -> None:
    """Inside the history's transaction: these events' versions are commits now (event id, commit
    id); their bytes are no longer kept here."""
    connection.executemany("UPDATE audit_events SET commit_id = ? WHERE id = ?",
                           [(commit, event) for event, commit in commits])
    connection.executemany("DELETE FROM version_contents WHERE event_id = ?", [(event,) for event, _ in commits])


@dataclass(frozen=True)
class AuditQuery:
    section: str | None = None
    key: str | None = None
    actor: str | None = None
    source: str | None = None
    action: str | None = None
    since: str | None = None
    until: str | None = None
    before_id: int | None = None
    after_id: int | None = None
    limit: int = 50


class AuditLog:
    """Records events and answers queries, newest first."""

    def __init__(self, database: Database) -> None:
        self._db = database
        # file name -> (the file's path, how its writer judges its pending writes: judge_writes)
        self._judges: dict[str, tuple[Path, WriteJudge]] = {}

    def judge_writes(self, file: Path, judge: WriteJudge) -> None:
        """How to tell whether a pending write of `file` was made (the store that writes it knows
        where its staged files are). Until a store of `file` is built on this log, its pending
        writes count as not made; and the last write's event stays pending until the next write,
        so read the log through a Core (or after building the stores), not on its own.

        Events name a file by its name: two files of one name, in two folders, cannot share a log.
        """
        known = self._judges.get(file.name)
        if known is not None and known[0] != file:
            raise ValueError(f"{file} and {known[0]} cannot share one audit log: its events name files by name")
        self._judges[file.name] = (file, judge)

    def record(
        self,
        actor: Actor,
        action: str,
        changes: Sequence[Change] = (),
        *,
        file: str | None = None,
        version_before: str | None = None,
        version_after: str | None = None,
        message: str | None = None,
        content: bytes | None = None,
        warnings: Sequence[str] = (),
    ) -> int:
        """Record an event of something already done. `content`: the bytes of the version it left
        `file` at, for the history (see versions_to_record); none if they hold a secret in plaintext."""
        return self._insert("done", actor, action, changes, file, version_before, version_after, message,
                            content=content, warnings=warnings)

    def begin(
        self,
        actor: Actor,
        action: str,
        changes: Sequence[Change],
        *,
        file: str,
        version_before: str,
        version_after: str,
        marker: str,
        message: str | None = None,
        complete: Sequence[int] = (),
        content: bytes | None = None,
        warnings: Sequence[str] = (),
    ) -> int:
        """Record, durably, the event of a write about to be made: pending until `complete` or `abandon`.

        A write records its event first and replaces its file after, so that whatever moment the
        process dies (power loss included), the event is on disk before the version it describes.
        `marker`: the name of its staged file, whose presence tells whether the write was made
        (see judge_writes): how whoever next holds the file's lock settles an event a dead writer
        left pending.
        `complete`: earlier pending events found made, marked done in the same transaction.
        `content`: the new version's bytes, kept with the event until the history has them.
        """
        return self._insert("pending", actor, action, changes, file, version_before, version_after, message,
                            marker=marker, complete=complete, content=content, warnings=warnings)

    def complete(self, event_ids: Sequence[int]) -> None:
        """The writes of these pending events were made."""
        if not event_ids:
            return
        with self._db.transaction() as connection:
            connection.executemany("UPDATE audit_events SET state = 'done' WHERE id = ? AND state = 'pending'",
                                   [(event_id,) for event_id in event_ids])

    def is_made(self, file: str, write: PendingWrite) -> bool:
        """Whether a pending write of `file` was made, as its store judges it (see judge_writes).
        From the instant it was, its event counts as done, whether or not it is marked yet."""
        known = self._judges.get(file)
        return known is not None and known[1](write.marker, write.version_after)

    def _made_pending(self, file: str | None = None) -> list[int]:
        rows = self._db.query(
            "SELECT id, file, marker, version_after FROM audit_events WHERE state = 'pending'"
            " AND (? IS NULL OR file = ?)", (file, file))
        return [int(row[0]) for row in rows if self.is_made(row[1], PendingWrite(int(row[0]), row[2], row[3]))]

    def abandon(self, event_id: int, reason: str) -> None:
        """The write of a pending event was not made: kept for the record, never listed as a change."""
        self._abandon("id = ?", (event_id,), reason)

    def abandon_marked(self, file: str, marker: str, reason: str) -> None:
        """The write whose event names `marker` was not made, if that event exists: for a writer
        interrupted while beginning, which cannot tell whether its event was committed."""
        self._abandon("file = ? AND marker = ?", (file, marker), reason)

    def _abandon(self, which: str, parameters: tuple[Any, ...], reason: str) -> None:
        # Durable: the writer removes the staged file next, and a write whose staged file is gone
        # reads as made; a power loss must not keep the removal and lose the abandon.
        with self._db.transaction(durable=True) as connection:
            connection.execute(
                "UPDATE audit_events SET state = 'abandoned',"  # noqa: S608 (a condition of ours, not input)
                " message = coalesce(message || ' ', '') || '[not made: ' || ? || ']'"
                f" WHERE {which} AND state = 'pending'",
                (reason, *parameters),
            )

    def versions_to_record(self, limit: int = 500) -> list[VersionToRecord]:
        """The versions whose bytes wait for the history, oldest first: those of events done, up to
        the first still pending (a write in flight may yet be undone after its rename, so only the
        file's lock can tell: IniStore.settle_made marks it, and what follows waits). The bytes of
        abandoned writes are dropped here."""
        rows = self._db.query(
            "SELECT e.id, e.at, e.actor, e.source, e.action, e.file, e.version_after, e.message, e.state, e.marker,"
            " c.content FROM version_contents c JOIN audit_events e ON e.id = c.event_id ORDER BY c.event_id LIMIT ?",
            (limit,))
        found: list[VersionToRecord] = []
        dropped: list[int] = []
        for row in rows:
            state = row["state"]
            if state == "abandoned":
                dropped.append(int(row["id"]))
                continue
            if state == "pending":
                break
            found.append(VersionToRecord(int(row["id"]), row["at"], row["actor"], row["source"], row["action"],
                                         row["file"], row["version_after"], row["message"], bytes(row["content"])))
        if dropped:
            with self._db.transaction() as connection:
                connection.executemany("DELETE FROM version_contents WHERE event_id = ?", [(i,) for i in dropped])
        return found

    def versions_waiting(self) -> int:
        """How many versions' bytes wait for the history (some may be writes in flight)."""
        return int(self._db.query("SELECT count(*) FROM version_contents")[0][0])

    def oldest_waiting(self) -> str | None:
        """When the oldest version still waiting for the history was written (None: none waits)."""
        rows = self._db.query("SELECT min(e.at) FROM version_contents c JOIN audit_events e ON e.id = c.event_id")
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    def pending(self, file: str) -> list[PendingWrite]:
        """The writes of `file` whose events are left pending, oldest first."""
        rows = self._db.query("SELECT id, marker, version_after FROM audit_events"
                              " WHERE file = ? AND state = 'pending' ORDER BY id", (file,))
        return [PendingWrite(int(row[0]), row[1], row[2]) for row in rows]

    def _insert(self, state: str, actor: Actor, action: str, changes: Sequence[Change], file: str | None,
                version_before: str | None, version_after: str | None, message: str | None, *,
                marker: str | None = None, complete: Sequence[int] = (), content: bytes | None = None,
                warnings: Sequence[str] = ()) -> int:
        # The event of a write to be made is flushed to disk before the write (it must survive a
        # power loss that the write survives); any other commit is left to the OS (README).
        with self._db.transaction(durable=marker is not None) as connection:
            cursor = connection.execute(
                "INSERT INTO audit_events (at, actor, source, request_id, action, file, version_before,"
                " version_after, message, state, marker, warnings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (utc_now(), actor.name, actor.source, actor.request_id, action, file, version_before,
                 version_after, message, state, marker, json.dumps(list(warnings)) if warnings else None),
            )
            event_id = int(cursor.lastrowid or 0)
            connection.executemany(
                "INSERT INTO audit_changes (event_id, position, section, key, change, old, new)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(event_id, n, c.section, c.key, c.change, c.old, c.new) for n, c in enumerate(changes)],
            )
            connection.executemany("UPDATE audit_events SET state = 'done' WHERE id = ? AND state = 'pending'",
                                   [(done,) for done in complete])
            if content is not None:
                connection.execute("INSERT INTO version_contents (event_id, content) VALUES (?, ?)",
                                   (event_id, content))
        return event_id

    def record_reveal(self, actor: Actor, file: str, version: str, keys: Sequence[tuple[str, str]]) -> None:
        """Someone was shown secrets in plaintext: which keys, never the values.

        A read names the version it read as version_before only: it must never count as the
        version a file was left at (last_version), since a write may have come in between.
        """
        if keys:
            self.record(actor, "secrets.reveal", [Change(section, key, "reveal") for section, key in keys],
                        file=file, version_before=version)

    def last_version(self, file: str, made: Sequence[int] | None = None) -> str | None:
        """The version of `file` the newest event (done, or made: see is_made) left it at, or None
        if no event names one. `made`: the pending events of `file` known to be made, if known."""
        made = self._made_pending(file) if made is None else made
        marks = ",".join("?" * len(made))
        rows = self._db.query(
            "SELECT version_after FROM audit_events WHERE file = ? AND version_after IS NOT NULL"  # noqa: S608
            f" AND (state = 'done' OR id IN ({marks})) ORDER BY id DESC LIMIT 1",  # placeholders only
            (file, *made),
        )
        return str(rows[0][0]) if rows else None

    def query(self, query: AuditQuery) -> list[AuditEvent]:
        """Events newest first: what was done (a write in flight, or not made, is no change)."""
        made = self._made_pending()
        conditions: list[str] = [f"(e.state = 'done' OR e.id IN ({','.join('?' * len(made))}))"]
        parameters: list[Any] = list(made)
        for column, value in (("actor", query.actor), ("source", query.source), ("action", query.action)):
            if value is not None:
                conditions.append(f"e.{column} = ?")
                parameters.append(value)
        if query.since is not None:
            conditions.append("e.at >= ?")
            parameters.append(normalise_time(query.since))
        if query.until is not None:
            conditions.append("e.at <= ?")
            parameters.append(normalise_time(query.until))
        if query.before_id is not None:
            conditions.append("e.id < ?")
            parameters.append(query.before_id)
        if query.after_id is not None:
            conditions.append("e.id > ?")
            parameters.append(query.after_id)
        if query.section is not None or query.key is not None:
            inner = ["c.event_id = e.id"]
            if query.section is not None:
                inner.append("c.section = ?")
                parameters.append(query.section)
            if query.key is not None:
                inner.append("c.key = ?")
                parameters.append(query.key)
            conditions.append(f"EXISTS (SELECT 1 FROM audit_changes c WHERE {' AND '.join(inner)})")  # noqa: S608
        where = f"WHERE {' AND '.join(conditions)}"
        rows = self._db.query(
            f"SELECT {_EVENT_COLUMNS} FROM audit_events e {where} ORDER BY e.id DESC LIMIT ?",  # noqa: S608
            (*parameters, query.limit),
        )
        events = [_event(row) for row in rows]
        if events:
            by_id = {event.id: event for event in events}
            marks = ",".join("?" * len(by_id))
            for row in self._db.query(
                f"SELECT * FROM audit_changes WHERE event_id IN ({marks}) ORDER BY event_id, position",  # noqa: S608
                tuple(by_id),
            ):
                by_id[row["event_id"]].changes.append(
                    Change(row["section"], row["key"], row["change"], row["old"], row["new"])
                )
        return events
