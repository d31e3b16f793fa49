"""The NPM stand-in answers as NPM 2.15.1 does (service-apis.md §3.3, §3.5) and as its spec allows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.standins import NpmStandIn

PASSWORD = "a-long-password"
ADMIN = {"name": "Administrator", "nickname": "Admin", "email": "admin@corp.example",
         "auth": {"type": "password", "secret": "a-long-password"}}


@pytest.fixture
def client(npm_standin: NpmStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=npm_standin.url, timeout=5) as opened:
        yield opened


def login(client: httpx.Client, email: str = "admin@corp.example", password: str = PASSWORD) -> dict[str, str]:
    answer = client.post("/api/tokens", json={"identity": email, "secret": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def test_first_run_has_no_user_and_the_first_post_makes_an_enabled_admin(npm_standin: NpmStandIn,
                                                                        client: httpx.Client) -> None:
    assert client.get("/api/").json() == {"status": "OK", "setup": False,
                                          "version": {"major": 2, "minor": 15, "revision": 1}}
    answer = client.post("/api/users", json={**ADMIN, "roles": [], "is_disabled": True})
    assert answer.status_code == 201
    user = answer.json()
    assert (user["email"], user["roles"], user["is_disabled"]) == ("admin@corp.example", ["admin"], False)
    assert set(user["permissions"]) == {"visibility", "proxy_hosts", "redirection_hosts", "dead_hosts", "streams",
                                        "access_lists", "certificates"}
    assert client.get("/api/").json()["setup"] is True
    assert npm_standin.users[0]["password"] == "a-long-password"
    assert npm_standin.violations == []
    assert npm_standin.answers_off_spec() == []


def test_once_a_user_exists_creating_one_needs_an_admin_token(npm_standin: NpmStandIn, client: httpx.Client) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    answer = client.post("/api/users", json={**ADMIN, "email": "second@corp.example"})
    assert (answer.status_code, answer.json()) == (403, {"error": {"code": 403, "message": "Permission Denied"}})
    assert npm_standin.violations == ["POST /api/users: auth: the spec wants bearerAuth; got no Authorization header"]
    answer = client.post("/api/users", json={**ADMIN, "email": "second@corp.example"}, headers=login(client))
    assert answer.status_code == 201
    assert answer.json()["roles"] == []  # only setup mode forces admin
    assert client.post("/api/users", json=ADMIN, headers=login(client)).json() == {
        "error": {"code": 400, "message": "Email address already in use - admin@corp.example"}}


def test_a_token_needs_the_right_email_and_password(npm_standin: NpmStandIn, client: httpx.Client) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    answer = client.post("/api/tokens", json={"identity": "Admin@Corp.Example", "secret": "a-long-password"})
    assert answer.status_code == 200
    assert set(answer.json()) == {"token", "expires"}
    wrong = client.post("/api/tokens", json={"identity": "admin@corp.example", "secret": "nope"})
    assert (wrong.status_code, wrong.json()) == (400, {"error": {"code": 400, "message": "Invalid email or password"}})
    assert npm_standin.token_count == 1
    assert npm_standin.violations == []
    assert npm_standin.answers_off_spec() == []


def test_protected_routes_want_exactly_bearer(npm_standin: NpmStandIn, client: httpx.Client) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    headers = login(client)
    me = client.get("/api/users/me", headers=headers)
    assert me.status_code == 200
    assert set(me.json()) == {"id", "created_on", "modified_on", "is_disabled", "email", "name", "nickname",
                              "avatar", "roles"}
    token = headers["Authorization"].split(" ")[1]
    for authorization in (None, f"bearer {token}", f"Token {token}", "Bearer not-a-token"):
        answer = client.get("/api/users/me", headers={"Authorization": authorization} if authorization else {})
        assert (answer.status_code, answer.json()["error"]["message"]) == (403, "Permission Denied")
    assert len(npm_standin.violations) == 3  # the unknown token is the right scheme
    assert npm_standin.answers_off_spec() == []


def test_the_legacy_flow_changes_the_default_admin(client: httpx.Client) -> None:
    with NpmStandIn(version=(2, 12, 0)) as legacy, httpx.Client(base_url=legacy.url) as old:
        assert old.get("/api/").json() == {"status": "OK", "setup": True,
                                           "version": {"major": 2, "minor": 12, "revision": 0}}
        headers = login(old, "admin@example.com", "changeme")
        changed = old.put("/api/users/me", json={"email": "admin@corp.example", "nickname": "Boss"}, headers=headers)
        assert (changed.status_code, changed.json()["email"]) == (200, "admin@corp.example")
        answer = old.put("/api/users/me/auth", json={"type": "password", "current": "changeme",
                                                     "secret": "a-long-password"}, headers=headers)
        assert (answer.status_code, answer.json()) == (200, True)
        assert legacy.users[0]["password"] == "a-long-password"
        login(old, "admin@corp.example", "a-long-password")
        assert legacy.violations == []
        assert legacy.answers_off_spec() == []


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"type": "password", "secret": "a-new-password"}, 400, "Current password was not supplied"),
    ({"type": "password", "current": "wrong", "secret": "a-new-password"}, 400, "Invalid email or password"),
])
def test_changing_your_own_password_needs_the_current_one(npm_standin: NpmStandIn, client: httpx.Client,
                                                        body: dict[str, str], status: int, message: str) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    answer = client.put("/api/users/me/auth", json=body, headers=login(client))
    assert (answer.status_code, answer.json()["error"]["message"]) == (status, message)
    assert npm_standin.users[0]["password"] == "a-long-password"
    assert npm_standin.violations == []


@pytest.mark.parametrize("secret", ["7-chars", "x" * 65])
def test_a_new_password_must_have_8_to_64_characters(npm_standin: NpmStandIn, client: httpx.Client,
                                                      secret: str) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    answer = client.put("/api/users/1/auth", json={"type": "password", "current": "a-long-password",
                                                   "secret": secret}, headers=login(client))
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("data/secret: ")
    assert [v for v in npm_standin.violations if v.startswith("PUT /api/users/1/auth: body: secret: ")]
    assert npm_standin.users[0]["password"] == "a-long-password"


def test_an_admin_sets_another_users_password_without_the_current_one(npm_standin: NpmStandIn,
                                                                      client: httpx.Client) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    npm_standin.add_user("user@corp.example", "user-password", roles=[])
    headers = login(client)
    answer = client.put("/api/users/2/auth", json={"type": "password", "secret": "reset-by-admin"}, headers=headers)
    assert answer.status_code == 200
    assert npm_standin.users[1]["password"] == "reset-by-admin"
    user_headers = login(client, "user@corp.example", "reset-by-admin")
    refused = client.put("/api/users/1", json={"name": "Mallory"}, headers=user_headers)
    assert refused.status_code == 403
    assert client.get("/api/users/9", headers=headers).json() == {"error": {"code": 404, "message": "Not Found - 9"}}


def test_an_update_needs_at_least_one_known_field(npm_standin: NpmStandIn, client: httpx.Client) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    headers = login(client)
    assert client.put("/api/users/me", json={}, headers=headers).status_code == 400
    assert client.put("/api/users/me", json={"password": "x"}, headers=headers).status_code == 400
    assert len(npm_standin.violations) == 2
    assert npm_standin.users[0]["name"] == "Administrator"


def test_api_without_the_slash_redirects(npm_standin: NpmStandIn, client: httpx.Client) -> None:
    answer = client.get("/api")
    assert (answer.status_code, answer.headers["location"]) == (302, "/api/")
    assert client.get("/api", follow_redirects=True).json()["status"] == "OK"
    assert npm_standin.violations == []
