"""The request body each kind of destination documents, built from events: pure functions, no I/O.

A chat message (Slack, Discord, WeCom) is for a person: what happened (the event's summary), who did
it and where, then the changes or the services one per line, cut to the service's limits with a
last line that says how many were left out. A generic webhook is for a machine: the whole event, in
the payload structure the Standard Webhooks specification recommends.

Nothing is added that the event does not hold, and no event holds a plaintext secret (events.py):
values are shown as they are (as code), a masked one as the mask. Text from an event is escaped
for the service's markup, so that it cannot ping anyone or pass for a link.

The limits, and where they come from:
- Slack: Block Kit reference (api.slack.com/reference/block-kit/blocks): a section's text at most
  3,000 characters, at most 50 blocks in a message. chat.postMessage answers `msg_blocks_too_long`
  past about 13,000 characters of blocks in all, although no page documents it (slackapi/bolt-js
  #2509): we keep to 12,000. `text` is the fallback shown in notifications (Slack truncates past
  40,000 and advises under 4,000): ours is the summary, at most 3,000.
- Discord: Execute Webhook (discord.com/developers/docs/resources/webhook#execute-webhook):
  `content` at most 2,000 characters, at most 10 embeds; embed limits (docs/resources/message
  #embed-object-embed-limits): title 256, description 4,096, 25 fields of name 256 and value
  1,024, footer 2,048, and 6,000 characters across all the embeds of a message. Counted here in
  UTF-16 code units, which is never less than the characters Discord counts.
- WeCom group robot (developer.work.weixin.qq.com/document/path/91770, 群机器人配置说明):
  `markdown.content` at most 4,096 bytes of UTF-8; past it the robot answers errcode 40058.
- Standard Webhooks (github.com/standard-webhooks/standard-webhooks, spec "Payload structure"):
  `type`, `timestamp` (when the event happened), `data`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from apphub.notify.events import Event

SLACK_SECTION_CHARS = 3000
SLACK_MAX_BLOCKS = 50
SLACK_BLOCKS_CHARS = 12_000
SLACK_TEXT_CHARS = 3000

DISCORD_CONTENT_CHARS = 2000
DISCORD_TITLE_CHARS = 256
DISCORD_DESCRIPTION_CHARS = 4096
DISCORD_FOOTER_CHARS = 2048
DISCORD_EMBEDS_TOTAL_CHARS = 6000
DISCORD_USERNAME = "apphub"

WECOM_CONTENT_BYTES = 4096

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
DISCORD_COLORS = {"good": 0x2EA043, "bad": 0xD73A49, "neutral": 0x6E7781, "change": 0x0969DA}


# -- what a message says, before any service's markup -----------------------------------------

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
    footer = f"{_shown(events[0].id, NAME_CHARS)} … {_shown(events[-1].id, NAME_CHARS)}"
    return Outline(_printable(title), items=items, noun="events", footer=footer)


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
    shown = [(_shown(key, NAME_CHARS) or "(blank)", _code(value)) for key, value in entries[:MAX_FACTS]]
    facts = _facts(("Version", _code(event.version)), *shown)
    return Outline(_title(event), facts, footer=_footer(event))


def _change_line(change: object) -> Line:
    if not isinstance(change, Mapping):
        return _code(change) or (Span("(blank)"),)
    where = Span(f"[{_shown(change.get('section'), NAME_CHARS)}] {_shown(change.get('key'), NAME_CHARS)}: ")
    kind, old, new = change.get("change"), change.get("old"), change.get("new")
    if kind == "add":
        return (where, Span("added "), _value(new))
    if kind == "delete":
        return (where, Span("removed, was "), _value(old))
    return (where, _value(old), Span(" → "), _value(new))


def _service_line(service: object) -> Line:
    if not isinstance(service, Mapping):
        return _code(service) or (Span("(blank)"),)
    spans = [Span(_shown(service.get("service"), NAME_CHARS), value=True), Span(f": {_shown(service.get('result'))}")]
    action = service.get("action")
    if action not in (None, "", "none"):
        spans.append(Span(f" ({_shown(action, NAME_CHARS)})"))
    took = _durations(service.get("timings_ms"))
    if took:
        spans.append(Span(f" · {took}"))
    if service.get("error"):
        spans.append(Span(f" · {_shown(service.get('error'), VALUE_CHARS + NAME_CHARS)}"))
    return tuple(spans)


def _facts(*pairs: tuple[str, Line]) -> tuple[tuple[str, Line], ...]:
    return tuple((label, line) for label, line in pairs if line)


def _actor(data: Mapping[str, Any]) -> str:
    name, source = _shown(data.get("actor"), NAME_CHARS), _shown(data.get("source"), NAME_CHARS)
    return f"{name} ({source})" if name and source else name or source


def _title(event: Event) -> str:
    return _shown(event.summary, TITLE_CHARS) or _shown(event.type, NAME_CHARS) or "apphub"


def _footer(event: Event) -> str:
    return _shown(f"{event.type} · {event.at} · {event.id}", FOOTER_CHARS)


def _plain(value: object) -> Line:
    text = _shown(value)
    return (Span(text),) if text else ()


def _code(value: object) -> Line:
    text = _shown(value)
    return (Span(text, value=True),) if text else ()


def _value(value: object) -> Span:
    """A setting's value, old or new: exactly as the event holds it (a secret's as the mask)."""
    if value is None:
        return Span("(none)")
    if value == "":
        return Span("(empty)")
    return Span(_shown(value), value=True)


def _listed(found: object) -> list[object]:
    return list(found) if isinstance(found, list | tuple) else []


def _duration(ms: object) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return ""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _durations(timings: object, skip: str = "") -> str:
    if not isinstance(timings, Mapping):
        return ""
    shown = [f"{_shown(stage, NAME_CHARS)} {_duration(ms)}" for stage, ms in timings.items()
             if stage != skip and _duration(ms)]
    return ", ".join(shown)


def _parsed_time(at: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(at))
    except ValueError:
        return None


def _between(first: object, last: object) -> str:
    """When a run of events happened: "between 15:23:01 and 15:23:58 UTC on 2026-12-04"."""
    start, end = _parsed_time(first), _parsed_time(last)
    if start is None or end is None:
        return f"from {_shown(first, NAME_CHARS)} to {_shown(last, NAME_CHARS)}"
    zone = f" {start.tzname()}" if start.tzname() else ""
    if start.date() == end.date():
        return f"between {start:%H:%M:%S} and {end:%H:%M:%S}{zone} on {start:%Y-%m-%d}"
    return f"between {start:%Y-%m-%d %H:%M:%S} and {end:%Y-%m-%d %H:%M:%S}{zone}"


def _clock(at: object) -> str:
    parsed = _parsed_time(at)
    return parsed.strftime("%H:%M:%S") if parsed else _shown(at, NAME_CHARS)


# -- text from an event, made safe to show ------------------------------------------------------

# A control character shows as its Unicode "control picture" (a newline as ␤), so a multi-line
# value stays on its line and an invisible character is seen.
_CONTROL_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)} | {0x7F: "\u2421"}


def _printable(text: str) -> str:
    """`text` on one line, every character visible and encodable: a lone surrogate (which UTF-8
    cannot carry, and which json.loads can produce) as U+FFFD."""
    whole = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return whole.replace("\r\n", "\n").translate(_CONTROL_PICTURES)


def _shown(value: object, limit: int = VALUE_CHARS) -> str:
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
    text = _printable(text[: 2 * limit])  # a 10 MB value costs no more than a short one
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- each service's markup, and fitting text into its limits ------------------------------------

Measure = Callable[[str], int]


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Markup:
    """How one service's markdown shows text from an event: escaped where it is text, as a code
    span where it is a value (unless the value holds a backtick, which would end the span)."""

    escape: Callable[[str], str]
    bold_mark: str
    measure: Measure
    escape_in_code: bool  # whether the service still reads its markup inside a code span

    def code(self, text: str) -> str:
        if "`" in text:
            return self.escape(text)
        return "`" + (self.escape(text) if self.escape_in_code else text) + "`"

    def bold(self, text: str) -> str:
        return f"{self.bold_mark}{text}{self.bold_mark}"

    def line(self, spans: Line) -> str:
        return "".join(self.code(span.text) if span.value else self.escape(span.text) for span in spans)


def _translated(table: dict[str, str]) -> Callable[[str], str]:
    codes = str.maketrans(table)
    return lambda text: text.translate(codes)


def _wecom_escape(text: str) -> str:
    return text.replace("<", "<\u200b").replace("](", "]\u200b(")


# Slack's mrkdwn reads only &, < and > as control characters and documents escaping them as HTML
# entities (api.slack.com/reference/surfaces/formatting#escaping), inside code spans too: that is
# what keeps `<!everyone>` or `<http://…|text>` in a value from pinging or linking. (Slack has no
# escape for * _ ~: text from an event may turn bold, which is why values are shown as code.)
SLACK = Markup(_translated({"&": "&amp;", "<": "&lt;", ">": "&gt;"}), "*", utf16_units, escape_in_code=True)
# Discord's markdown takes a backslash before any punctuation as "show this character" (the escape
# rule of simple-markdown, which Discord's client uses). `<` starts a mention, a channel, an emoji
# or a timestamp; `[...](...)` a masked link; `#` and `-` a heading or a list. Nothing inside a
# code span is read.
DISCORD = Markup(_translated({c: "\\" + c for c in "\\*_~`|<>[]()#-"}), "**", utf16_units, escape_in_code=False)
# WeCom's markdown has no escape character: a zero-width space after `<` keeps `<@userid>` (a
# mention) and `<font …>` from being read as markup, and one inside `](` keeps `[text](url)` from
# passing for a link, while a person sees the same characters.
WECOM = Markup(_wecom_escape, "**", utf8_bytes, escape_in_code=True)

ELLIPSIS = "…"
# What a cut can leave half done: an HTML entity (Slack) or an escaping backslash (Discord).
_HALF_ESCAPE = re.compile(r"(&[a-z]{0,4}|\\)$")


def clipped(text: str, limit: int, measure: Measure) -> str:
    """`text` cut on a character boundary to at most `limit` by `measure`, ending in "…" if cut."""
    if measure(text) <= limit:
        return text
    budget = limit - measure(ELLIPSIS)
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return _HALF_ESCAPE.sub("", text[:low]) + ELLIPSIS if budget > 0 else ""


def fitted(lines: Sequence[str], limit: int, measure: Measure, noun: str, unlisted: int = 0) -> str:
    """As many `lines` as fit in `limit`, one a line, then (when some did not fit, or `unlisted`
    more exist) a last line that says how many more there are."""
    total = len(lines) + unlisted
    reserve = measure("\n" + _more(total, noun))  # the widest "more" line it could need
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        cost = measure(line) + (1 if kept else 0)
        last = index == len(lines) - 1 and not unlisted
        room = limit - used - (0 if last else reserve)
        if cost > room:
            if not kept and room > measure(ELLIPSIS):
                kept.append(clipped(line, room, measure))  # a first line too long alone: shown cut
            break
        kept.append(line)
        used += cost
    more = total - len(kept)
    text = "\n".join([*kept, _more(more, noun)] if more else kept)
    return clipped(text, limit, measure)  # a net: the sums above already keep within `limit`


def _more(count: int, noun: str) -> str:
    return f"{ELLIPSIS} and {count} more {noun}"


def _fact_lines(markup: Markup, facts: Sequence[tuple[str, Line]]) -> list[str]:
    return [f"{markup.bold(markup.escape(label) + ':')} {markup.line(value)}" for label, value in facts]


def _item_lines(markup: Markup, items: Sequence[Line]) -> list[str]:
    return ["• " + markup.line(item) for item in items]


# -- Slack --------------------------------------------------------------------------------------

def slack(event: Event) -> dict[str, Any]:
    """A Slack incoming-webhook payload: `text` (the notification's fallback) and section blocks."""
    return _slack_message(outline(event))


def _slack_message(content: Outline) -> dict[str, Any]:
    title = clipped(SLACK.escape(content.title), SLACK_SECTION_CHARS - 2, SLACK.measure)
    blocks = [_slack_section(SLACK.bold(title))]
    if content.facts:
        blocks.append(_slack_section(fitted(_fact_lines(SLACK, content.facts), SLACK_SECTION_CHARS, SLACK.measure,
                                            "details")))
    footer = clipped(SLACK.escape(content.footer), SLACK_SECTION_CHARS, SLACK.measure)
    if content.items or content.unlisted:
        room = SLACK_BLOCKS_CHARS - sum(_slack_chars(block) for block in blocks) - SLACK.measure(footer)
        listed = fitted(_item_lines(SLACK, content.items), room, SLACK.measure, content.noun, content.unlisted)
        blocks += [_slack_section(part) for part in _parts(listed, SLACK_SECTION_CHARS, SLACK.measure)]
    if footer:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": clipped(SLACK.escape(content.title), SLACK_TEXT_CHARS, SLACK.measure),
            "blocks": blocks[:SLACK_MAX_BLOCKS]}


