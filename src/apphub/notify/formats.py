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

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apphub.notify import changesets
from apphub.notify.events import Event
from apphub.notify.outline import (
    BAD_NEWS,
    FOOTER_CHARS,
    NAME_CHARS,
    TYPE_TITLES,
    Line,
    Outline,
    change_set_outline,
    digest_outline,
    outline,
    parsed_time,
    shown,
)

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


DISCORD_COLORS = {"good": 0x2EA043, "bad": 0xD73A49, "neutral": 0x6E7781, "change": 0x0969DA}


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
    label = TYPE_TITLES.get(str(event.type)) or shown(event.type, NAME_CHARS) or "apphub"
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
    parsed = parsed_time(at)
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
    """One message for `events`: an event's own when there is one; a change and the sync event that
    followed it as one (changesets); and when more piled up for a chat destination (its rate
    reached, or a change set held), a digest of them within the same limits. A webhook is sent
    one event per request, each signed with its own id: more than one is a ValueError."""
    if not events:
        raise ValueError("no events to put in a message")
    if len(events) == 1:
        return body_for(kind, events[0])
    if changesets.is_change_set(events):  # a change and how the services took it
        content, label = change_set_outline(*events), f"{TYPE_TITLES[events[0].type]}, {TYPE_TITLES[events[1].type]}"
        color = _discord_color(events[1].type if events[1].type == "sync.failed" else events[0].type)
    else:
        content, label, color = digest_outline(events), f"{len(events)} events", DISCORD_COLORS["neutral"]
    if kind == "slack":
        return _slack_message(content)
    if kind == "discord":
        return _discord_message(content, label, color, events[-1].at)
    if kind == "wecom":
        return _wecom_message(content)
    if kind == "webhook":
        raise ValueError(f"a webhook message holds one event (its id signs it), not {len(events)}")
    raise ValueError(f"no message format for the destination kind '{kind}' (one of {', '.join(RENDERERS)})")
