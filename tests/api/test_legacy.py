"""Websoft9's routes, called the way its Cockpit settings plugin calls them (`src/helpers/api/appHub.js`).

The plugin reads `http://<host>:<listen_port>/api` and the `[api_key] key` with `apphub getconfig`,
then calls `GET /settings` and `PUT /settings/{section}?key=K&value=V` with `x-api-key`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import MASK, Keys, assert_legacy_error, config_bytes
from tests.conftest import LiveServer

APP_SETTINGS = {
    "nginx_proxy_manager": ["base_url", "user_name", "user_pwd", "listen_port", "docker0_ip", "ssl_cert", "ssl_key"],
    "gitea": ["base_url", "user_name", "user_pwd"],
    "portainer": ["base_url", "user_name", "user_pwd"],
    "api_key": ["key"],
    "domain": ["wildcard_domain"],
    "cockpit": ["port"],
}


@pytest.fixture
def plugin(live_server: LiveServer, keys: Keys) -> Iterator[httpx.Client]:
    """A client like the Cockpit plugin: base URL .../api, the Websoft9 key as x-api-key."""
    with httpx.Client(base_url=f"{live_server.url}/api", headers={"x-api-key": keys.websoft9},
                      timeout=10.0) as client:
        yield client


@pytest.fixture(scope="module")
def module_plugin(module_server: LiveServer, module_keys: Keys) -> Iterator[httpx.Client]:
    """The plugin's client on the module's server, for requests that change nothing."""
    with httpx.Client(base_url=f"{module_server.url}/api", headers={"x-api-key": module_keys.websoft9},
                      timeout=10.0) as client:
        yield client


def test_get_settings_returns_only_the_app_settings_model(module_plugin: httpx.Client) -> None:
    response = module_plugin.get("/settings")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    settings = response.json()
    assert {section: sorted(values) for section, values in settings.items()} == {
        section: sorted(keys) for section, keys in APP_SETTINGS.items()
    }
    assert settings["nginx_proxy_manager"]["listen_port"] == 9000
    assert settings["cockpit"]["port"] == 9090
    assert settings["nginx_proxy_manager"]["base_url"] == "http://websoft9-proxy:81/api"
    assert settings["domain"]["wildcard_domain"] == ""
    for section in ("nginx_proxy_manager", "gitea", "portainer"):
        assert settings[section]["user_pwd"] == MASK
    assert settings["api_key"]["key"] == MASK
    for absent in ("docker_mirror", "initial_apps", "favorite_apps", "nike_name", "user_email", "enc:v1:"):
        assert absent not in response.text


def test_get_settings_keeps_the_ints_after_a_change(plugin: httpx.Client) -> None:
    plugin.put("/settings/cockpit", params={"key": "port", "value": "9091"}).raise_for_status()
    assert plugin.get("/settings").json()["cockpit"] == {"port": 9091}


def test_get_section_is_a_flat_object_of_strings(module_plugin: httpx.Client) -> None:
    gitea = module_plugin.get("/settings/gitea")
    cockpit = module_plugin.get("/settings/cockpit")
    npm = module_plugin.get("/settings/nginx_proxy_manager")

    assert gitea.status_code == cockpit.status_code == npm.status_code == 200
    # Websoft9's keys, then apphub's own (an empty secret shows empty: nothing to mask)
    assert gitea.json() == {"base_url": "http://websoft9-git:3000/api/v1", "user_name": "websoft9",
                            "user_email": "admin@mydomain.com", "user_pwd": MASK, "api_token": "",
                            "history_repo": "apphub-config", "webhook_url": "", "webhook_secret": ""}
    assert cockpit.json() == {"port": "9090"}
    assert npm.json()["listen_port"] == "9000"
    assert npm.json()["nike_name"] == "admin"
    for body in (gitea.json(), cockpit.json(), npm.json()):
        assert all(isinstance(value, str) for value in body.values())


def test_get_section_of_a_section_outside_the_model(module_plugin: httpx.Client) -> None:
    assert module_plugin.get("/settings/initial_apps").json() == {"keys": ""}


def test_put_updates_an_existing_key_and_returns_the_section(plugin: httpx.Client, admin: httpx.Client,
                                                             live_server: LiveServer) -> None:
    response = plugin.put("/settings/gitea", params={"key": "user_email", "value": "ops@example.com"})

    assert response.status_code == 200, response.text
    assert response.json() == {"base_url": "http://websoft9-git:3000/api/v1", "user_name": "websoft9",
                               "user_email": "ops@example.com", "user_pwd": MASK, "api_token": "",
                               "history_repo": "apphub-config", "webhook_url": "", "webhook_secret": ""}
    assert b"\nuser_email = ops@example.com\n" in config_bytes(live_server)
    assert admin.get("/api/v1/settings/gitea").json()["settings"]["user_email"] == "ops@example.com"


def test_put_a_port_returns_it_as_a_string(plugin: httpx.Client, live_server: LiveServer) -> None:
    response = plugin.put("/settings/nginx_proxy_manager", params={"key": "listen_port", "value": "9443"})

    assert response.status_code == 200, response.text
    assert response.json()["listen_port"] == "9443"
    assert b"\nlisten_port = 9443\n" in config_bytes(live_server)


def test_put_a_secret_stores_it_encrypted_and_answers_masked(plugin: httpx.Client, admin: httpx.Client,
                                                             live_server: LiveServer) -> None:
    response = plugin.put("/settings/portainer", params={"key": "user_pwd", "value": "R@9)qn)t9hJW-new"})

    assert response.status_code == 200, response.text
    assert response.json()["user_pwd"] == MASK
    assert b"R@9)qn)t9hJW-new" not in config_bytes(live_server)
    revealed = admin.get("/api/v1/settings/portainer", params={"reveal": "true"}).json()["settings"]
    assert revealed["user_pwd"] == "R@9)qn)t9hJW-new"


def test_put_the_mask_keeps_the_secret(plugin: httpx.Client, admin: httpx.Client, live_server: LiveServer) -> None:
    before = admin.get("/api/v1/settings/gitea", params={"reveal": "true"}).json()["settings"]["user_pwd"]
    raw = config_bytes(live_server)

    response = plugin.put("/settings/gitea", params={"key": "user_pwd", "value": MASK})

    assert response.status_code == 200, response.text
    assert config_bytes(live_server) == raw
    assert admin.get("/api/v1/settings/gitea", params={"reveal": "true"}).json()["settings"]["user_pwd"] == before


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_unknown_section_is_400_in_websoft9_words(module_plugin: httpx.Client, module_server: LiveServer,
                                                  method: str) -> None:
    raw = config_bytes(module_server)
    response = module_plugin.request(method, "/settings/mysql", params={"key": "port", "value": "3306"})
    assert_legacy_error(response, 400, "Invalid Request", "Section:mysql does not exist")
    assert config_bytes(module_server) == raw


def test_unknown_key_is_400_and_not_added(module_plugin: httpx.Client, module_server: LiveServer) -> None:
    raw = config_bytes(module_server)
    response = module_plugin.put("/settings/gitea", params={"key": "admin_token", "value": "x"})
    assert_legacy_error(response, 400, "Invalid Request", "Key:admin_token does not exist")
    assert config_bytes(module_server) == raw


def test_a_key_known_to_the_schema_but_absent_from_the_file_is_not_added(plugin: httpx.Client, admin: httpx.Client,
                                                                          live_server: LiveServer) -> None:
    admin.delete("/api/v1/settings/nginx_proxy_manager/nike_name").raise_for_status()
    raw = config_bytes(live_server)
    response = plugin.put("/settings/nginx_proxy_manager", params={"key": "nike_name", "value": "boss"})
    assert_legacy_error(response, 400, "Invalid Request", "Key:nike_name does not exist")
    assert config_bytes(live_server) == raw


@pytest.mark.parametrize(("params", "details"), [
    ({"key": "user_email"}, "value: Field required"),
    ({"value": "x"}, "key: Field required"),
    ({}, "key: Field required, value: Field required"),
])
def test_missing_query_parameters_are_a_request_validation_error(module_plugin: httpx.Client, module_server: LiveServer,
                                                                 params: dict[str, str], details: str) -> None:
    raw = config_bytes(module_server)
    response = module_plugin.put("/settings/gitea", params=params)
    assert_legacy_error(response, 400, "Request Validation Error", details)
    assert config_bytes(module_server) == raw


@pytest.mark.parametrize(("section", "key", "value"), [
    ("cockpit", "port", "99999"),
    ("nginx_proxy_manager", "listen_port", "nine"),
    ("gitea", "user_email", "not-an-email"),
    ("gitea", "user_pwd", "Zq7!x"),
    ("gitea", "user_name", "line\nbreak"),
    ("api_key", "key", "too-short"),
])
def test_a_value_the_schema_refuses_is_400_naming_the_key(module_plugin: httpx.Client, module_server: LiveServer,
                                                          section: str, key: str, value: str) -> None:
    raw = config_bytes(module_server)
    response = module_plugin.put(f"/settings/{section}", params={"key": key, "value": value})
    details = assert_legacy_error(response, 400, "Invalid Request")
    assert f"[{section}] {key}" in details
    assert config_bytes(module_server) == raw
    if key in ("user_pwd", "key"):
        assert value not in response.text


def test_the_websoft9_key_and_named_keys_both_work(module_server: LiveServer, module_keys: Keys) -> None:
    keys = module_keys
    for key in (keys.websoft9, keys.admin, keys.write, keys.read):
        with module_server.client(key) as client:
            assert client.get("/api/settings").status_code == 200
            assert client.get("/api/settings/gitea").status_code == 200


def test_the_websoft9_key_is_the_one_apphub_getkey_prints(live_server: LiveServer) -> None:
    apphub = Path(sys.executable).with_name("apphub")
    printed = subprocess.run([str(apphub), "--data-dir", str(live_server.data.root), "getkey"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    with live_server.client(printed) as client:
        response = client.put("/api/settings/cockpit", params={"key": "port", "value": "9091"})
    assert response.status_code == 200, response.text
    assert response.json() == {"port": "9091"}
