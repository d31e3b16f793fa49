"""The bodies apphub sends each kind of destination, posted with httpx to receivers on loopback
shaped like Slack, Discord and WeCom (tests/notify/receivers.py): accepted for ordinary events and
for odd ones (500 changes, 10 KB values, markup, @everyone, CJK and emoji), pinging no one, within
each service's limits, saying how much was left out, masked values masked; a flood sent as one
message; the generic webhook body the Standard Webhooks structure, verified by its library."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from apphub.audit.log import Actor, Change
from apphub.notify import events, formats
from apphub.notify.destinations import new_signing_secret
from apphub.notify.events import Event, refused, settings_changed, sync_applied
from apphub.store.secrets import MASK
from tests.notify.receivers import (
    Answer,
    DiscordReceiver,
    Receiver,
    SlackReceiver,
    WebhookReceiver,
    WeComReceiver,
    discord_problems,
    slack_problems,
    utf16,
    wecom_error,
)

ACTOR = Actor("alice", "api", "req-1")
CHAT_KINDS = ("slack", "discord", "wecom")


def changed(*changes: Change, message: str | None = None, actor: Actor = ACTOR) -> Event:
    return settings_changed(actor, "config.ini", list(changes), "v7", message=message, commit="3f2a9c1")


def outcome(service: str, result: str, action: str, error: str | None = None, **timings: float) -> dict[str, object]:
    return {"service": service, "result": result, "version": "v7", "action": action, "error": error,
            "timings_ms": timings}


def many_changes(count: int) -> list[Change]:
    return [Change(f"section{i % 7}", f"key_{i}", "set", f"old {i}", f"new {i}") for i in range(count)]


CASES: dict[str, Event] = {
    "ordinary": changed(Change("gitea", "user_email", "set", "old@example.org", "new@example.org"),
                        Change("gitea", "user_pwd", "set", MASK, MASK), message="rotate the admin password"),
    "applied": sync_applied("v7", [outcome("gitea", "applied", "restart", write=3.1, reload=120.4, healthy=830.0),
                                   outcome("nginx", "applied", "reload", write=3.1, reload=12.0)],
                            {"validate": 2.0, "write": 3.1, "reload": 950.2, "total": 1012.7}),
    "failed": sync_applied("v7", [outcome("mysql", "failed", "restart", "health check timed out after 30 s")],
                           {"total": 30120.0}),
    "refused": refused("config.ini", "line 12: [gitea] http_port: 'abc' is not a port", "v7"),
    "test": events.test_event("ops"),  # imported by module: pytest would collect test_event
    "500 changes": changed(*many_changes(500)),  # the builder keeps 200 and counts 500
    "500 changes carried": Event("settings.changed", "alice (api) changed 500 keys", "v7", {
        "actor": "alice", "source": "api", "file": "config.ini", "changes_total": 500,
        "changes": [{"section": "s", "key": f"k{i}", "change": "set", "old": f"old value {i}", "new": f"new value {i}"}
                    for i in range(500)]}),
    "10 KB values": changed(Change("app", "motd", "set", "a" * 10_240, "b" * 10_240),
                            Change("app", "banner", "add", None, "é" * 10_240),
                            Change("app", "footer", "delete", "<" * 10_240, None), message="m" * 10_240),
    "markup": changed(Change("web", "title", "set", "*bold* _it_ ~strike~ <b>html</b> &amp; [link](http://evil.example)",
                             "<!everyone> <@U024BE7LH> <http://evil.example|click> `code` # heading"),
                      Change("web", "<!channel>", "add", None, "| table | > quote\n- list\r\n1. item"),
                      message="**bold** <script>alert(1)</script> &lt;"),
    "@everyone": changed(Change("chat", "@everyone", "set", "hi", "@everyone @here <@123456789012345678> <@&42>"),
                         Change("chat", "<@userid>", "add", None, "<@userid> <@all>"),
                         actor=Actor("@everyone", "api")),
    "unicode": changed(*[Change("站点配置", f"名称{i}", "set", "旧的值 🚀" * 40, "新的值 👩‍👩‍👧‍👦 مرحبا" * 40)
                         for i in range(300)], message="发布 ✨"),
    "odd": Event("drift.found", "x" * 20_000 + "\x00\ud800\u202e", None,
                 {"file": "a\nb\tc", "nul": "before\x00after\ud800", "nested": {"a": [1, 2, {"b": None}]},
                  "": "a blank key", "n": 3.5,
                  "flag": True, "many": list(range(5000))}),
}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as opened:
        yield opened


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Receiver]]:
    receivers: dict[str, Receiver] = {"slack": SlackReceiver(), "discord": DiscordReceiver(),
                                      "wecom": WeComReceiver(), "webhook": WebhookReceiver()}
    for receiver in receivers.values():
        receiver.__enter__()
    try:
        yield receivers
    finally:
        for receiver in receivers.values():
            receiver.__exit__(None, None, None)


@pytest.fixture
def receivers(servers: dict[str, Receiver]) -> dict[str, Receiver]:
    for receiver in servers.values():
        receiver.reset()
    return servers


def post(client: httpx.Client, url: str, body: object, **headers: str) -> httpx.Response:
    """As the sender posts: compact JSON, UTF-8."""
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return client.post(url, content=content, headers={"content-type": "application/json", **headers})


def text_of(kind: str, body: dict[str, Any]) -> str:
    """Everything a person reads in a chat message."""
    if kind == "slack":
        return "\n".join(element["text"] for block in body["blocks"]
                         for element in ([block["text"]] if "text" in block else block["elements"]))
    if kind == "discord":
        embed = body["embeds"][0]
        shown = "\n".join([body["content"], embed["title"], embed.get("description", ""), embed["footer"]["text"]])
        return re.sub(r"\\([^\w\s])", r"\1", shown)  # Discord shows an escaped character without its backslash
    return str(body["markdown"]["content"])


# -- every format, every case, accepted by the service it is shaped for -------------------------

@pytest.mark.parametrize("case", CASES)
def test_slack_takes_every_message_and_nobody_is_pinged(client, receivers, case) -> None:
    body = formats.slack(CASES[case])
    answer = post(client, receivers["slack"].url, body)
    assert (answer.status_code, answer.text) == (200, "ok"), receivers["slack"].problems
    assert receivers["slack"].pings == []
    assert body["text"], "the fallback a notification shows is always set"
    assert utf16(body["text"]) <= 3000


@pytest.mark.parametrize("case", CASES)
def test_discord_takes_every_message_and_nobody_is_pinged(client, receivers, case) -> None:
    body = formats.discord(CASES[case])
    answer = post(client, receivers["discord"].url + "?wait=true", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"] == body["content"]
    assert receivers["discord"].pings == []
    assert body["username"] == "apphub"
    assert body["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize("case", CASES)
def test_wecom_takes_every_message_and_nobody_is_pinged(client, receivers, case) -> None:
    body = formats.wecom(CASES[case])
    answer = post(client, receivers["wecom"].url, body)
    assert answer.json() == {"errcode": 0, "errmsg": "ok"}, receivers["wecom"].problems
    assert receivers["wecom"].pings == []


@pytest.mark.parametrize("case", CASES)
def test_a_webhook_body_is_the_standard_webhooks_structure_and_verifies(client, case) -> None:
    event = CASES[case]
    secret = new_signing_secret()
    body = formats.body_for("webhook", event)
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    signed_at = datetime.now(UTC)  # one time for the signature and its header: a second may pass between
    signature = Webhook(secret).sign(event.id, signed_at, content)
    with WebhookReceiver(secret) as receiver:
        answer = post(client, receiver.url, body, **{"webhook-id": event.id, "webhook-signature": signature,
                                                     "webhook-timestamp": str(int(signed_at.timestamp()))})
    assert answer.status_code == 200, receiver.problems
    assert receiver.verified == [body]
    assert body["type"] == event.type
    assert body["timestamp"] == event.at
    if case != "odd":  # that one holds a lone surrogate, which JSON in UTF-8 cannot carry: replaced
        expected = event.as_dict()
        del expected["type"], expected["at"]
        assert body["data"] == expected


# -- what a person reads ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", CHAT_KINDS)
def test_who_what_and_the_masked_value_stay_masked(kind) -> None:
    text = text_of(kind, formats.body_for(kind, CASES["ordinary"]))
    assert "alice" in text
    assert "api" in text
    assert "`old@example.org` → `new@example.org`" in text
    assert f"`{MASK}` → `{MASK}`" in text  # the password's change: shown, and only as the mask
    assert "rotate the admin password" in text


@pytest.mark.parametrize("kind", CHAT_KINDS)
def test_which_services_took_it_and_how_fast(kind) -> None:
    text = text_of(kind, formats.body_for(kind, CASES["applied"]))
    assert "gitea" in text
    assert "restart" in text
    assert "healthy 830 ms" in text
    assert "nginx" in text
    assert "1.0 s" in text
    failed = text_of(kind, formats.body_for(kind, CASES["failed"]))
    assert "mysql" in failed
    assert "failed" in failed
    assert "health check timed out after 30 s" in failed


@pytest.mark.parametrize("kind", CHAT_KINDS)
@pytest.mark.parametrize("case", ["500 changes", "500 changes carried"])
def test_what_does_not_fit_is_counted_not_lost_silently(kind, case) -> None:
    text = text_of(kind, formats.body_for(kind, CASES[case]))
    shown = sum(1 for line in text.splitlines() if line.startswith("• "))
    more = [line for line in text.splitlines() if line.startswith("… and ")]
    assert 0 < shown < 500
    assert more == [f"… and {500 - shown} more changes"]


def test_markup_in_a_value_is_shown_not_read() -> None:
    slack = text_of("slack", formats.slack(CASES["markup"]))
    assert "&lt;!everyone&gt;" in slack
    assert "&lt;http://evil.example|click&gt;" in slack
    assert "<" not in slack.replace("&lt;", "")  # Slack reads nothing between < and >
    discord = formats.discord(CASES["markup"])["embeds"][0]["description"]
    assert "`*bold* _it_ ~strike~ <b>html</b> &amp; [link](http://evil.example)`" in discord  # code: read as is
    assert "\\<http://evil.example\\|click\\> \\`code\\`" in discord  # a backtick in it: escaped instead
    wecom = text_of("wecom", formats.wecom(CASES["markup"]))
    assert "<font" not in wecom.replace('<font color="comment">', "")
    assert "](" not in wecom  # no [text](url) link


def test_a_mention_in_a_setting_would_ping_on_discord_without_allowed_mentions(client, receivers) -> None:
    body = formats.discord(CASES["@everyone"])
    assert "@everyone" in body["content"]  # the key's name, in the summary
    post(client, receivers["discord"].url, body)
    assert receivers["discord"].pings == []
    del body["allowed_mentions"]  # what the receiver catches, were apphub to leave it out
    post(client, receivers["discord"].url, body)
    assert "@everyone" in receivers["discord"].pings


def test_cjk_and_emoji_are_cut_on_a_character_boundary_within_wecom_bytes() -> None:
    content = formats.wecom(CASES["unicode"])["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096
    assert "站点配置" in content
    assert "👩‍👩‍👧‍👦" in content
    assert formats.clipped("好" * 3000, 4096, formats.utf8_bytes).endswith("好…")
    assert formats.clipped("🚀" * 10, 5, formats.utf16_units) == "🚀🚀…"  # never half an emoji
    assert formats.clipped("a&amp;b", 6, len) == "a…"  # never half an entity


def test_control_characters_and_a_lone_surrogate_are_shown_not_sent() -> None:
    for kind in CHAT_KINDS:
        body = formats.body_for(kind, CASES["odd"])
        encoded = json.dumps(body, ensure_ascii=False).encode("utf-8")  # would raise on a lone surrogate
        assert b"\\u0000" not in encoded
        assert "before␀after\ufffd" in text_of(kind, body)
        assert "a␊b␉c" in text_of(kind, body)


# -- a flood, as one message --------------------------------------------------------------------

FLOOD = [changed(Change("gitea", f"key_{i}", "set", "a", f"<@&{i}> 改 {i}")) for i in range(50)] + \
    [sync_applied("v7", [outcome("gitea", "applied", "restart", reload=100.0)], {"total": 120.0})] * 10


@pytest.mark.parametrize("kind", CHAT_KINDS)
def test_a_flood_is_one_message_that_counts_what_it_sums_up(client, receivers, kind) -> None:
    body = formats.body_for_many(kind, FLOOD)
    answer = post(client, receivers[kind].url, body)
    assert answer.status_code in (200, 204)
    assert len(receivers[kind].got) == 1
    assert receivers[kind].problems == []
    assert receivers[kind].pings == []
    text = text_of(kind, body)
    assert "60 events between" in text
    assert "Settings changed (50)" in text
    assert "Applied (10)" in text
    lines = text.splitlines()
    shown = sum(1 for line in lines if line.startswith("• "))
    assert shown + sum(int(line.split()[2]) for line in lines if line.startswith("… and ")) == 60


def test_one_event_is_its_own_message_and_a_webhook_never_gets_a_pile() -> None:
    event = CASES["ordinary"]
    for kind in (*CHAT_KINDS, "webhook"):
        assert formats.body_for_many(kind, [event]) == formats.body_for(kind, event)
    with pytest.raises(ValueError, match="one event"):
        formats.body_for_many("webhook", [event, event])
    with pytest.raises(ValueError, match="teams"):
        formats.body_for("teams", event)


# -- any text at all ----------------------------------------------------------------------------

any_text = st.text(max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.tuples(any_text, any_text, any_text, st.one_of(st.none(), any_text)), max_size=40),
       message=st.one_of(st.none(), any_text), many=st.integers(min_value=1, max_value=3))
def test_any_text_makes_bodies_each_service_takes(values, message, many) -> None:
    event = changed(*[Change(section, key, "set", old, new) for section, key, old, new in values],
                    message=message, actor=Actor(message or "x", "api"))
    events = [event] * many
    assert slack_problems(formats.body_for_many("slack", events)) == []
    assert discord_problems(formats.body_for_many("discord", events)) == {}
    assert wecom_error(formats.body_for_many("wecom", events)) == (0, "ok")


# -- the receivers answer as the services do (later tests lean on them) --------------------------

def test_the_receivers_refuse_what_the_services_refuse(client, receivers) -> None:
    slack, discord, wecom = receivers["slack"], receivers["discord"], receivers["wecom"]
    assert client.post(slack.url, content=b"not json").text == "invalid_payload"
    assert post(client, slack.url, {}).text == "no_text"
    many = {"text": "x", "blocks": [{"type": "divider"}] * 51}
    assert (post(client, slack.url, many).status_code, post(client, slack.url, many).text) == (400, "invalid_blocks")
    too_long = post(client, discord.url + "?wait=true", {"content": "x" * 2001})
    assert too_long.status_code == 400
    assert too_long.json()["code"] == 50035
    assert "content" in too_long.json()["errors"]
    assert post(client, discord.url, {"content": "hi"}).status_code == 204
    assert post(client, discord.url, {}).json()["code"] == 50006
    over = {"msgtype": "markdown", "markdown": {"content": "好" * 1366}}  # 4,098 bytes
    assert post(client, wecom.url, over).json()["errcode"] == 40058
    assert post(client, wecom.url, {"msgtype": "card"}).json()["errcode"] == 40008


def test_the_receivers_can_be_told_to_rate_limit_fail_hang_and_go(client, receivers) -> None:
    discord, wecom, hook = receivers["discord"], receivers["wecom"], receivers["webhook"]
    discord.discord_rate_limit(1.5)
    limited = post(client, discord.url, {"content": "hi"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json() == {"message": "You are being rate limited.", "retry_after": 1.5, "global": False}
    wecom.wecom_rate_limit()
    assert post(client, wecom.url, {"msgtype": "text", "text": {"content": "hi"}}).json()["errcode"] == 45009
    hook.fail(2)
    hook.rate_limit(3)
    hook.gone()
    assert [post(client, hook.url, {}).status_code for _ in range(5)] == [503, 503, 429, 410, 200]
    hook.hang(5.0)
    with pytest.raises(httpx.ReadTimeout):
        client.post(hook.url, json={}, timeout=0.2)
    hook.plan(Answer(500, b"boom"))
    assert post(client, hook.url, {}).status_code == 500
    assert len(hook.got) == 7
