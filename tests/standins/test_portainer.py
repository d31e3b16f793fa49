"""The Portainer stand-in answers as Portainer 2.23 / 2.44 does (service-apis.md §2.2-2.3) and as its spec allows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.standins import PortainerStandIn

ADMIN = {"Username": "admin", "Password": "a-password-of-12"}
LOCAL = {"Name": (None, "local"), "EndpointCreationType": (None, "1")}


@pytest.fixture
def client(portainer_standin: PortainerStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portainer_standin.url, timeout=5) as opened:
        yield opened


def jwt_headers(client: httpx.Client) -> dict[str, str]:
    answer = client.post("/api/auth", json=ADMIN)
    assert answer.status_code == 200, answer.text
    # Keep no cookie, as service-apis.md §2.2 advises: a kept portainer_api_key cookie switches CSRF on.
    client.cookies.clear()
    return {"Authorization": f"Bearer {answer.json()['jwt']}"}


def test_first_run_initialises_the_admin_once(portainer_standin: PortainerStandIn, client: httpx.Client) -> None:
    status = client.get("/api/system/status").json()
    assert (status["Version"], status["InstanceID"]) == ("2.23.0", portainer_standin.instance_id)
    assert client.get("/api/users/admin/check").status_code == 404
    answer = client.post("/api/users/admin/init", json=ADMIN)
    assert answer.status_code == 200
    assert (answer.json()["Id"], answer.json()["Username"], answer.json()["Role"]) == (1, "admin", 1)
    assert client.get("/api/users/admin/check").status_code == 204
    assert portainer_standin.admin == {"username": "admin", "password": "a-password-of-12"}
    again = client.post("/api/users/admin/init", json={**ADMIN, "Password": "another-password"})
    assert (again.status_code, again.json()["message"]) == (409, "Admin user already initialized")
    assert portainer_standin.admin == {"username": "admin", "password": "a-password-of-12"}
    assert portainer_standin.violations == []
    assert portainer_standin.answers_off_spec() == []


@pytest.mark.parametrize(("body", "message", "details"), [
    ({"Username": "admin", "Password": "11-chars-pw"}, "Password does not meet the requirements",
     "Password must be at least 12 characters long"),
    ({"Username": "the admin", "Password": "a-password-of-12"}, "Invalid request payload",
     "Invalid username. Must not contain any whitespace"),
    ({"Username": "admin"}, "Invalid request payload", "Invalid password"),
])
def test_the_admin_needs_a_12_character_password_and_a_plain_name(portainer_standin: PortainerStandIn,
                                                                   client: httpx.Client, body: dict[str, str],
                                                                   message: str, details: str) -> None:
    answer = client.post("/api/users/admin/init", json=body)
    assert (answer.status_code, answer.json()) == (400, {"message": message, "details": details})
    assert portainer_standin.admin is None


def test_lower_case_keys_work_as_in_go_but_are_a_violation(portainer_standin: PortainerStandIn,
                                                           client: httpx.Client) -> None:
    assert client.post("/api/users/admin/init", json={"username": "admin", "password": "a-password-of-12"}).is_success
    assert portainer_standin.violations
    assert all(v.startswith("POST /api/users/admin/init: body: ") for v in portainer_standin.violations)


@pytest.mark.parametrize(("headers", "violations"), [({}, 1), ({"X-Setup-Token": "guess"}, 0)])
def test_with_a_setup_token_init_needs_it(headers: dict[str, str], violations: int) -> None:
    with PortainerStandIn(setup_token="printed-in-the-log") as portainer, httpx.Client(base_url=portainer.url) as c:
        assert c.get("/api/settings/public").json()["RequiresSetupToken"] is True
        refused = c.post("/api/users/admin/init", json=ADMIN, headers=headers)
        assert (refused.status_code, refused.json()["message"]) == (403, "Invalid or missing setup token")
        assert portainer.admin is None
        assert len(portainer.violations) == violations
        done = c.post("/api/users/admin/init", json=ADMIN, headers={"X-Setup-Token": "printed-in-the-log"})
        assert done.status_code == 200
        assert len(portainer.violations) == violations
        assert portainer.answers_off_spec() == []


def test_an_expired_init_window_answers_303_except_on_two_paths(portainer_standin: PortainerStandIn,
                                                                client: httpx.Client) -> None:
    portainer_standin.expire_init_window()
    for path in ("/api/system/status", "/api/users/admin/check"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers["redirect-reason"]) == (303, "AdminInitTimeout")
    assert client.post("/api/users/admin/init", json=ADMIN).status_code == 303
    assert client.get("/api/status").status_code == 200
    assert client.get("/api/settings/public").status_code == 200
    assert portainer_standin.admin is None


def test_login_gives_a_jwt_and_a_cookie(portainer_standin: PortainerStandIn, client: httpx.Client) -> None:
    portainer_standin.add_admin(ADMIN["Username"], ADMIN["Password"])
    answer = client.post("/api/auth", json=ADMIN)
    assert answer.status_code == 200
    assert answer.cookies["portainer_api_key"] == answer.json()["jwt"]
    client.cookies.clear()
    wrong = client.post("/api/auth", json={**ADMIN, "Password": "wrong-password"})
    assert (wrong.status_code, wrong.json()["message"]) == (422, "Invalid credentials")
    assert portainer_standin.violations == []
    client.post("/api/auth", json={"username": "admin", "password": "x", "apiKey": ""})  # as the 2.44 spec has it
    assert portainer_standin.violations[0].startswith("POST /api/auth: body: ")


def test_environments_need_a_bearer_jwt(portainer_standin: PortainerStandIn, client: httpx.Client) -> None:
    portainer_standin.add_admin(ADMIN["Username"], ADMIN["Password"])
    headers = jwt_headers(client)
    assert client.get("/api/endpoints", headers=headers).json() == []
    assert portainer_standin.violations == []
    missing = client.get("/api/endpoints")
    assert (missing.status_code, missing.json()["message"]) == (401, "A valid authorization token is missing")
    jwt = headers["Authorization"].split(" ")[1]
    lower = client.get("/api/endpoints", headers={"Authorization": f"bearer {jwt}"})
    assert (lower.status_code, lower.json()["message"]) == (401, "Invalid JWT token")
    # The bouncer only trims a "Bearer " prefix, so a bare JWT passes; the spec check still flags it.
    assert client.get("/api/endpoints", headers={"Authorization": jwt}).status_code == 200
    assert len(portainer_standin.violations) == 3
    assert portainer_standin.violations[1] == (
        "GET /api/endpoints: auth: the spec wants ApiKeyAuth or jwt; got Authorization: bearer …")


def test_a_local_docker_environment_is_made_from_a_multipart_form(portainer_standin: PortainerStandIn,
                                                                   client: httpx.Client) -> None:
    portainer_standin.add_admin(ADMIN["Username"], ADMIN["Password"])
    headers = jwt_headers(client)
    answer = client.post("/api/endpoints", files=LOCAL, headers=headers)
    assert answer.status_code == 200
    endpoint = answer.json()
    assert (endpoint["Id"], endpoint["Name"], endpoint["Type"], endpoint["URL"], endpoint["GroupId"]) == (
        1, "local", 1, "unix:///var/run/docker.sock", 1)
    assert [e["Name"] for e in client.get("/api/endpoints", headers=headers).json()] == ["local"]
    again = client.post("/api/endpoints", files=LOCAL, headers=headers)
    assert (again.status_code, again.json()["message"]) == (409, "Name is not unique")
    agent = client.post("/api/endpoints", headers=headers, files={
        "Name": (None, "agent"), "EndpointCreationType": (None, "2"), "URL": (None, "tcp://agent:9001"),
        "TLS": (None, "true"), "TLSSkipVerify": (None, "true"), "TLSSkipClientVerify": (None, "true")})
    assert (agent.json()["Type"], agent.json()["URL"]) == (2, "tcp://agent:9001")
    assert portainer_standin.violations == []
    assert portainer_standin.answers_off_spec() == []


@pytest.mark.parametrize("send", [
    lambda c, h: c.post("/api/endpoints", json={"Name": "local", "EndpointCreationType": 1}, headers=h),
    lambda c, h: c.post("/api/endpoints", files={"Name": (None, "local")}, headers=h),
])
def test_an_environment_without_a_form_or_its_type_is_refused(portainer_standin: PortainerStandIn,
                                                              client: httpx.Client, send: object) -> None:
    portainer_standin.add_admin(ADMIN["Username"], ADMIN["Password"])
    answer = send(client, jwt_headers(client))  # type: ignore[operator]
    assert (answer.status_code, answer.json()["message"]) == (400, "Invalid request payload")
    assert portainer_standin.endpoints == []
    assert [v for v in portainer_standin.violations if v.startswith("POST /api/endpoints: body: ")]


def test_a_client_that_keeps_the_cookie_is_stopped_by_csrf(portainer_standin: PortainerStandIn) -> None:
    portainer_standin.add_admin(ADMIN["Username"], ADMIN["Password"])
    with httpx.Client(base_url=portainer_standin.url) as keeps_cookies:
        jwt = keeps_cookies.post("/api/auth", json=ADMIN).json()["jwt"]
        answer = keeps_cookies.post("/api/endpoints", files=LOCAL, headers={"Authorization": f"Bearer {jwt}"})
    assert (answer.status_code, answer.text) == (403, "Forbidden - CSRF token invalid\n")
    assert portainer_standin.endpoints == []
    assert portainer_standin.violations == [
        "POST /api/endpoints: sends the portainer_api_key cookie without X-CSRF-Token, so the CSRF check refuses "
        "it (403): keep no cookies"]


def test_an_api_key_and_an_authorization_header_together_are_refused(portainer_standin: PortainerStandIn,
                                                                     client: httpx.Client) -> None:
    portainer_standin.add_admin(ADMIN["Username"], ADMIN["Password"])
    headers = {**jwt_headers(client), "X-API-KEY": "ptr_key"}
    answer = client.get("/api/endpoints", headers=headers)
    assert (answer.status_code, answer.json()["message"]) == (
        403, "api key and auth header are not allowed at the same time")
    assert portainer_standin.violations == [
        "GET /api/endpoints: sends both X-API-KEY and Authorization, which Portainer refuses (403)"]