def _slack_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _slack_chars(block: Mapping[str, Any]) -> int:
    return SLACK.measure(block["text"]["text"])


def _parts(text: str, limit: int, measure: Measure) -> list[str]:
    """`text` split at line ends into parts of at most `limit` (a line longer than that is cut)."""
    parts: list[str] = []
    for line in text.split("\n"):
        line = clipped(line, limit, measure)
        if parts and measure(parts[-1]) + 1 + measure(line) <= limit:
            parts[-1] += "\n" + line
        else:
            parts.append(line)
    return parts


# -- Discord ------------------------------------------------------------------------------------

def discord(event: Event) -> dict[str, Any]:
    """A Discord execute-webhook payload: the summary as `content`, the details in one embed."""
    label = TYPE_TITLES.get(str(event.type)) or _shown(event.type, NAME_CHARS) or "apphub"
    return _discord_message(outline(event), label, _discord_color(str(event.type)), event.at)


def _discord_message(content: Outline, label: str, color: int, at: object) -> dict[str, Any]:
    title = clipped(DISCORD.escape(label), DISCORD_TITLE_CHARS, DISCORD.measure)
    footer = clipped(content.footer, DISCORD_FOOTER_CHARS, DISCORD.measure)  # a footer is plain text
    room = min(DISCORD_DESCRIPTION_CHARS,
               DISCORD_EMBEDS_TOTAL_CHARS - DISCORD.measure(title) - DISCORD.measure(footer))
    embed: dict[str, Any] = {"title": title, "color": color}
    description = _described(content, room)
    if description:
        embed["description"] = description
    if footer:
        embed["footer"] = {"text": footer}
    parsed = _parsed_time(at)
    if parsed is not None:
        embed["timestamp"] = parsed.isoformat()
    return {"username": DISCORD_USERNAME,
            "content": clipped(DISCORD.escape(content.title), DISCORD_CONTENT_CHARS, DISCORD.measure),
            "embeds": [embed],
            # A value like @everyone or <@&role> in a setting must never ping anyone.
            "allowed_mentions": {"parse": []}}


