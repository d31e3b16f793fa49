from __future__ import annotations

import httpx

from tests.conftest import LiveServer


def test_healthz_needs_no_key(live_server: LiveServer) -> None:
    with live_server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_settings_read_with_admin_key(admin: httpx.Client) -> None:
    response = admin.get("/api/v1/settings")
    assert response.status_code == 200
    assert response.json()["settings"]["gitea"]["user_pwd"] == "********"
    assert response.headers["etag"].strip('"') == response.json()["version"]
