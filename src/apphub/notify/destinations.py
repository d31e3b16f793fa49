"""Where notifications go: a generic webhook (Standard Webhooks signatures), Slack, Discord, or a
WeCom group robot, each with the event types it wants and, optionally, only some services or
sections.

A chat webhook's URL is its credential (whoever has it may post), and a webhook's signing secret is
one too: both are stored encrypted with the data folder's key, and shown masked (`public`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import httpx

from apphub.db import Database
from apphub.errors import FieldError, NotFound, ValidationFailed
from apphub.notify.events import EVENT_TYPES, Event, now
from apphub.store.secrets import MASK, Secret, SecretBox

Kind = Literal["webhook", "slack", "discord", "wecom"]
KINDS: tuple[Kind, ...] = ("webhook", "slack", "discord", "wecom")
ALL = "*"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
FILTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a service's or a section's name
MAX_URL_CHARS = 2048
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, no secret)  the Standard Webhooks form of a signing secret: whsec_ + base64 of the key


class DestinationNotFound(NotFound):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"there is no notification destination '{name}'")


@dataclass(frozen=True)
class Destination:
    name: str
    kind: Kind
    url: Secret  # plaintext in memory only, as a Secret (its repr is the mask)
    secret: Secret | None  # the webhook's signing secret (whsec_...); None for the chat kinds
    events: tuple[str, ...]  # event types, or ("*",)
    services: tuple[str, ...]  # empty: every service
    sections: tuple[str, ...]  # empty: every section
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: str = ""
    enabled_at: str | None = None  # when it was last enabled again after a pause

    def holds_change_sets(self) -> bool:
        return holds_change_sets(self.kind, self.events)

    def public(self) -> dict[str, Any]:
        """As an answer shows it: the URL's scheme and host only (its path or query holds the
        token), the secret masked."""
        parts = urlsplit(self.url.reveal())
        return {"name": self.name, "kind": self.kind, "url": f"{parts.scheme}://{parts.hostname}/{MASK}",
                "secret": MASK if self.secret else None, "events": list(self.events),
                "services": list(self.services), "sections": list(self.sections), "enabled": self.enabled,
                "disabled_reason": self.disabled_reason, "created_at": self.created_at}


@dataclass(frozen=True)
class Filters:
    """What a destination asks for, and whether it is enabled: what choosing an event's recipients
    reads, on every change (nothing decrypted)."""

    name: str
    kind: Kind
    events: tuple[str, ...]
    services: tuple[str, ...]
    sections: tuple[str, ...]
    enabled: bool
    created_at: str
    enabled_at: str | None

    @property
    def wanting_since(self) -> str:
        """From when it wants events: its creation, or the end of its last pause."""
        return max(self.created_at, self.enabled_at or "")

    def wants(self, event: Event) -> bool:
        return self.enabled and _wants(self.events, self.services, self.sections, event)

    def holds_change_sets(self) -> bool:
        return holds_change_sets(self.kind, self.events)


def holds_change_sets(kind: Kind, events: tuple[str, ...]) -> bool:
    """Whether a destination holds a change until its sync event, to send both as one message: a
    chat destination that wants a sync event (a webhook gets each event as it comes; changesets)."""
    return kind != "webhook" and bool({ALL, "sync.applied", "sync.failed"} & set(events))


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Destinations:
    """The destinations of one data folder, in its database.

    Their filters are kept in memory (`filters`): choosing an event's recipients, on every change,
    decrypts and parses nothing. They are read again after a change made here and, to see one a CLI
    command made in another process, when another connection has written to the database since
    (SQLite's `PRAGMA data_version`; mostly the audit log's, and then the rows are only compared).
    """

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box
        self.on_change: list[Callable[[], None]] = []  # called after a destination is added, changed or removed
        self._lock = threading.Lock()
        self._generation = 0  # of the changes made here: a read that a change overtook is not kept
        self._rows: tuple[tuple[Any, ...], ...] | None = None  # as last read, and their filters
        self._filters: tuple[Filters, ...] = ()
        self._data_version: int | None = None  # of the database when they were read

    def add(self, name: str, kind: str, url: str, *, secret: str | None = None, events: Iterable[str] = (ALL,),
            services: Iterable[str] = (), sections: Iterable[str] = ()) -> Destination:
        """A new destination (ValidationFailed names every problem). A webhook without a secret
        gets a fresh one: receivers need it to verify, so `add`'s answer is where it is shown once."""
        events, services, sections = tuple(events) or (ALL,), tuple(services), tuple(sections)
        problems = _problems(name, kind, url, secret, events, services, sections)
        if problems:
            raise ValidationFailed(problems)
        if kind == "webhook" and secret is None:
            secret = new_signing_secret()
        if kind != "webhook":
            secret = None
        with self._db.transaction(durable=True) as connection:
            if connection.execute("SELECT 1 FROM notify_destinations WHERE name = ?", (name,)).fetchone():
                raise ValidationFailed([_error("name", f"a destination named '{name}' exists already")])
            connection.execute(
                "INSERT INTO notify_destinations (name, kind, url, secret, events, services, sections, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, kind, self._box.encrypt(url), self._box.encrypt(secret) if secret else None,
                 json.dumps(events), json.dumps(services), json.dumps(sections), now()))
        self._changed()
        return self.get(name)

    def filters(self) -> tuple[Filters, ...]:
        """Every destination's filters, by name, as they are now."""
        with self._lock:
            generation, rows, kept, seen = self._generation, self._rows, self._filters, self._data_version
        # Read before the rows: a change another connection makes in between is read again next time.
        version = int(self._db.query("PRAGMA data_version")[0][0])
        if rows is not None and version == seen:
            return kept
        found = tuple(tuple(row) for row in self._db.query(
            "SELECT name, kind, events, services, sections, enabled, created_at, enabled_at"
            " FROM notify_destinations ORDER BY name"))
        if found != rows:  # another connection wrote something else (the audit log, mostly): nothing to parse
            kept = tuple(Filters(name, cast(Kind, kind), tuple(json.loads(events)), tuple(json.loads(services)),
                                 tuple(json.loads(sections)), bool(enabled), created_at, enabled_at)
                         for name, kind, events, services, sections, enabled, created_at, enabled_at in found)
        with self._lock:
            if self._generation == generation:
                self._rows, self._filters, self._data_version = found, kept, version
        return kept

    def wanting(self, event: Event) -> list[str]:
        """The enabled destinations that ask for `event`, by name."""
        return [found.name for found in self.filters() if found.wants(event)]

    def get(self, name: str) -> Destination:
        rows = self._db.query("SELECT * FROM notify_destinations WHERE name = ?", (name,))
        if not rows:
            raise DestinationNotFound(name)
        return self._destination(rows[0])

    def all(self) -> list[Destination]:
        return [self._destination(row) for row in self._db.query("SELECT * FROM notify_destinations ORDER BY name")]

    def remove(self, name: str) -> None:
        """The destination goes; what it had pending is dropped with it (kept deliveries stay listed)."""
        with self._db.transaction() as connection:
            if connection.execute("DELETE FROM notify_destinations WHERE name = ?", (name,)).rowcount == 0:
                raise DestinationNotFound(name)
            connection.execute("UPDATE notify_outbox SET state = 'failed', last_error = 'the destination was removed'"
                               " WHERE destination = ? AND state = 'pending'", (name,))
        self._changed()

    def set_enabled(self, name: str, enabled: bool, reason: str | None = None) -> None:
        with self._db.transaction() as connection:
            changed = connection.execute(
                "UPDATE notify_destinations SET enabled = ?, disabled_reason = ?,"
                " enabled_at = CASE WHEN ? AND enabled = 0 THEN ? ELSE enabled_at END WHERE name = ?",
                (int(enabled), None if enabled else reason, int(enabled), now(), name)).rowcount
        if changed == 0:
            raise DestinationNotFound(name)
        self._changed()

    def _changed(self) -> None:
        """A change made here (committed): the filters are read again, and the listeners told."""
        with self._lock:
            self._generation += 1
            self._rows = None
        for listener in list(self.on_change):
            listener()

    def _destination(self, row: Any) -> Destination:
        where = f"notification destination '{row['name']}'"
        return Destination(
            row["name"], cast(Kind, row["kind"]), self._box.decrypt(row["url"], where),
            self._box.decrypt(row["secret"], where) if row["secret"] else None, tuple(json.loads(row["events"])),
            tuple(json.loads(row["services"])), tuple(json.loads(row["sections"])), bool(row["enabled"]),
            row["disabled_reason"], row["created_at"], row["enabled_at"])


