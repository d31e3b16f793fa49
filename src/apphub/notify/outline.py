"""What a message says, before any service's markup: an `Outline` (a title, facts, items and a
footer) made from one event, a change set (a change and how the services took it), or a digest of
many. Pure functions, no I/O.

Every piece of text comes from an event and goes through `shown`: one line, every character
visible (a control character as its Unicode "control picture"), cut to a length that keeps one long
value from crowding out the others. Values are marked as such (`Span.value`), so that each service
shows them as code, character for character.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from apphub.notify.events import Event

# How much of one piece of an event a line shows: a 10 KB value must not crowd out the other changes.
VALUE_CHARS = 200
NAME_CHARS = 120  # a section, a key, a service
TITLE_CHARS = 600  # the summary (a refused hand edit's names the file, line and key)
FOOTER_CHARS = 300
MAX_FACTS = 12  # of an event type this module does not know, its first data entries


TYPE_TITLES: dict[str, str] = {
    "settings.changed": "Settings changed",
    "settings.refused": "Hand edit refused",
    "settings.rolled_back": "Rolled back",
    "sync.applied": "Applied",
    "sync.failed": "Failed and restored",
    "drift.found": "Drift found",
    "drift.repaired": "Drift repaired",
    "history.push_failed": "History push failed",
    "init.failed": "Initialiser failed",
    "notify.test": "Test",
}
BAD_NEWS = frozenset({"settings.refused", "sync.failed", "history.push_failed", "init.failed"})


class Span(NamedTuple):
    text: str
    value: bool = False  # a value from the event: shown as code, character for character


Line = tuple[Span, ...]


@dataclass(frozen=True)
class Outline:
    """One message's content: a title, facts (label, value), and items (one per change, service or
    event), with how many items exist beyond those listed (a rewrite past events.MAX_CHANGES)."""

    title: str
    facts: tuple[tuple[str, Line], ...] = ()
    items: tuple[Line, ...] = ()
    unlisted: int = 0
    noun: str = "changes"
    footer: str = ""


def outline(event: Event) -> Outline:
    if event.type in ("settings.changed", "settings.rolled_back"):
        return _changes_outline(event)
    if event.type in ("sync.applied", "sync.failed"):
        return _sync_outline(event)
    return _details_outline(event)


def digest_outline(events: Sequence[Event]) -> Outline:
    """Several events as one message (a destination's rate reached): a count by type, the span of
    time, and each event's summary on a line of its own."""
    counts: dict[str, int] = {}
    for event in events:
        counts[str(event.type)] = counts.get(str(event.type), 0) + 1
    kinds = ", ".join(f"{TYPE_TITLES.get(kind, kind)} ({count})" for kind, count in counts.items())
    title = f"{len(events)} events {_between(events[0].at, events[-1].at)}: {kinds}"
    items = tuple((Span(_clock(event.at), value=True), Span(" " + _title(event))) for event in events)
    footer = f"{shown(events[0].id, NAME_CHARS)} … {shown(events[-1].id, NAME_CHARS)}"
    return Outline(printable(title), items=items, noun="events", footer=footer)


def change_set_outline(change: Event, sync: Event) -> Outline:
    """A change and how the services took it, as one message: the change's title and the sync's,
    who and where, one line per service, then the changes."""
    told = _changes_outline(change)
    services = [service for service in _listed(sync.data.get("services")) if isinstance(service, Mapping)]
    per_service = [(shown(service.get("service"), NAME_CHARS) or "(blank)", _service_line(service)[1:])
                   for service in services]
    title = f"{_title(change)}; {_title(sync)}"
    footer = shown(f"{change.type} · {change.at} · {change.id} · {sync.id}", FOOTER_CHARS)
    return Outline(shown(title, TITLE_CHARS), told.facts + _facts(*per_service), told.items, told.unlisted,
                   "changes", footer)


def _changes_outline(event: Event) -> Outline:
    data = event.data
    facts = _facts(("By", _plain(_actor(data))), ("File", _code(data.get("file"))), ("Version", _code(event.version)),
                   ("Commit", _code(data.get("commit"))), ("Message", _plain(data.get("message"))),
                   ("Request", _code(data.get("request_id"))))
    items = tuple(_change_line(change) for change in _listed(data.get("changes")))
    total = data.get("changes_total")
    unlisted = max(total - len(items), 0) if isinstance(total, int) and not isinstance(total, bool) else 0
    return Outline(_title(event), facts, items, unlisted, "changes", _footer(event))


def _sync_outline(event: Event) -> Outline:
    data = event.data
    timings = data.get("timings_ms")
    total = timings.get("total") if isinstance(timings, Mapping) else None
    facts = _facts(("Version", _code(event.version)), ("Took", _plain(_duration(total))),
                   ("Stages", _plain(_durations(timings, skip="total"))))
    items = tuple(_service_line(service) for service in _listed(data.get("services")))
    return Outline(_title(event), facts, items, 0, "services", _footer(event))


def _details_outline(event: Event) -> Outline:
    """An event whose data this module has no layout for: its version and data entries as facts,
    but for the text its summary already says in full (a refused edit's file and reason)."""
    entries = list(event.data.items()) if isinstance(event.data, Mapping) else []
    said = str(event.summary)
    entries = [(key, value) for key, value in entries if not (isinstance(value, str) and value and value in said)]
    listed = [(shown(key, NAME_CHARS) or "(blank)", _code(value)) for key, value in entries[:MAX_FACTS]]
    facts = _facts(("Version", _code(event.version)), *listed)
    return Outline(_title(event), facts, footer=_footer(event))


def _change_line(change: object) -> Line:
    if not isinstance(change, Mapping):
        return _code(change) or (Span("(blank)"),)
    where = Span(f"[{shown(change.get('section'), NAME_CHARS)}] {shown(change.get('key'), NAME_CHARS)}: ")
    kind, old, new = change.get("change"), change.get("old"), change.get("new")
    if kind == "add":
        return (where, Span("added "), _value(new))
    if kind == "delete":
        return (where, Span("removed, was "), _value(old))
    return (where, _value(old), Span(" → "), _value(new))


def _service_line(service: object) -> Line:
    if not isinstance(service, Mapping):
        return _code(service) or (Span("(blank)"),)
    spans = [Span(shown(service.get("service"), NAME_CHARS), value=True), Span(f": {shown(service.get('result'))}")]
    action = service.get("action")
    if action not in (None, "", "none"):
        spans.append(Span(f" ({shown(action, NAME_CHARS)})"))
    took = _durations(service.get("timings_ms"))
    if took:
        spans.append(Span(f" · {took}"))
    if service.get("error"):
        spans.append(Span(f" · {shown(service.get('error'), VALUE_CHARS + NAME_CHARS)}"))
    return tuple(spans)


def _facts(*pairs: tuple[str, Line]) -> tuple[tuple[str, Line], ...]:
    return tuple((label, line) for label, line in pairs if line)


def _actor(data: Mapping[str, Any]) -> str:
    name, source = shown(data.get("actor"), NAME_CHARS), shown(data.get("source"), NAME_CHARS)
    return f"{name} ({source})" if name and source else name or source


def _title(event: Event) -> str:
    return shown(event.summary, TITLE_CHARS) or shown(event.type, NAME_CHARS) or "apphub"


def _footer(event: Event) -> str:
    return shown(f"{event.type} · {event.at} · {event.id}", FOOTER_CHARS)


def _plain(value: object) -> Line:
    text = shown(value)
    return (Span(text),) if text else ()


def _code(value: object) -> Line:
    text = shown(value)
    return (Span(text, value=True),) if text else ()


def _value(value: object) -> Span:
    """A setting's value, old or new: exactly as the event holds it (a secret's as the mask)."""
    if value is None:
        return Span("(none)")
    if value == "":
        return Span("(empty)")
    return Span(shown(value), value=True)


def _listed(found: object) -> list[object]:
    return list(found) if isinstance(found, list | tuple) else []


def _duration(ms: object) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return ""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _durations(timings: object, skip: str = "") -> str:
    if not isinstance(timings, Mapping):
        return ""
    return ", ".join(f"{shown(stage, NAME_CHARS)} {_duration(ms)}" for stage, ms in timings.items()
                     if stage != skip and _duration(ms))


def parsed_time(at: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(at))
    except ValueError:
        return None


def _between(first: object, last: object) -> str:
    """When a run of events happened: "between 15:23:01 and 15:23:58 UTC on 2026-12-04"."""
    start, end = parsed_time(first), parsed_time(last)
    if start is None or end is None:
        return f"from {shown(first, NAME_CHARS)} to {shown(last, NAME_CHARS)}"
    zone = f" {start.tzname()}" if start.tzname() else ""
    if start.date() == end.date():
        return f"between {start:%H:%M:%S} and {end:%H:%M:%S}{zone} on {start:%Y-%m-%d}"
    return f"between {start:%Y-%m-%d %H:%M:%S} and {end:%Y-%m-%d %H:%M:%S}{zone}"


def _clock(at: object) -> str:
    parsed = parsed_time(at)
    return parsed.strftime("%H:%M:%S") if parsed else shown(at, NAME_CHARS)


# -- text from an event, made safe to show ------------------------------------------------------

# A control character shows as its Unicode "control picture" (a newline as ␤), so a multi-line
# value stays on its line and an invisible character is seen.
_CONTROL_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)} | {0x7F: "\u2421"}


def printable(text: str) -> str:
    """`text` on one line, every character visible and encodable: a lone surrogate (which UTF-8
    cannot carry, and which json.loads can produce) as U+FFFD."""
    whole = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return whole.replace("\r\n", "\n").translate(_CONTROL_PICTURES)


def shown(value: object, limit: int = VALUE_CHARS) -> str:
    """Any value from an event as printable text of at most `limit` characters ("…" where cut)."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # a circular structure: an event's data should never hold one
            text = repr(value)
    text = printable(text[: 2 * limit])  # a 10 MB value costs no more than a short one
    return text if len(text) <= limit else text[: limit - 1] + "…"


