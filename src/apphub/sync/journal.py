"""The apply journal: per service, what apphub last set out to give it and what it last gave it.

It is written before files are swapped (`applying`) and after the health gate (`applied` or
`failed`), in SQLite, so that a restart of apphub knows which services were left between the
two: those get their reload again even when their files already hold the wanted bytes. Every
other service is judged by its files alone, so a restart with no change reloads nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from apphub.audit.log import utc_now
from apphub.db import Database

JournalState = Literal["applying", "applied", "failed"]


@dataclass(frozen=True)
class JournalEntry:
    service: str
    state: JournalState
    wanted_version: str | None
    applied_version: str | None
    files: dict[str, str]  # path -> sha256 of the bytes apphub wrote
    error: str | None
    updated_at: str
    failed_digest: str | None = None  # ServicePlan.digest of the bytes that failed (not for a retry)


class Journal:
    def __init__(self, database: Database) -> None:
        self._db = database

    def entries(self) -> dict[str, JournalEntry]:
        rows = self._db.query("SELECT * FROM sync_journal")
        return {row["service"]: JournalEntry(row["service"], row["state"], row["wanted_version"],
                                             row["applied_version"], json.loads(row["files"]), row["error"],
                                             row["updated_at"], row["failed_digest"]) for row in rows}

    def applying(self, services: Iterable[str], version: str) -> None:
        """These services are about to get `version`'s files (one transaction for them all)."""
        now = utc_now()
        with self._db.transaction() as connection:
            connection.executemany(
                "INSERT INTO sync_journal (service, state, wanted_version, updated_at) VALUES (?, 'applying', ?, ?)"
                " ON CONFLICT (service) DO UPDATE SET state = 'applying', wanted_version = excluded.wanted_version,"
                " error = NULL, failed_digest = NULL, updated_at = excluded.updated_at",
                [(service, version, now) for service in services],
            )

    def applied(self, files: Mapping[str, Mapping[str, str]], version: str) -> None:
        """These services run `version` (service -> path -> sha256 of the bytes written)."""
        if not files:
            return
        now = utc_now()
        with self._db.transaction() as connection:
            connection.executemany(
                "INSERT INTO sync_journal (service, state, wanted_version, applied_version, files, updated_at)"
                " VALUES (?, 'applied', ?, ?, ?, ?) ON CONFLICT (service) DO UPDATE SET state = 'applied',"
                " wanted_version = excluded.wanted_version, applied_version = excluded.applied_version,"
                " files = excluded.files, error = NULL, failed_digest = NULL, updated_at = excluded.updated_at",
                [(service, version, version, json.dumps(dict(paths)), now) for service, paths in files.items()],
            )

    def failed(self, service: str, version: str, error: str, digest: str | None = None) -> None:
        """`service` failed to apply `version`; `digest`: the bytes not to try again unasked."""
        with self._db.transaction() as connection:
            connection.execute(
                "INSERT INTO sync_journal (service, state, wanted_version, error, failed_digest, updated_at)"
                " VALUES (?, 'failed', ?, ?, ?, ?) ON CONFLICT (service) DO UPDATE SET state = 'failed',"
                " wanted_version = excluded.wanted_version, error = excluded.error,"
                " failed_digest = excluded.failed_digest, updated_at = excluded.updated_at",
                (service, version, error, digest, utc_now()),
            )

    def forget(self, service: str) -> None:
        with self._db.transaction() as connection:
            connection.execute("DELETE FROM sync_journal WHERE service = ?", (service,))
