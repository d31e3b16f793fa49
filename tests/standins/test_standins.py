"""The stand-ins' shared behaviour: startup time, the misbehaviour knobs, and a spec check that does fail.

Each product's own calls are tested in test_npm.py, test_gitea.py and test_portainer.py.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest

from tests.standins import CockpitStandIn, GiteaStandIn, NpmStandIn, PortainerStandIn
from tests.standins.base import Recorded
from tests.standins.spec import Spec


def test_all_four_start_and_stop_well_under_a_second() -> None:
    started = time.perf_counter()
    standins = [NpmStandIn(), GiteaStandIn(), PortainerStandIn(), CockpitStandIn()]
    for standin in standins:
        standin.stop()
    assert time.perf_counter() - started < 2.0  # expected: a few milliseconds


def test_a_stand_in_serves_until_stopped_and_then_refuses_connections() -> None:
    with CockpitStandIn() as cockpit:
        assert httpx.get(f"{cockpit.url}/ping").status_code == 200
        port = int(cockpit.url.rsplit(":", 1)[1])
    cockpit.stop()  # a second stop does nothing
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_down_for_drops_that_many_connections_then_answers(npm_standin: NpmStandIn) -> None:
    npm_standin.down_for(2)
    with httpx.Client(base_url=npm_standin.url, timeout=5) as client:
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                client.get("/api/")
        assert client.get("/api/").json()["status"] == "OK"
    assert [r.status for r in npm_standin.calls("GET", "/api/")] == [None, None, 200]


def test_slow_delays_every_answer_until_turned_off(cockpit_standin: CockpitStandIn) -> None:
    cockpit_standin.slow(0.3)
    started = time.perf_counter()
    assert httpx.get(f"{cockpit_standin.url}/ping").status_code == 200
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{cockpit_standin.url}/ping", timeout=0.1)
    cockpit_standin.slow(0)
    started = time.perf_counter()
    httpx.get(f"{cockpit_standin.url}/ping")
    assert time.perf_counter() - started < 0.3


def test_fail_next_answers_in_the_products_error_shape_and_does_nothing(npm_standin: NpmStandIn) -> None:
    npm_standin.fail_next("POST", "/api/users", status=503, times=2)
    user = {"name": "Admin", "nickname": "Admin", "email": "admin@corp.example",
            "auth": {"type": "password", "secret": "a-long-password"}}
    with httpx.Client(base_url=npm_standin.url) as client:
        for _ in range(2):
            answer = client.post("/api/users", json=user)
            assert answer.status_code == 503
            assert answer.json() == {"error": {"code": 503, "message": "Service Unavailable"}}
        assert npm_standin.users == []
        assert client.get("/api/users/me").status_code == 403  # another operation is not affected
        assert client.post("/api/users", json=user).status_code == 201
    assert len(npm_standin.users) == 1


@pytest.mark.parametrize(("standin_class", "shape"), [
    (GiteaStandIn, lambda url: {"message": "Internal Server Error", "url": f"{url}/api/swagger"}),
    (PortainerStandIn, lambda url: {"message": "Internal Server Error", "details": "Internal Server Error"}),
])
def test_fail_next_uses_each_products_error_shape(standin_class: type[Any], shape: Any) -> None:
    with standin_class() as standin:
        path = "/api/v1/version" if standin_class is GiteaStandIn else "/api/system/status"
        standin.fail_next("GET", path)
        answer = httpx.get(standin.url + path)
        assert (answer.status_code, answer.json()) == (500, shape(standin.url))
        assert httpx.get(standin.url + path).status_code == 200


def test_calls_match_the_method_and_the_whole_path(npm_standin: NpmStandIn) -> None:
    httpx.get(f"{npm_standin.url}/api/")
    httpx.get(f"{npm_standin.url}/api/users/me?expand=permissions")
    assert [r.path for r in npm_standin.calls("GET", "/api/users/me")] == ["/api/users/me"]
    assert npm_standin.calls("GET", "/api/users/me")[0].query == {"expand": "permissions"}
    assert npm_standin.calls("GET", "/api/users") == []
    assert npm_standin.calls("POST", "/api/users/me") == []
    assert len(npm_standin.calls("get", r"/api/.*")) == 2


def test_a_request_is_recorded_with_lower_case_headers_and_parsed_json(npm_standin: NpmStandIn) -> None:
    httpx.post(f"{npm_standin.url}/api/tokens", json={"identity": "a@b.c", "secret": "x"}, headers={"X-Trace": "1"})
    [recorded] = npm_standin.requests
    assert (recorded.method, recorded.path) == ("POST", "/api/tokens")
    assert recorded.json == {"identity": "a@b.c", "secret": "x"}
    assert recorded.headers["x-trace"] == "1"
    assert recorded.headers["content-type"] == "application/json"
    assert recorded.status == 400
    assert recorded.response == {"error": {"code": 400, "message": "Invalid email or password"}}


# -- the spec checker fails when it should -------------------------------------------------------------

def test_an_operation_the_spec_does_not_have_is_a_violation(npm_standin: NpmStandIn) -> None:
    answer = httpx.delete(f"{npm_standin.url}/api/tokens")
    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": 404, "message": "Not Found"}}
    assert npm_standin.violations == [
        "DELETE /api/tokens: no such operation in the npm spec (extract: tests/fixtures/standin-specs/npm.json)"]


def test_a_body_off_the_schema_is_a_violation(npm_standin: NpmStandIn) -> None:
    answer = httpx.post(f"{npm_standin.url}/api/users", json={"name": "Admin", "nickname": "Admin", "mail": "a@b.c"})
    assert answer.status_code == 400  # NPM validates bodies against the same schema
    assert len(npm_standin.violations) == 2
    assert all(v.startswith("POST /api/users: body: ") for v in npm_standin.violations)
    assert any("email" in v and "required" in v for v in npm_standin.violations)
    assert any("mail" in v and "Additional properties" in v for v in npm_standin.violations)


def test_a_path_parameter_of_the_wrong_type_is_a_violation(npm_standin: NpmStandIn) -> None:
    httpx.get(f"{npm_standin.url}/api/users/admin")
    assert [v for v in npm_standin.violations if "path parameter userID='admin'" in v]


def test_the_wrong_auth_scheme_is_a_violation(npm_standin: NpmStandIn) -> None:
    npm_standin.add_user("admin@corp.example", "a-long-password")
    token = httpx.post(f"{npm_standin.url}/api/tokens",
                       json={"identity": "admin@corp.example", "secret": "a-long-password"}).json()["token"]
    assert httpx.get(f"{npm_standin.url}/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert npm_standin.violations == []
    assert httpx.get(f"{npm_standin.url}/api/users/me", headers={"Authorization": f"bearer {token}"}).status_code == 403
    assert npm_standin.violations == [
        "GET /api/users/me: auth: the spec wants bearerAuth; got Authorization: bearer …"]


def _request(method: str, path: str, *, query: dict[str, str] | None = None, headers: dict[str, str] | None = None,
             body: bytes = b"", content_type: str | None = None) -> Recorded:
    all_headers = {**(headers or {}), **({"content-type": content_type} if content_type else {})}
    parsed = None
    if body and content_type == "application/json":
        import json

        parsed = json.loads(body)
    return Recorded(method, path, query or {}, all_headers, body, parsed)


TINY_SPEC = {
    "swagger": "2.0", "basePath": "/api", "consumes": ["application/json"],
    "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
    "paths": {"/things/{id}": {"post": {
        "operationId": "makeThing", "security": [{"key": []}],
        "parameters": [{"name": "id", "in": "path", "required": True, "type": "integer"},
                       {"name": "dry", "in": "query", "required": True, "type": "boolean"},
                       {"name": "X-Request", "in": "header", "required": True, "type": "string"},
                       {"name": "body", "in": "body", "required": True,
                        "schema": {"$ref": "#/definitions/Thing"}}]}}},
    "definitions": {"Thing": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
}


def test_the_checker_wants_required_query_and_header_parameters_and_the_body() -> None:
    spec = Spec("tiny", document=TINY_SPEC)
    good = _request("POST", "/api/things/7", query={"dry": "true"}, headers={"x-request": "1", "x-key": "k"},
                    body=b'{"name": "a"}', content_type="application/json")
    assert spec.check(good)[1] == []
    bare = _request("POST", "/api/things/x")
    assert spec.check(bare)[1] == [
        "POST /api/things/x: path parameter id='x' does not match {\"type\": \"integer\"}",
        "POST /api/things/x: required query parameter 'dry' is missing",
        "POST /api/things/x: required header 'X-Request' is missing",
        "POST /api/things/x: body: the request body is required but missing",
        "POST /api/things/x: auth: the spec wants key; got no Authorization header",
    ]
    wrong_type = _request("POST", "/api/things/7", query={"dry": "1"}, headers={"x-request": "1", "x-key": "k"},
                          body=b"name=a", content_type="application/x-www-form-urlencoded")
    assert spec.check(wrong_type)[1] == [
        "POST /api/things/7: body: body of type application/x-www-form-urlencoded but the operation takes "
        "application/json"]


def test_the_checker_validates_multipart_forms_by_their_schema() -> None:
    spec = Spec("portainer")
    form = httpx.Request("POST", "http://x/api/endpoints", files={"Name": (None, "local"),
                                                                  "EndpointCreationType": (None, "one")})
    form.read()
    recorded = _request("POST", "/api/endpoints", headers={"authorization": "Bearer j"}, body=form.content,
                        content_type=form.headers["content-type"])
    problems = spec.check(recorded)[1]
    assert problems
    assert all(p.startswith("POST /api/endpoints: body: EndpointCreationType: ") for p in problems)
    assert 'POST /api/endpoints: body: EndpointCreationType: "one" is not of type "integer"' in problems
    good = httpx.Request("POST", "http://x/api/endpoints", files={"Name": (None, "local"),
                                                                 "EndpointCreationType": (None, "1")})
    good.read()
    assert spec.check(_request("POST", "/api/endpoints", headers={"authorization": "Bearer j"}, body=good.content,
                               content_type=good.headers["content-type"]))[1] == []


# -- Cockpit: one probe --------------------------------------------------------------------------------

def test_cockpit_answers_its_ping_with_cors_and_nothing_else(cockpit_standin: CockpitStandIn) -> None:
    answer = httpx.get(f"{cockpit_standin.url}/ping")
    assert answer.status_code == 200
    assert answer.json() == {"service": "cockpit"}
    assert answer.headers["access-control-allow-origin"] == "*"
    assert cockpit_standin.violations == []
    assert httpx.get(f"{cockpit_standin.url}/cockpit/login").status_code == 404
    assert cockpit_standin.violations == ["GET /cockpit/login: Cockpit serves only GET /ping to a health check"]
