"""The notifications API with an admin key against a served apphub: destinations added (a webhook's
secret shown once), listed masked, refused naming the field (never quoting the URL), paused and
enabled, tested, their deliveries listed with every attempt, replayed, and removed."""

from __future__ import annotations

import time

import httpx

from apphub.store.secrets import MASK
from tests.conftest import LiveServer
from tests.notify.receivers import TOKEN, WebhookReceiver

BASE = "/api/v1/notifications"


def delivered(admin: httpx.Client, delivery: int, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = admin.get(f"{BASE}/deliveries/{delivery}").json()
        if found["state"] != "pending":
            return found
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery} still pending after {timeout:g} s")


def test_a_destination_through_its_whole_life(live_server: LiveServer, admin: httpx.Client) -> None:
    with WebhookReceiver() as receiver:
        added = admin.post(f"{BASE}/destinations", json={"name": "ops", "kind": "webhook", "url": receiver.url,
                                                         "events": ["notify.test", "settings.changed"]})
        assert added.status_code == 201, added.text
        receiver.secret = added.json()["secret"]  # shown once, here
        assert receiver.secret.startswith("whsec_")
        listed = admin.get(f"{BASE}/destinations")
        assert TOKEN not in listed.text
        assert receiver.secret not in listed.text
        [shown] = listed.json()["destinations"]
        assert (shown["secret"], shown["enabled"]) == (MASK, True)

        [test] = admin.post(f"{BASE}/destinations/ops/test").json()["deliveries"]
        done = delivered(admin, test)
        assert done["state"] == "delivered"
        assert [attempt["status"] for attempt in done["attempts"]] == [200]  # type: ignore[union-attr]
        assert receiver.problems == []  # signed so that the Standard Webhooks library verifies it

        paused = admin.post(f"{BASE}/destinations/ops/disable").json()["destination"]
        assert (paused["enabled"], paused["disabled_reason"]) == (False, "disabled by an admin")
        admin.put("/api/v1/settings/gitea", json={"user_email": "paused@example.org"})
        assert admin.get(f"{BASE}/deliveries", params={"destination": "ops"}).json()["deliveries"][0]["id"] == test
        assert admin.post(f"{BASE}/destinations/ops/enable").json()["destination"]["enabled"] is True

        receiver.fail(1, 500)
        replayed = admin.post(f"{BASE}/deliveries/{test}/replay")
        assert replayed.status_code == 200, replayed.text
        again = delivered(admin, test, timeout=20)  # a 500, then the retry 5 s later
        assert [attempt["status"] for attempt in again["attempts"]] == [200, 500, 200]  # type: ignore[union-attr]

    assert admin.delete(f"{BASE}/destinations/ops").status_code == 204
    assert admin.delete(f"{BASE}/destinations/ops").status_code == 404
    assert admin.post(f"{BASE}/destinations/ops/test").status_code == 404


def test_bad_destinations_are_refused_naming_every_field(admin: httpx.Client) -> None:
    url = f"file:///etc/{TOKEN}"
    refused = admin.post(f"{BASE}/destinations", json={"name": "-bad", "kind": "webhook", "url": url,
                                                       "events": ["settings.exploded"], "secret": "nope"})
    assert refused.status_code == 422
    assert TOKEN not in refused.text
    fields = {error["key"] for error in refused.json()["errors"]}
    assert fields == {"name", "url", "events", "secret"}
    unknown = admin.post(f"{BASE}/destinations", json={"name": "pager", "kind": "pager", "url": url})
    assert unknown.status_code == 400
    assert "body.kind" in unknown.text
    assert TOKEN not in unknown.text
    admin.post(f"{BASE}/destinations", json={"name": "ops", "kind": "slack", "url": "https://hooks.example.org/x"})
    taken = admin.post(f"{BASE}/destinations", json={"name": "ops", "kind": "slack", "url": "https://example.org/y"})
    assert taken.status_code == 422
    assert "exists already" in taken.text
