"""Named API keys: stored as SHA-256 hashes with a role, compared in constant time.

A key reads `ahk_<id>_<secret>`. The id finds the row; the hash of the whole key is then compared
with `hmac.compare_digest`, so the lookup reveals nothing about the secret part. Keys are 256-bit
random, so a plain hash is enough; a slow password hash would only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from typing import Literal

from apphub.audit.log import utc_now
from apphub.db import Database
from apphub.errors import KeyNameError, NotFound

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Actor names apphub itself uses in the audit log; a key cannot take one of them.
RESERVED_NAMES = frozenset({"cli", "api_key", "apphub", "file", "init"})
# Websoft9's API key: `[api_key] key` of config.ini, encrypted, accepted as an admin key (DESIGN §10).
WEBSOFT9_KEY = ("api_key", "key")
_KEY_PATTERN = re.compile(r"^ahk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    created_at: str
    key_id: str
    # A key of one service (init-config.sh's): it reads that service's configuration and nothing else.
    service: str | None = None


def has_role(granted: Role, needed: Role) -> bool:
    return ROLE_RANK[granted] >= ROLE_RANK[needed]


def hash_key(key: str) -> str:
    """What the store keeps of a key (and a console session of the key it was exchanged for)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Creates, lists, revokes and verifies the named keys of one data folder."""

    def __init__(self, database: Database) -> None:
        self._db = database
        # Keys verified since the database last changed. Every request checks SQLite's
        # data_version, which moves when any other connection (a CLI revoke) commits.
        self._verified: dict[str, ApiKey] = {}
        self._verified_at: int | None = None
        self._cache_lock = threading.Lock()

    def create(self, name: str, role: Role, *, service: str | None = None) -> str:
        """Create a key and return it; this is the only time its plaintext exists.

        `service`: the key sees only that service's configuration (a container's init-config.sh),
        and only to read it."""
        if not NAME_PATTERN.match(name):
            raise KeyNameError(f"key name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-'")
        if name in RESERVED_NAMES:
            raise KeyNameError(f"key name {name!r} is reserved for apphub's own audit entries")
        if role not in ROLES:
            raise KeyNameError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if service is not None and (role != "read" or not NAME_PATTERN.match(service)):
            raise KeyNameError(f"a key of one service reads only: give --role read and a service name "
                               f"(got role {role!r}, service {service!r})")
        key_id = secrets.token_hex(6)
        key = f"ahk_{key_id}_{secrets.token_urlsafe(32)}"
        try:
            with self._db.transaction(durable=True) as connection:  # the key is shown once: it must stay valid
                connection.execute(
                    "INSERT INTO api_keys (name, key_id, key_hash, role, created_at, service) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, key_id, hash_key(key), role, utc_now(), service),
                )
        except sqlite3.IntegrityError as exc:
            raise KeyNameError(f"a key named {name!r} already exists; revoke it first") from exc
        self._forget()
        return key

    def list(self) -> list[ApiKey]:
        rows = self._db.query("SELECT name, role, created_at, key_id, service FROM api_keys ORDER BY name")
        return [ApiKey(row["name"], row["role"], row["created_at"], row["key_id"], row["service"]) for row in rows]

    def revoke(self, name: str) -> None:
        # A revoked key must stay revoked after a power loss: a compromised key would come back.
        with self._db.transaction(durable=True) as connection:
            deleted = connection.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount
        self._forget()
        if not deleted:
            raise NotFound(f"no API key named {name!r}")

    def has_admin(self) -> bool:
        return bool(self._db.query("SELECT 1 FROM api_keys WHERE role = 'admin' AND service IS NULL LIMIT 1"))

    def _forget(self) -> None:
        # data_version does not move for this connection's own commits: forget by hand.
        with self._cache_lock:
            self._verified = {}
            self._verified_at = None

    def verify(self, presented: str) -> ApiKey | None:
        """The key `presented` stands for, or None; never raises on malformed input."""
        match = _KEY_PATTERN.match(presented)
        if match is None:
            return None
        digest = hash_key(presented)
        version = int(self._db.query("PRAGMA data_version")[0][0])
        with self._cache_lock:
            if version != self._verified_at:
                self._verified = {}
                self._verified_at = version
            known = self._verified.get(digest)
        if known is not None:
            return known
        found = self._lookup(match.group(1), digest)
        if found is not None:
            with self._cache_lock:
                if self._verified_at == version and len(self._verified) < 1024:
                    self._verified[digest] = found
        return found

    def by_hash(self, digest: str) -> ApiKey | None:
        """The key whose hash is `digest`, while it is not revoked (a console session's key)."""
        rows = self._db.query("SELECT name, role, created_at, key_id, service FROM api_keys WHERE key_hash = ?",
                              (digest,))
        return ApiKey(rows[0]["name"], rows[0]["role"], rows[0]["created_at"], rows[0]["key_id"], rows[0]["service"]) \
            if rows else None

    def _lookup(self, key_id: str, digest: str) -> ApiKey | None:
        rows = self._db.query(
            "SELECT name, role, created_at, key_id, key_hash, service FROM api_keys WHERE key_id = ?", (key_id,)
        )
        if not rows or not hmac.compare_digest(rows[0]["key_hash"], digest):
            return None
        row = rows[0]
        return ApiKey(row["name"], row["role"], row["created_at"], row["key_id"], row["service"])
