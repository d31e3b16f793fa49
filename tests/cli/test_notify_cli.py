"""`apphub notify list|add|test|deliveries|remove|enable|replay`, the real console script: a
destination added (a webhook's signing secret printed once), listed with its URL and secret masked,
a test queued and listed as a delivery, bad input refused naming the field without echoing the URL,
and a destination removed."""

from __future__ import annotations

import json
import subprocess

from apphub.core import Core
from apphub.paths import DataDir
from tests.cli.conftest import RunApphub

TOKEN = "cli-T0KEN-5f1e"
URL = f"http://127.0.0.1:9/hooks/{TOKEN}"  # nothing listens: the CLI only queues


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_add_list_test_deliveries_remove(apphub: RunApphub, data_dir: DataDir) -> None:
    added = ok(apphub("notify", "add", "ops", "webhook", "--url", URL, "--event", "settings.changed",
                      "--section", "gitea"))
    assert "destination ops added (webhook)" in added
    secret = added.split("signing secret (shown once; the receiver verifies with it): ")[1].strip()
    assert secret.startswith("whsec_")
    ok(apphub("notify", "add", "team", "slack", "--url", f"https://hooks.slack.com/services/{TOKEN}"))

    listed = ok(apphub("notify", "list"))
    assert TOKEN not in listed
    assert secret not in listed
    shown = {d["name"]: d for d in json.loads(listed)}
    assert shown["ops"]["url"] == "http://127.0.0.1/********"
    assert (shown["ops"]["events"], shown["ops"]["sections"]) == (["settings.changed"], ["gitea"])
    assert shown["team"]["secret"] is None

    assert "destination team disabled" in ok(apphub("notify", "disable", "team"))
    assert [d["enabled"] for d in json.loads(ok(apphub("notify", "list")))] == [True, False]
    assert "destination team enabled" in ok(apphub("notify", "enable", "team"))
    assert "test queued for ops: delivery 1" in ok(apphub("notify", "test", "ops"))
    deliveries = ok(apphub("notify", "deliveries", "--destination", "ops"))
    assert "pending" in deliveries
    assert "notify.test" in deliveries
    assert TOKEN not in deliveries

    assert "destination ops removed" in ok(apphub("notify", "remove", "ops"))
    assert "failed" in ok(apphub("notify", "deliveries", "--state", "failed"))  # what it had pending
    core = Core(data_dir)
    try:
        assert [d.name for d in core.notifications.destinations.all()] == ["team"]
    finally:
        core.close()


def test_bad_input_is_refused_naming_the_field(apphub: RunApphub) -> None:
    refused = apphub("notify", "add", "Bad Name", "webhook", "--url", f"ftp://example.org/{TOKEN}",
                     "--event", "settings.exploded")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "cannot name a destination" in said
    assert "http:// or https://" in said
    assert "settings.exploded" in said
    assert TOKEN not in said  # a URL is a credential: never echoed
    assert apphub("notify", "test", "nobody").returncode != 0
    assert "there is no notification destination 'nobody'" in apphub("notify", "remove", "nobody").stderr
    assert apphub("notify", "replay", "99").returncode != 0
