"""HTTP receivers on loopback shaped like the services apphub notifies, for any test that sends.

Each is a real HTTP server on 127.0.0.1 in a thread. It records every request, checks the body
against what the service documents, notes what the service would read as a mention that pings
someone, and answers as the service does (status, body, headers). A test can plan answers ahead
(fail N times, hang, 429 with Retry-After, 410 Gone) that come before the service's own.

The limits below are written from the services' documentation, not taken from apphub's code, so a
wrong constant in apphub fails a test instead of agreeing with itself:
- Slack: incoming webhooks answer 200 "ok", or 400 with `invalid_payload`, `no_text` or
  `invalid_blocks` (api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks,
  api.slack.com/messaging/webhooks); Block Kit: at most 50 blocks, a section's text 1 to 3,000
  characters, at most 10 fields of 2,000, a context at most 10 elements, a header 150.
- Discord: Execute Webhook answers 204, or 200 and the message with `?wait=true`; 400 with
  `{"code": 50035, "message": "Invalid Form Body", "errors": ...}`, or 50006 for an empty message;
  429 with `{"message", "retry_after", "global"}` and Retry-After. Content 2,000; 10 embeds; title
  256, description 4,096, 25 fields (name 256, value 1,024), footer 2,048, author 256, 6,000 in
  all the embeds; a username of 1 to 80 characters without "discord" or "clyde".
- WeCom group robot: always HTTP 200 with `{"errcode", "errmsg"}`; markdown content at most 4,096
  bytes (errcode 40058), text 2,048 bytes; 40008 an unknown msgtype; 45009 over its rate.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOKEN = "T0KEN-in-the-url-5e6f7a"  # a chat webhook's URL is its credential


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes
    problems: list[str] = field(default_factory=list)  # what the service would refuse
    pings: list[str] = field(default_factory=list)  # what the service would read as a mention

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # how long to wait before answering (a hanging receiver)

    @classmethod
    def of_json(cls, status: int, found: object, **headers: str) -> Answer:
        return cls(status, json.dumps(found).encode(), {"content-type": "application/json", **headers})


class Receiver:
    """The server, the records and the planned answers; `answer` is what each service overrides."""

    def __init__(self, port: int = 0) -> None:
        self.port = port  # 0: any free one (a test that restarts a receiver at the same URL names it)
        self.got: list[Request] = []
        self._planned: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- what a test reads and plans ----------------------------------------------------------

    @property
    def pings(self) -> list[str]:
        return [ping for request in self.got for ping in request.pings]

    @property
    def problems(self) -> list[str]:
        return [problem for request in self.got for problem in request.problems]

    def plan(self, *answers: Answer) -> None:
        """Answers to give, in order, before the service's own."""
        with self._lock:
            self._planned.extend(answers)

    def fail(self, times: int, status: int = 503) -> None:
        self.plan(*[Answer(status, b"down for maintenance")] * times)

    def hang(self, seconds: float, times: int = 1) -> None:
        self.plan(*[Answer(200, b"ok", delay_s=seconds)] * times)

    def rate_limit(self, retry_after: float, times: int = 1) -> None:
        self.plan(*[Answer(429, b"slow down", {"retry-after": str(math.ceil(retry_after))})] * times)

    def gone(self) -> None:
        self.plan(Answer(410, b"gone"))

    def reset(self) -> None:
        with self._lock:
            self.got.clear()
            self._planned.clear()

    def answer(self, request: Request) -> Answer:
        return Answer(200, b"ok")

    # -- the server -----------------------------------------------------------------------------

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                parts = urlsplit(self.path)
                request = Request(parts.path, parse_qs(parts.query),
                                  {name.lower(): value for name, value in self.headers.items()}, body)
                answer = receiver._respond(request)
                if answer.delay_s:
                    receiver._closing.wait(answer.delay_s)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up on a hanging answer: a broken pipe, as intended

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook/{TOKEN}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # a hanging answer ends now
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _respond(self, request: Request) -> Answer:
        with self._lock:
            self.got.append(request)
            planned = self._planned.popleft() if self._planned else None
        return planned or self.answer(request)