def _described(content: Outline, room: int) -> str:
    """The facts, then the items, in `room`: the facts take at most half of it."""
    facts = fitted(_fact_lines(DISCORD, content.facts), room // 2, DISCORD.measure, "details") if content.facts else ""
    if not (content.items or content.unlisted):
        return facts
    gap = 2 if facts else 0
    listed = fitted(_item_lines(DISCORD, content.items), room - DISCORD.measure(facts) - gap, DISCORD.measure,
                    content.noun, content.unlisted)
    return f"{facts}\n\n{listed}" if facts else listed


def _discord_color(kind: str) -> int:
    if kind in BAD_NEWS:
        return DISCORD_COLORS["bad"]
    if kind in ("sync.applied", "drift.repaired"):
        return DISCORD_COLORS["good"]
    if kind in ("settings.changed", "settings.rolled_back"):
        return DISCORD_COLORS["change"]
    return DISCORD_COLORS["neutral"]


# -- WeCom --------------------------------------------------------------------------------------

def wecom(event: Event) -> dict[str, Any]:
    """A WeCom group robot's markdown message."""
    return _wecom_message(outline(event))


def _wecom_message(content: Outline) -> dict[str, Any]:
    measure = WECOM.measure
    title = WECOM.bold(clipped(WECOM.escape(content.title), WECOM_CONTENT_BYTES // 4, measure))
    footer = f'<font color="comment">{clipped(WECOM.escape(content.footer), FOOTER_CHARS, measure)}</font>'
    room = WECOM_CONTENT_BYTES - measure(title) - measure(footer) - 3  # three line ends join the four parts
    facts = ["> " + line for line in _fact_lines(WECOM, content.facts)]
    shown_facts = fitted(facts, room // 2, measure, "details") if facts else ""
    room -= measure(shown_facts)
    listed = (fitted(_item_lines(WECOM, content.items), room, measure, content.noun, content.unlisted)
              if content.items or content.unlisted else "")
    text = "\n".join(part for part in (title, shown_facts, listed, footer if content.footer else "") if part)
    return {"msgtype": "markdown", "markdown": {"content": clipped(text, WECOM_CONTENT_BYTES, measure)}}


# -- a generic webhook --------------------------------------------------------------------------

def webhook(event: Event) -> dict[str, Any]:
    """The Standard Webhooks payload: `type`, `timestamp` (when the event happened), and `data`:
    the rest of the event, whole (a machine reads it; its id is also the `webhook-id` header)."""
    data = _encodable(event.as_dict())
    return {"type": data.pop("type"), "timestamp": data.pop("at"), "data": data}


def _encodable(value: Any) -> Any:
    """`value` with any lone surrogate in its strings replaced, so that its JSON can be sent as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, Mapping):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


# -- choosing the format ------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[Event], dict[str, Any]]] = {
    "webhook": webhook, "slack": slack, "discord": discord, "wecom": wecom}


def body_for(kind: str, event: Event) -> dict[str, Any]:
    """The body a destination of `kind` is sent for `event` (ValueError for an unknown kind)."""
    try:
        render = RENDERERS[kind]
    except KeyError:
        raise ValueError(f"no message format for the destination kind '{kind}' "
                         f"(one of {', '.join(RENDERERS)})") from None
    return render(event)


def body_for_many(kind: str, events: Sequence[Event]) -> dict[str, Any]:
    """One message for `events`: an event's own when there is one, and when several piled up for a
    chat destination (its rate reached), a digest of them within the same limits. A webhook is sent
    one event per request, each signed with its own id: more than one is a ValueError."""
    if not events:
        raise ValueError("no events to put in a message")
    if len(events) == 1:
        return body_for(kind, events[0])
    if kind == "slack":
        return _slack_message(digest_outline(events))
    if kind == "discord":
        return _discord_message(digest_outline(events), f"{len(events)} events", DISCORD_COLORS["neutral"],
                                events[-1].at)
    if kind == "wecom":
        return _wecom_message(digest_outline(events))
    if kind == "webhook":
        raise ValueError(f"a webhook message holds one event (its id signs it), not {len(events)}")
    raise ValueError(f"no message format for the destination kind '{kind}' (one of {', '.join(RENDERERS)})")
