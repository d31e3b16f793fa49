"""What apphub tells people about: one `Event` per thing that happened, built from what the store,
the sync engine and the history already report.

An event is made once, with its id, and every destination gets that same event (a receiver can
de-duplicate on the id across retries). Its `data` holds no plaintext secret: the changes come from
the audit log's, which are masked when they are written, and no other builder is given a value.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from apphub.audit.log import Actor, Change

EventType = Literal[
    "settings.changed",  # a write through apphub, or a hand edit accepted
    "settings.refused",  # a hand edit refused
    "settings.rolled_back",  # a rollback to an earlier version
    "sync.applied",  # a change reached the services (per service: result, action, timings)
    "sync.failed",  # a service failed its gate and got its previous files back
    "drift.found",
    "drift.repaired",
    "history.push_failed",
    "init.failed",
    "notify.test",  # `apphub notify test`: what a destination receives, on demand
]
EVENT_TYPES: tuple[EventType, ...] = EventType.__args__  # type: ignore[attr-defined]
CHANGE_TYPES = frozenset({"settings.changed", "settings.rolled_back"})
SYNC_TYPES = frozenset({"sync.applied", "sync.failed"})

# How many per-key changes an event carries: a rewrite of a whole file is summarised past this.
MAX_CHANGES = 200


def awaits_sync(event: Event) -> bool:
    """A change the sync will report on (a `sync.*` event follows it)."""
    return event.type in CHANGE_TYPES and event.data.get("sync_expected") is True


def new_event_id() -> str:
    """`evt_` and 32 random hex digits: unique, with no clock or counter in it to guess."""
    return "evt_" + secrets.token_hex(16)


def iso_time(at: float) -> str:
    """Unix time `at` as events and deliveries write times: UTC, to the millisecond, with a Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> str:
    return iso_time(time.time())


@dataclass(frozen=True)
class Event:
    """One thing that happened. `services` and `sections`: what it concerns, for the destinations
    that ask for only some (empty: it concerns no service or section in particular)."""

    type: EventType
    summary: str  # one line a person reads
    version: str | None  # config.ini's version it concerns, if any
    data: Mapping[str, Any] = field(default_factory=dict)  # JSON-able, secrets masked
    services: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    id: str = field(default_factory=new_event_id)
    at: str = field(default_factory=now)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "at": self.at, "version": self.version, "summary": self.summary,
                "services": list(self.services), "sections": list(self.sections), "data": dict(self.data)}

    @classmethod
    def from_dict(cls, found: Mapping[str, Any]) -> Event:
        return cls(found["type"], found["summary"], found.get("version"), dict(found.get("data") or {}),
                   tuple(found.get("services") or ()), tuple(found.get("sections") or ()), found["id"], found["at"])


def settings_changed(actor: Actor, file: str, changes: Sequence[Change], version: str | None, *,
                     message: str | None = None, commit: str | None = None, sync_expected: bool = False,
                     audit_event: int | None = None, at: str | None = None) -> Event:
    """A version of `file` made by `actor` (its changes as the audit log holds them: masked).
    `sync_expected`: the sync will report how the services took it (a `sync.*` event follows);
    `audit_event`: the audit log's event of the write; `at`: when it was made (default: now)."""
    keys = [change for change in changes if change.key is not None]
    shown = [{"section": c.section, "key": c.key, "change": c.change, "old": c.old, "new": c.new}
             for c in keys[:MAX_CHANGES]]
    sections = tuple(dict.fromkeys(change.section for change in keys))
    what = ", ".join(f"[{c.section}] {c.key}" for c in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3
                                                                      else "")
    summary = f"{actor.name} ({actor.source}) changed {what or file}"
    data: dict[str, Any] = {"file": file, "actor": actor.name, "source": actor.source, "changes": shown,
                            "changes_total": len(keys), "message": message, "commit": commit,
                            "sync_expected": sync_expected, "audit_event": audit_event}
    if actor.request_id:
        data["request_id"] = actor.request_id
    kind: EventType = "settings.rolled_back" if actor.source == "rollback" else "settings.changed"
    return Event(kind, summary, version, data, sections=sections, at=at or now())


def sync_applied(version: str, outcomes: Iterable[Mapping[str, Any]], timings_ms: Mapping[str, float]) -> Event:
    """A change carried to the services: per service its result, action and timings (ServiceOutcome.to_dict)."""
    services = [dict(outcome) for outcome in outcomes]
    failed = [s["service"] for s in services if s.get("result") == "failed"]
    done = [s["service"] for s in services if s.get("result") == "applied"]
    total = timings_ms.get("total")
    took = f" in {total:.0f} ms" if total is not None else ""
    if failed:
        summary = f"{', '.join(failed)} failed on the new version and got the previous one back"
        kind: EventType = "sync.failed"
    elif done:
        summary = f"{', '.join(done)} took the new version{took}"
        kind = "sync.applied"
    else:
        summary = f"no service needed a change for the new version (checked{took})"
        kind = "sync.applied"
    return Event(kind, summary, version, {"services": services, "timings_ms": dict(timings_ms)},
                 services=tuple(s["service"] for s in services))


def drift(found: Mapping[str, Sequence[str]], repaired: Iterable[str], version: str | None) -> list[Event]:
    """Files of services edited outside apphub (`found`: service -> what was edited): one event for
    those the sync put back (`drift.repaired`), one for those it only reports (`drift.found`)."""
    fixed = [name for name in found if name in set(repaired)]
    left = [name for name in found if name not in fixed]
    made = []
    for kind, names, done in (("drift.repaired", fixed, "put back"), ("drift.found", left, "left as edited")):
        if names:
            edited = {name: list(found[name]) for name in names}
            what = "; ".join(f"{name}: {', '.join(paths)}" for name, paths in edited.items())
            made.append(Event(cast(EventType, kind), f"edited outside apphub, {done}: {what}", version,
                              {"edited": edited}, services=tuple(names)))
    return made


def push_failed(remote: str, branch: str | None, error: str, failures: int) -> Event:
    """The history could not be pushed to its remote (`error` already has any credential redacted)."""
    return Event("history.push_failed", f"the history could not be pushed to {remote}: {error}", None,
                 {"remote": remote, "branch": branch, "error": error, "failures": failures})


def init_failed(run: Mapping[str, Any]) -> Event:
    """A product's initialiser that did not finish (ProductRun.to_dict: its steps' errors are
    redacted by the step runner)."""
    steps = [{"step": step.get("name"), "state": step.get("state"),
              "error": step.get("last_error") or step.get("detail")}
             for step in run.get("steps") or () if step.get("state") in ("failed", "manual")]
    why = "; ".join(f"{step['step']}: {step['error'] or step['state']}" for step in steps)
    service = str(run.get("service"))
    return Event("init.failed", f"the initialiser of {run.get('title') or service} did not finish: {why or 'failed'}",
                 None, {"service": service, "state": run.get("state"), "trigger": run.get("trigger"),
                        "attempt": run.get("attempt"), "steps": steps}, services=(service,))


def refused(file: str, reason: str, version: str | None) -> Event:
    """A hand edit of `file` that was not taken (its reason already names file, line and key, masked)."""
    return Event("settings.refused", f"a hand edit of {file} was refused: {reason}", version,
                 {"file": file, "reason": reason})


def test_event(destination: str) -> Event:
    return Event("notify.test", f"a test from apphub to the destination '{destination}'", None,
                 {"destination": destination})