def _parsed(request: Request) -> Any:
    try:
        return request.json()
    except ValueError:  # not JSON, or not UTF-8
        return None


# -- Slack --------------------------------------------------------------------------------------

SLACK_BLOCK_TYPES = {"section", "context", "divider", "header", "actions", "image", "rich_text", "markdown", "video",
                     "file", "input"}
# Slack reads <!everyone>, <!channel>, <!here>, <@U…>, <!subteam^…> as mentions and <url|text> as a link.
SLACK_CONTROL = re.compile(r"<[^<>]*>")


class SlackReceiver(Receiver):
    def answer(self, request: Request) -> Answer:
        payload = _parsed(request)
        if not isinstance(payload, dict):
            request.problems.append("the body is not a JSON object")
            return Answer(400, b"invalid_payload")
        request.problems += slack_problems(payload)
        request.pings += [found for text in _slack_texts(payload) for found in SLACK_CONTROL.findall(text)]
        if not (payload.get("text") or payload.get("blocks") or payload.get("attachments")):
            return Answer(400, b"no_text")
        if request.problems:
            return Answer(400, b"invalid_blocks" if "blocks" in payload else b"invalid_payload")
        return Answer(200, b"ok", {"content-type": "text/html"})


def slack_problems(payload: dict[str, Any]) -> list[str]:
    problems = []
    if "text" in payload and not isinstance(payload["text"], str):
        problems.append("text is not a string")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list):
        return [*problems, "blocks is not a list"]
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks (at most 50)")
    for index, block in enumerate(blocks):
        problems += [f"blocks[{index}]: {problem}" for problem in _slack_block_problems(block)]
    # chat.postMessage refuses about 13,000 characters of blocks in all (msg_blocks_too_long), undocumented
    total = sum(len(text) for text in _slack_texts({"blocks": blocks}))
    if total > 13_000:
        problems.append(f"{total} characters in all the blocks (Slack refuses past about 13,000)")
    return problems


def _slack_block_problems(block: object) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in SLACK_BLOCK_TYPES:
        return ["not a block of a known type"]
    if len(str(block.get("block_id", ""))) > 255:
        return ["block_id longer than 255"]
    if block["type"] == "section":
        if "text" not in block and "fields" not in block:
            return ["a section without text or fields"]
        problems = _slack_text_problems(block["text"], 3000) if "text" in block else []
        fields = block.get("fields", [])
        if len(fields) > 10:
            problems.append(f"{len(fields)} fields (at most 10)")
        return problems + [problem for item in fields for problem in _slack_text_problems(item, 2000)]
    if block["type"] == "context":
        elements = block.get("elements", [])
        if not 1 <= len(elements) <= 10:
            return [f"{len(elements)} context elements (1 to 10)"]
        return [problem for item in elements if item.get("type") != "image"
                for problem in _slack_text_problems(item, 3000)]
    if block["type"] == "header":
        return _slack_text_problems(block.get("text"), 150, kinds=("plain_text",))
    return []


def _slack_text_problems(text: object, limit: int, kinds: tuple[str, ...] = ("mrkdwn", "plain_text")) -> list[str]:
    if not isinstance(text, dict) or text.get("type") not in kinds or not isinstance(text.get("text"), str):
        return [f"not a text object ({' or '.join(kinds)})"]
    if not 1 <= len(text["text"]) <= limit:
        return [f"text of {len(text['text'])} characters (1 to {limit})"]
    return []


def _slack_texts(payload: dict[str, Any]) -> Iterator[str]:
    """Every text Slack reads as mrkdwn: the fallback and the blocks' text objects."""
    if isinstance(payload.get("text"), str):
        yield payload["text"]
    for block in payload.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        items = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        yield from (item["text"] for item in items if isinstance(item, dict) and isinstance(item.get("text"), str))


