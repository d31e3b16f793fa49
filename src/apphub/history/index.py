"""The index of the history's commits in SQLite: pages, filters and version lookups in milliseconds.

Git holds the versions; this holds what a listing shows of each commit (author, source, message,
the keys it changed, names only) and which config.ini version it carries, so that a page of
100,000 commits or a filter by key never walks the repository. It can be rebuilt from the commits
alone (their messages carry the same facts as trailers: see history/recorder.py).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apphub.audit.log import link_recorded, normalise_time
from apphub.db import Database
from apphub.errors import AmbiguousVersion, VersionNotFound

_HEX = re.compile(r"[0-9a-f]{4,64}")
_COLUMNS = "seq, commit_id, at, author, source, file, version, config_version, message, event_id, recovered"


@dataclass
class HistoryEntry:
    """One commit as the index knows it. `version`: of the file it changed; `config_version`: of
    config.ini at this commit (the version clients see)."""

    seq: int
    commit: str
    at: str
    author: str
    source: str
    file: str
    version: str
    config_version: str | None
    message: str
    event_id: int | None = None
    recovered: bool = False
    changes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "version": self.config_version,
            "file": self.file,
            "file_version": self.version,
            "at": self.at,
            "author": self.author,
            "source": self.source,
            "message": self.message,
            "audit_event": self.event_id,
            "recovered": self.recovered,
            "changes": self.changes,
        }


@dataclass(frozen=True)
class HistoryQuery:
    """Filters of a history page; `before`: the cursor (a seq) the previous page ended at."""

    section: str | None = None
    key: str | None = None
    author: str | None = None
    source: str | None = None
    file: str | None = None
    since: str | None = None
    until: str | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class NewEntry:
    """A commit to index: its row, and the keys it changed (file, section, key, change)."""

    commit: str
    at: str
    author: str
    source: str
    file: str
    version: str
    config_version: str | None
    message: str
    event_id: int | None
    recovered: bool
    changes: Sequence[tuple[str, str, str | None, str]]


class HistoryIndex:
    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, entries: Sequence[NewEntry], links: Sequence[tuple[int, str]] = ()) -> None:
        """Index commits (oldest first) and link their audit events, and the events of `links`
        (event id, commit id: a version an earlier commit holds already), in one transaction."""
        with self._db.transaction() as connection:
            for entry in entries:
                seq = self._insert(connection, entry)
                connection.executemany(
                    "INSERT INTO history_changes (seq, file, section, key, change) VALUES (?, ?, ?, ?, ?)",
                    [(seq, *change) for change in entry.changes])
            link_recorded(connection, [(entry.event_id, entry.commit) for entry in entries
                                       if entry.event_id is not None] + list(links))

    @staticmethod
    def _insert(connection: sqlite3.Connection, entry: NewEntry) -> int:
        cursor = connection.execute(
            "INSERT INTO history_commits (commit_id, at, author, source, file, version, config_version, message,"
            " event_id, recovered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.commit, entry.at, entry.author, entry.source, entry.file, entry.version, entry.config_version,
             entry.message, entry.event_id, int(entry.recovered)))
        return int(cursor.lastrowid or 0)

    def clear(self) -> None:
        """Forget every commit (the repository they were in was replaced)."""
        with self._db.transaction() as connection:
            connection.execute("DELETE FROM history_changes")
            connection.execute("DELETE FROM history_commits")

    def last(self) -> HistoryEntry | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM history_commits ORDER BY seq DESC LIMIT 1")  # noqa: S608
        return self._entries(rows)[0] if rows else None

    def count(self, after_seq: int = 0) -> int:
        return int(self._db.query("SELECT count(*) FROM history_commits WHERE seq > ?", (after_seq,))[0][0])

    def seq_of(self, commit: str) -> int | None:
        rows = self._db.query("SELECT seq FROM history_commits WHERE commit_id = ?", (commit,))
        return int(rows[0][0]) if rows else None

    def page(self, query: HistoryQuery) -> list[HistoryEntry]:
        """Commits newest first, filtered, at most `limit`, before the cursor."""
        conditions: list[str] = []
        parameters: list[Any] = []
        for column, value in (("author", query.author), ("source", query.source), ("file", query.file)):
            if value is not None:
                conditions.append(f"h.{column} = ?")
                parameters.append(value)
        if query.since is not None:
            conditions.append("h.at >= ?")
            parameters.append(normalise_time(query.since))
        if query.until is not None:
            conditions.append("h.at <= ?")
            parameters.append(normalise_time(query.until))
        if query.before is not None:
            conditions.append("h.seq < ?")
            parameters.append(query.before)
        if query.section is not None or query.key is not None:
            inner = ["c.seq = h.seq"]
            for column, value in (("section", query.section), ("key", query.key)):
                if value is not None:
                    inner.append(f"c.{column} = ?")
                    parameters.append(value)
            conditions.append(f"EXISTS (SELECT 1 FROM history_changes c WHERE {' AND '.join(inner)})")  # noqa: S608
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        columns = ", ".join(f"h.{name.strip()}" for name in _COLUMNS.split(","))
        rows = self._db.query(f"SELECT {columns} FROM history_commits h {where} ORDER BY h.seq DESC LIMIT ?",  # noqa: S608
                              (*parameters, query.limit))
        return self._entries(rows)

    def resolve(self, reference: str, *, with_changes: bool = False) -> HistoryEntry:
        """The commit a reference names: a commit id or a config.ini version (the ETag), whole or
        an unambiguous prefix of at least 4 characters, as git takes them (the keys it changed only
        `with_changes`). A version that several
        commits carry (a rollback brings one back) names the newest of them: all hold its bytes."""
        wanted = reference.strip().strip('"').lower()
        if not _HEX.fullmatch(wanted):
            raise VersionNotFound(f"'{reference}' is not a version: give a commit id or a config.ini version "
                                  "(hexadecimal, at least 4 characters)")
        bounds = (wanted, wanted + "g")  # every hex string that starts with the prefix sorts in between
        commits = self._db.query(f"SELECT {_COLUMNS} FROM history_commits WHERE commit_id >= ? AND commit_id < ?"  # noqa: S608
                                 " LIMIT 2", bounds)
        versions = [str(row[0]) for row in self._db.query(
            "SELECT DISTINCT config_version FROM history_commits WHERE config_version >= ? AND config_version < ?"
            " LIMIT 2", bounds)]
        if len(commits) == 1 and (not versions or versions == [commits[0]["config_version"]]):
            return self._entries(commits, with_changes)[0]
        if not commits and len(versions) == 1:
            # the newest commit that made config.ini that version, else the newest that carries it
            rows = self._db.query(f"SELECT {_COLUMNS} FROM history_commits WHERE config_version = ?"  # noqa: S608
                                  " ORDER BY (file = 'config.ini' AND version = config_version) DESC, seq DESC"
                                  " LIMIT 1", (versions[0],))
            return self._entries(rows, with_changes)[0]
        if not commits and not versions:
            raise VersionNotFound(f"no version of the history is '{reference}' (neither a commit id nor a "
                                  "config.ini version; `apphub history` lists them)")
        found = [str(row["commit_id"])[:12] for row in commits] + [version[:12] for version in versions]
        raise AmbiguousVersion(f"'{reference}' matches more than one version ({', '.join(found)}, ...): "
                               "give more characters")

    def _entries(self, rows: Sequence[sqlite3.Row], with_changes: bool = True) -> list[HistoryEntry]:
        """The entries of these rows; with the keys each changed unless not `with_changes` (a
        lookup: the first version of a 5,000-key file changed 5,000)."""
        entries = [HistoryEntry(int(row["seq"]), row["commit_id"], row["at"], row["author"], row["source"],
                                row["file"], row["version"], row["config_version"], row["message"],
                                row["event_id"], bool(row["recovered"])) for row in rows]
        if entries and with_changes:
            by_seq = {entry.seq: entry for entry in entries}
            marks = ",".join("?" * len(by_seq))
            for row in self._db.query(f"SELECT seq, file, section, key, change FROM history_changes"  # noqa: S608
                                      f" WHERE seq IN ({marks}) ORDER BY rowid", tuple(by_seq)):
                by_seq[row["seq"]].changes.append({"file": row["file"], "section": row["section"],
                                                   "key": row["key"], "change": row["change"]})
        return entries
