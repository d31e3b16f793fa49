"""The web console's sessions: a random cookie exchanged once for an API key, kept as its hash.

The page never keeps the key: it sends it once to sign in and gets an `HttpOnly` cookie. A session
remembers the hash of the key it was exchanged for, so that it ends when that key is revoked
(or, for Websoft9's key, replaced by `apphub genkey`): the caller checks that on every request
with `key_still_valid`. Each session has a CSRF token too, which the page sends back as a header
with every write; a cross-site form can send the cookie (were it not `SameSite=Strict`) but never
the header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apphub.db import Database
from apphub.keys import Role

COOKIE_NAME = "apphub_session"
CSRF_HEADER = "x-csrf-token"
# A working day: a console left open overnight asks for the key again.
LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    key_name: str
    key_hash: str
    role: Role
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf_token.encode(), presented.encode("utf-8",
                                                                                                        "replace"))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SessionStore:
    """Opens, finds and ends the console's sessions of one data folder (SQLite, `web_sessions`)."""

    def __init__(self, database: Database, *, lifetime: timedelta = LIFETIME,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = database
        self.lifetime = lifetime
        self._clock = clock

    def open(self, key_name: str, key_hash: str, role: Role) -> tuple[str, Session]:
        """A new session for the key; returns the cookie's value (kept nowhere but in the
        browser) and the session. Sessions that ended are dropped on the way."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(key_name, key_hash, role, secrets.token_urlsafe(32), now + self.lifetime)
        # durable: a session reported open must not vanish, and one closed must stay closed
        with self._db.transaction(durable=True) as connection:
            connection.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (_iso(now),))
            connection.execute(
                "INSERT INTO web_sessions (token_hash, key_name, key_hash, role, csrf_token, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_token_hash(token), key_name, key_hash, role, session.csrf_token, _iso(now),
                 _iso(session.expires_at)))
        return token, session

    def find(self, token: str) -> Session | None:
        """The open session whose cookie is `token`, or None (unknown, or ended)."""
        rows = self._db.query("SELECT key_name, key_hash, role, csrf_token, expires_at FROM web_sessions "
                              "WHERE token_hash = ? AND expires_at > ?", (_token_hash(token), _iso(self._clock())))
        if not rows:
            return None
        row = rows[0]
        expires_at = datetime.strptime(row["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        return Session(row["key_name"], row["key_hash"], row["role"], row["csrf_token"], expires_at)

    def close(self, token: str) -> bool:
        """End the session (sign out); whether there was one."""
        with self._db.transaction(durable=True) as connection:
            return connection.execute("DELETE FROM web_sessions WHERE token_hash = ?",
                                      (_token_hash(token),)).rowcount > 0