def _wants(events: tuple[str, ...], services: tuple[str, ...], sections: tuple[str, ...], event: Event) -> bool:
    """Whether a destination with these filters asked for `event`: its type, and (when it names
    some) one of the services or sections the event concerns."""
    if ALL not in events and event.type not in events:
        return False
    if not services and not sections:
        return True
    return bool(set(services) & set(event.services)) or bool(set(sections) & set(event.sections))


def _error(field: str, message: str) -> FieldError:
    return FieldError("notify", field, "destination", message, file="notifications")


def _is_usable_url(url: str) -> bool:
    """Whether a request can be sent to `url` (what urllib and httpx both read, as the sender does)."""
    if len(url) > MAX_URL_CHARS or any(ord(c) < 0x21 or c == "\x7f" for c in url):
        return False
    try:
        parts = urlsplit(url)
        httpx.URL(url).host.encode("idna")  # a host IDNA refuses (an empty label) fails only when sent
    except (ValueError, httpx.InvalidURL):
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _filter_problems(field: str, names: tuple[str, ...]) -> list[FieldError]:
    bad = [name for name in names if not FILTER_NAME.fullmatch(name)]
    if not bad:
        return []
    shown = ", ".join(repr(name[:40]) for name in bad[:5])
    return [_error(field, f"{shown} cannot name a {field[:-1]}: use 1-64 letters, digits, '_', '-' or '.'")]


def _problems(name: str, kind: str, url: str, secret: str | None, events: tuple[str, ...],
              services: tuple[str, ...] = (), sections: tuple[str, ...] = ()) -> list[FieldError]:
    problems = []
    if not NAME.fullmatch(name):
        problems.append(_error("name", f"{name!r} cannot name a destination: use 1-64 lower-case letters, digits, "
                                       "'_' or '-'"))
    if kind not in KINDS:
        problems.append(_error("kind", f"{kind!r} is no destination kind (one of {', '.join(KINDS)})"))
    if not _is_usable_url(url):  # never echoed: a credential
        problems.append(_error("url", f"the URL must be http:// or https:// with a host, at most {MAX_URL_CHARS} "
                                      "characters, without spaces or control characters"))
    if secret is not None and kind == "webhook" and not _is_signing_secret(secret):
        problems.append(_error("secret", f"a signing secret is {SECRET_PREFIX} and the base64 of 24 to 64 bytes"))
    problems += _filter_problems("services", services) + _filter_problems("sections", sections)
    unknown = [event for event in events if event != ALL and event not in EVENT_TYPES]
    if unknown:
        problems.append(_error("events", f"unknown event type(s) {', '.join(map(repr, unknown))} (known: "
                                         f"{', '.join(EVENT_TYPES)}, or {ALL})"))
    return problems


def _is_signing_secret(secret: str) -> bool:
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError:
        return False
    return 24 <= len(key) <= 64
