"""What a review found: ways to learn a stored secret without the right to read it. A preview or a
plan answers differently when a guess equals the stored secret; a whole-file validation says that
two passwords are equal; a port made with a numeric secret was quoted in the port rule's finding."""

from __future__ import annotations

import json

import httpx

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.history.index import HistoryQuery
from tests.conftest import LiveServer

PASSWORD = "Correct-Horse-Battery-417"
ACTOR = Actor("oracle-test", "test")


def test_previews_and_plans_with_secret_values_need_admin(core: Core, live_server: LiveServer,
                                                           admin: httpx.Client) -> None:
    assert admin.put("/api/v1/settings/gitea", json={"user_pwd": PASSWORD}).status_code == 200
    for role in ("read", "write"):
        with live_server.client(core.keys.create(f"a-{role}-key", role)) as client:
            for guess in ("Wrong-Guess-Zebra-902", PASSWORD):
                plan = client.post("/api/v1/settings/plan", json={"gitea": {"user_pwd": guess}})
                assert plan.status_code == 403, plan.text
                assert "[gitea] user_pwd" in plan.json()["detail"]
                preview = client.post("/api/v1/templates/websoft9-default/preview",
                                      json={"variables": {"gitea_password": guess}})
                assert preview.status_code == 403, preview.text
            # what sets no secret is still anyone's to plan
            assert client.post("/api/v1/settings/plan", json={"gitea": {"user_email": "a@example.org"}}
                               ).status_code == 200
    assert admin.post("/api/v1/settings/plan", json={"gitea": {"user_pwd": PASSWORD}}).status_code == 200
    assert admin.post("/api/v1/templates/websoft9-default/preview",
                      json={"variables": {"gitea_password": PASSWORD}}).status_code == 200


def test_a_whole_file_validation_tells_only_an_admin_what_is_wrong_with_a_secret(
        core: Core, live_server: LiveServer, admin: httpx.Client) -> None:
    for section in ("gitea", "portainer"):
        assert admin.put(f"/api/v1/settings/{section}", json={"user_pwd": "Shared-Otter-Lantern-83"}).status_code == 200
    with live_server.client(core.keys.create("a-writer", "write")) as writer:
        shown = writer.post("/api/v1/settings/validate").json()
    told = admin.post("/api/v1/settings/validate").json()
    assert any("has the same value" in finding["message"] for finding in told["warnings"])
    secret_findings = [finding for finding in shown["warnings"] if finding["key"] == "user_pwd"]
    assert secret_findings, shown  # where, and how grave: still said
    assert all(finding["rule"] == "secret" and "same value" not in finding["message"]
               and finding["value"] is None for finding in secret_findings)
    assert len(shown["warnings"]) == len(told["warnings"])
    assert shown["valid"] == told["valid"]


def test_a_port_made_with_a_secret_is_not_quoted_in_a_finding(core: Core, live_server: LiveServer,
                                                              admin: httpx.Client) -> None:
    assert admin.put("/api/v1/settings/gitea", json={"webhook_secret": "9099"}).status_code == 200
    assert admin.put("/api/v1/settings/cockpit", json={"port": "9099"}).status_code == 200
    with live_server.client(core.keys.create("a-writer", "write")) as writer:
        answer = writer.put("/api/v1/settings/nginx_proxy_manager", json={"listen_port": "${gitea.webhook_secret}"})
        validated = writer.post("/api/v1/settings/validate",
                                json={"nginx_proxy_manager": {"listen_port": "${gitea.webhook_secret}"}})
    assert answer.status_code == 422, answer.text
    assert "9099" not in answer.text
    assert "made with a secret" in answer.text
    assert "is also [cockpit] port" in answer.text  # the conflict is still caught
    assert validated.status_code == 200
    assert "9099" not in validated.text
    assert not validated.json()["valid"]


def test_a_rollback_plan_tells_only_an_admin_what_is_wrong_with_a_secret(core: Core, live_server: LiveServer,
                                                                        admin: httpx.Client) -> None:
    core.system.update({"rules": {"enabled": "false"}}, ACTOR)
    core.config.update({"gitea": {"user_pwd": "admin123"}}, ACTOR)  # a placeholder: refused with the rules on
    core.history.record()
    weak = core.history.page(HistoryQuery(limit=1, file="config.ini"))[0][0]
    core.system.update({"rules": {"enabled": "true"}}, ACTOR)
    core.config.update({"gitea": {"user_pwd": PASSWORD}}, ACTOR)
    body = {"file": "config.ini", "version": weak.commit}
    told = admin.post("/api/v1/settings/rollback/plan", json=body).json()
    with live_server.client(core.keys.create("a-reader", "read")) as reader:
        shown = reader.post("/api/v1/settings/rollback/plan", json=body).json()
    assert [p["rule"] for p in told["problems"]] == ["placeholder_password"]
    assert [(p["section"], p["key"], p["rule"]) for p in shown["problems"]] == [("gitea", "user_pwd", "secret")]
    assert "placeholder" not in json.dumps(shown)
    assert shown["valid"] is told["valid"] is False