# -- Discord ------------------------------------------------------------------------------------

# Mentions Discord reads in `content` (never in embeds), by the allowed_mentions type that permits them.
DISCORD_MENTIONS = {"everyone": re.compile(r"(?<!\\)@(?:everyone|here)"), "users": re.compile(r"<@!?\d+>"),
                    "roles": re.compile(r"<@&\d+>")}


def utf16(text: str) -> int:
    """Discord counts a message's length in UTF-16 code units (an emoji counts two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class DiscordReceiver(Receiver):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def discord_rate_limit(self, retry_after: float, times: int = 1) -> None:
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        self.plan(*[Answer.of_json(429, body, **{"retry-after": str(math.ceil(retry_after)),
                                                  "x-ratelimit-scope": "shared"})] * times)

    def answer(self, request: Request) -> Answer:
        payload = _parsed(request)
        if not isinstance(payload, dict):
            request.problems.append("the body is not a JSON object")
            return Answer.of_json(400, {"code": 50109, "message": "The request body contains invalid JSON."})
        errors = discord_problems(payload)
        request.problems += [f"{where}: {problem}" for where, problem in errors.items()]
        request.pings += _discord_pings(payload)
        if errors:
            return Answer.of_json(400, {"code": 50035, "message": "Invalid Form Body", "errors": {
                where: {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": problem}]}
                for where, problem in errors.items()}})
        if not (payload.get("content") or payload.get("embeds")):
            request.problems.append("an empty message")
            return Answer.of_json(400, {"code": 50006, "message": "Cannot send an empty message"})
        self.sent += 1
        if request.query.get("wait") == ["true"]:
            return Answer.of_json(200, {"id": str(1000 + self.sent), "type": 0, "channel_id": "42", "webhook_id": "7",
                                        "content": payload.get("content", ""), "embeds": payload.get("embeds", []),
                                        "author": {"username": payload.get("username", "hook"), "bot": True},
                                        "timestamp": datetime.now(UTC).isoformat()})
        return Answer(204)


def discord_problems(payload: dict[str, Any]) -> dict[str, str]:
    """Where the body breaks Discord's rules, and how (an empty dict: none)."""
    problems: dict[str, str] = {}
    content = payload.get("content")
    if content is not None and (not isinstance(content, str) or utf16(content) > 2000):
        problems["content"] = "Must be 2000 or fewer in length."
    username = payload.get("username")
    if username is not None and (not 1 <= len(str(username)) <= 80
                                 or re.search("discord|clyde", str(username), re.IGNORECASE)):
        problems["username"] = "Must be 1 to 80 characters, without 'discord' or 'clyde'."
    mentions = payload.get("allowed_mentions")
    if mentions is not None and not (isinstance(mentions, dict)
                                     and set(mentions.get("parse", [])) <= set(DISCORD_MENTIONS)):
        problems["allowed_mentions"] = "Not an allowed mentions object."
    embeds = payload.get("embeds", [])
    if not isinstance(embeds, list) or len(embeds) > 10:
        return {**problems, "embeds": "Must be 10 or fewer in length."}
    total = 0
    for index, embed in enumerate(embeds):
        found, size = _discord_embed_problems(embed)
        problems |= {f"embeds.{index}.{where}": problem for where, problem in found.items()}
        total += size
    if total > 6000:
        problems["embeds"] = f"Embed size exceeds maximum size of 6000 ({total})."
    return problems


def _discord_embed_problems(embed: object) -> tuple[dict[str, str], int]:
    if not isinstance(embed, dict):
        return {"": "Not an embed object."}, 0
    texts = {"title": (embed.get("title"), 256), "description": (embed.get("description"), 4096),
             "footer.text": ((embed.get("footer") or {}).get("text"), 2048),
             "author.name": ((embed.get("author") or {}).get("name"), 256)}
    fields = embed.get("fields", [])
    problems = {} if len(fields) <= 25 else {"fields": "Must be 25 or fewer in length."}
    for index, item in enumerate(fields):
        texts[f"fields.{index}.name"] = (item.get("name"), 256)
        texts[f"fields.{index}.value"] = (item.get("value"), 1024)
        if not item.get("name") or not item.get("value"):
            problems[f"fields.{index}"] = "This field is required (name and value)."
    if "footer" in embed and not texts["footer.text"][0]:
        problems["footer.text"] = "This field is required."
    size = 0
    for where, (text, limit) in texts.items():
        if text is None:
            continue
        if not isinstance(text, str) or utf16(text) > limit:
            problems[where] = f"Must be {limit} or fewer in length."
        else:
            size += utf16(text)
    if "timestamp" in embed:
        try:
            datetime.fromisoformat(embed["timestamp"])
        except (TypeError, ValueError):
            problems["timestamp"] = "Could not parse the timestamp. Should be ISO8601."
    color = embed.get("color", 0)
    if not isinstance(color, int) or not 0 <= color <= 0xFFFFFF:
        problems["color"] = "Int value should be between 0 and 16777215."
    return problems, size


def _discord_pings(payload: dict[str, Any]) -> list[str]:
    content = payload.get("content")
    if not isinstance(content, str):
        return []
    mentions = payload.get("allowed_mentions")
    allowed = set(DISCORD_MENTIONS) if not isinstance(mentions, dict) else set(mentions.get("parse", []))
    return [found for kind in sorted(allowed) for found in DISCORD_MENTIONS[kind].findall(content)]


# -- WeCom --------------------------------------------------------------------------------------

WECOM_MENTION = re.compile(r"<@[^>]+>")  # a markdown message's only mention: <@userid>


class WeComReceiver(Receiver):
    def wecom_rate_limit(self, times: int = 1) -> None:
        self.plan(*[Answer.of_json(200, {"errcode": 45009, "errmsg": "api freq out of limit"})] * times)

    def answer(self, request: Request) -> Answer:
        payload = _parsed(request)
        code, message = (40035, "invalid Request Parameter, Warning: wrong json format.") \
            if not isinstance(payload, dict) else wecom_error(payload)
        if code:
            request.problems.append(f"errcode {code}: {message}")
        elif payload["msgtype"] == "markdown":
            request.pings += WECOM_MENTION.findall(payload["markdown"]["content"])
        return Answer.of_json(200, {"errcode": code, "errmsg": message})


def wecom_error(payload: dict[str, Any]) -> tuple[int, str]:
    """The errcode and errmsg the robot answers `payload` with ((0, "ok"): sent)."""
    kind = payload.get("msgtype")
    if kind not in ("text", "markdown"):
        return 40008, "invalid message type"
    message = payload.get(kind)
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content:
        return 44004, f"{kind}.content is empty"
    limit = 4096 if kind == "markdown" else 2048
    if len(content.encode("utf-8", "surrogatepass")) > limit:
        return 40058, f"{kind}.content exceed max length {limit}. invalid Request Parameter"
    return 0, "ok"


# -- a generic webhook ---------------------------------------------------------------------------

class WebhookReceiver(Receiver):
    """Records headers and bodies; with a signing secret, verifies every request with the Standard
    Webhooks reference library (and answers 400 to one that does not verify)."""

    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.secret = secret
        self.verified: list[Any] = []

    def answer(self, request: Request) -> Answer:
        if self.secret is None:
            return Answer(200, b"ok")
        try:
            self.verified.append(Webhook(self.secret).verify(request.body, request.headers))
        except WebhookVerificationError as exc:
            request.problems.append(f"the signature does not verify: {exc}")
            return Answer(400, b"bad signature")
        return Answer(200, b"ok")
