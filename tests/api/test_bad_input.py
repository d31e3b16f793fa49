"""Bad input of any kind: a 4xx that says what is wrong, never a 5xx, never a partial write.

The matrix runs against one server per module (each case compares config.ini before and after its
own request); the random bodies then check that whatever a client sends, the file either stays
as it was or still validates against the schema.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from apphub.core import Core
from apphub.store.validate import check_file
from tests.api.conftest import MASK, PROBLEM_JSON, assert_legacy_error, assert_problem, version_of_file
from tests.conftest import LiveServer

JSON_HEADERS = {"content-type": "application/json"}
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    mentions: tuple[str, ...] = ()
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, client: httpx.Client) -> httpx.Response:
        if self.content is not None:
            return client.request(self.method, self.path, content=self.content,
                                  headers={**JSON_HEADERS, **self.headers})
        return client.request(self.method, self.path, json=self.json, headers=self.headers)


def put(id: str, path: str, body: Any, status: int, *mentions: str) -> Case:
    return Case(id, "PUT", path, status, mentions, json=body)


def raw(id: str, path: str, content: bytes, status: int, *mentions: str, **headers: str) -> Case:
    return Case(id, "PUT", path, status, mentions, content=content, headers=headers)


SECTION = "/api/v1/settings/gitea"
BATCH = "/api/v1/settings"

CASES = [
    # The body is not JSON, or not an object.
    raw("malformed-json", SECTION, b'{"user_email": ', 400, "JSON"),
    raw("trailing-comma", SECTION, b'{"user_email": "a@b.co",}', 400, "JSON"),
    raw("single-quotes", SECTION, b"{'user_email': 'a@b.co'}", 400, "JSON"),
    raw("empty-body", SECTION, b"", 400, "body"),
    raw("invalid-utf8", SECTION, b'{"user_email": "\xff\xfe"}', 400, "body"),
    raw("deeply-nested", SECTION, b"[" * 100_000, 400, "body"),
    raw("number-too-long", "/api/v1/settings/cockpit", b'{"port": ' + b"9" * 5000 + b"}", 400, "body"),
    raw("text-plain", SECTION, b'{"user_email": "a@b.co"}', 400, "body", **{"content-type": "text/plain"}),
    raw("form-encoded", SECTION, b"user_email=a%40b.co", 400, "body",
        **{"content-type": "application/x-www-form-urlencoded"}),
    put("array-body", SECTION, ["user_email", "a@b.co"], 400, "body", "dictionary"),
    put("string-body", SECTION, "user_email=a@b.co", 400, "body", "dictionary"),
    put("number-body", SECTION, 42, 400, "body", "dictionary"),
    raw("null-body", SECTION, b"null", 400, "body"),
    put("batch-array", BATCH, [{"gitea": {}}], 400, "body"),
    put("batch-section-string", BATCH, {"gitea": "user_email=a@b.co"}, 400, "gitea"),
    put("batch-section-list", BATCH, {"gitea": ["user_email"]}, 400, "gitea"),
    put("batch-section-null", BATCH, {"cockpit": {"port": 9091}, "gitea": None}, 400, "gitea"),
    put("batch-section-number", BATCH, {"gitea": 1}, 400, "gitea"),
    # Wrong types for a key.
    put("list-into-port", "/api/v1/settings/cockpit", {"port": [9091]}, 422, "cockpit", "port"),
    put("bool-into-port", "/api/v1/settings/cockpit", {"port": True}, 422, "cockpit", "port"),
    put("float-into-port", "/api/v1/settings/cockpit", {"port": 9091.5}, 422, "cockpit", "port"),
    raw("nan-into-port", "/api/v1/settings/cockpit", b'{"port": NaN}', 422, "cockpit", "port"),
    put("null-into-port", "/api/v1/settings/cockpit", {"port": None}, 422, "cockpit", "port", "null"),
    put("object-into-port", "/api/v1/settings/cockpit", {"port": {"value": 9091}}, 422, "cockpit", "port"),
    put("text-into-port", "/api/v1/settings/cockpit", {"port": "http"}, 422, "cockpit", "port"),
    put("port-zero", "/api/v1/settings/cockpit", {"port": 0}, 422, "cockpit", "port"),
    put("port-negative", "/api/v1/settings/cockpit", {"port": -1}, 422, "cockpit", "port"),
    put("huge-int", "/api/v1/settings/cockpit", {"port": 10**30}, 422, "cockpit", "port"),
    put("bool-into-string", SECTION, {"user_name": False}, 422, "gitea", "user_name"),
    put("float-into-string", SECTION, {"user_name": 1.5}, 422, "gitea", "user_name"),
    put("object-into-string", SECTION, {"user_email": {"a": "b"}}, 422, "gitea", "user_email"),
    put("list-into-string", SECTION, {"user_email": ["a@b.co"]}, 422, "gitea", "user_email"),
    put("list-of-numbers", "/api/v1/settings/initial_apps", {"keys": [1, 2]}, 422, "initial_apps", "keys"),
    put("list-item-with-comma", "/api/v1/settings/initial_apps", {"keys": ["a,b"]}, 422, "initial_apps", "keys"),
    put("batch-wrong-type", BATCH, {"gitea": {"user_email": "ok@example.com"}, "cockpit": {"port": [1]}}, 422,
        "cockpit", "port"),
    # Unknown sections and keys.
    put("unknown-section", "/api/v1/settings/mysql", {"port": 3306}, 422, "mysql"),
    put("batch-unknown-section", BATCH, {"gitea": {"user_email": "ok@example.com"}, "mysql": {"port": 3306}}, 422,
        "mysql"),
    put("unknown-key", SECTION, {"user_email": "ok@example.com", "admin_token": "x"}, 422, "gitea", "admin_token"),
    Case("delete-unknown-key", "DELETE", "/api/v1/settings/gitea/admin_token", 404, ("gitea", "admin_token")),
    Case("delete-unknown-section", "DELETE", "/api/v1/settings/mysql/port", 404, ("mysql",)),
    # Values no INI file can hold, or that the global rules refuse.
    put("too-long", SECTION, {"user_email": "a" * 4100 + "@b.co"}, 422, "gitea", "user_email", "4096"),
    put("too-long-secret", SECTION, {"user_pwd": "p" * 4097}, 422, "gitea", "user_pwd", "4096"),
    put("nul", SECTION, {"user_name": "web\x00soft9"}, 422, "gitea", "user_name", "control"),
    put("newline", SECTION, {"user_name": "websoft9\n[evil]\nkey = value"}, 422, "gitea", "user_name", "control"),
    put("carriage-return", SECTION, {"user_name": "websoft9\r"}, 422, "gitea", "user_name"),
    put("tab", SECTION, {"user_name": "web\tsoft9"}, 422, "gitea", "user_name", "control"),
    put("escape", SECTION, {"user_name": "\x1b[31mred"}, 422, "gitea", "user_name", "control"),
    put("del", SECTION, {"user_name": "web\x7fsoft9"}, 422, "gitea", "user_name", "control"),
    put("newline-in-secret", SECTION, {"user_pwd": "password\n[x]"}, 422, "gitea", "user_pwd", "control"),
    put("leading-blank", SECTION, {"user_name": " websoft9"}, 422, "gitea", "user_name"),
    put("empty-required", SECTION, {"user_name": ""}, 422, "gitea", "user_name", "required"),
    # Section and key names that INI cannot hold or that try to escape.
    put("key-with-bracket", "/api/v1/settings/nginx_proxy_manager", {"[gitea]": "x"}, 422, "[gitea]"),
    put("key-with-equals", "/api/v1/settings/nginx_proxy_manager", {"user_pwd=x": "y"}, 422, "user_pwd=x"),
    put("key-with-colon", "/api/v1/settings/nginx_proxy_manager", {"a:b": "y"}, 422, "a:b"),
    put("key-with-space", "/api/v1/settings/nginx_proxy_manager", {"nike name": "y"}, 422, "nike name"),
    put("key-with-newline", "/api/v1/settings/nginx_proxy_manager", {"a\n[b]\nc": "y"}, 422, "nginx_proxy_manager"),
    put("key-unicode", "/api/v1/settings/nginx_proxy_manager", {"clé": "y"}, 422, "clé"),
    put("key-traversal", "/api/v1/settings/nginx_proxy_manager", {"../x": "y"}, 422, "../x"),
    put("key-comment", "/api/v1/settings/nginx_proxy_manager", {"#x": "y"}, 422, "#x"),
    put("key-empty", "/api/v1/settings/nginx_proxy_manager", {"": "y"}, 422, "nginx_proxy_manager"),
    put("key-very-long", "/api/v1/settings/nginx_proxy_manager", {"k" * 300: "y"}, 422, "k" * 300),
    put("section-with-bracket", "/api/v1/settings/a%5Bb%5D", {"k": "v"}, 422, "a[b]"),
    put("section-with-equals", "/api/v1/settings/a%3Db", {"k": "v"}, 422, "a=b"),
    put("section-with-space", "/api/v1/settings/a%20b", {"k": "v"}, 422, "a b"),
    put("section-unicode", "/api/v1/settings/%C3%BCber", {"k": "v"}, 422, "über"),
    put("section-very-long", "/api/v1/settings/" + "s" * 300, {"k": "v"}, 422, "s" * 300),
    put("section-dotdot", "/api/v1/settings/%2E%2E", {"k": "v"}, 422, ".."),
    put("batch-section-traversal", BATCH, {"../system": {"k": "v"}}, 422, "../system"),
    put("batch-section-bracket", BATCH, {"gitea]\n[x": {"k": "v"}}, 422, "gitea"),
    put("batch-section-empty", BATCH, {"": {"k": "v"}}, 422, "section"),
    # An encoded slash is no name (routing decodes it into a separator): 404 naming it, never a redirect.
    put("encoded-slash-section", "/api/v1/settings/..%2Fsystem", {"k": "v"}, 404, "PUT", "'../system'"),
    put("encoded-slash-only", "/api/v1/settings/%2F", {"user_email": "ops@example.com"}, 404, "'/'", "%2F"),
    put("encoded-slash-only-lowercase", "/api/v1/settings/%2f", {"user_email": "ops@example.com"}, 404, "'/'"),
    Case("encoded-slash-delete", "DELETE", "/api/v1/settings/gitea/..%2F..%2Fsystem", 404,
         ("DELETE", "'../../system'")),
    Case("encoded-slash-delete-key", "DELETE", "/api/v1/settings/gitea/%2F", 404, ("'/'",)),
    Case("encoded-slash-delete-in-section", "DELETE", "/api/v1/settings/gitea%2Fuser_email", 404,
         ("'gitea/user_email'",)),
    Case("encoded-slash-read", "GET", "/api/v1/settings/..%2F..%2Fetc%2Fpasswd", 404, ("GET", "'../../etc/passwd'")),
    Case("encoded-slash-read-only", "GET", "/api/v1/settings/%2F", 404, ("'/'",)),
    Case("encoded-slash-system", "GET", "/api/v1/system/%2F", 404, ("'/'",)),
    Case("encoded-slash-system-write", "PUT", "/api/v1/system/%2F", 404, ("'/'",)),
    Case("trailing-slash", "GET", "/api/v1/settings/", 404, ("/api/v1/settings/",)),
    Case("traversal-read", "GET", "/api/v1/settings/%2E%2E", 404, ("..",)),
    # Query parameters.
    Case("reveal-not-a-bool", "GET", "/api/v1/settings?reveal=maybe", 400, ("reveal",)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_a_4xx_naming_the_problem_and_writes_nothing(module_admin: httpx.Client,
                                                                 module_server: LiveServer, case: Case) -> None:
    before = module_server.data.config_ini.read_bytes()

    response = case.send(module_admin)

    assert_problem(response, case.status, *case.mentions)
    assert module_server.data.config_ini.read_bytes() == before
    secret = case.json.get("user_pwd") if isinstance(case.json, dict) else None
    if secret:
        assert secret not in response.text


@pytest.mark.parametrize(("path", "body"), [("/api/v1/settings/mysql", {}), (BATCH, {"mysql": {}}),
                                            (BATCH, {"gitea": {"user_email": "ops@example.com"}, "mysql": {}})])
def test_an_unknown_section_is_refused_even_with_no_keys(module_admin: httpx.Client, module_server: LiveServer,
                                                         path: str, body: dict[str, Any]) -> None:
    before = module_server.data.config_ini.read_bytes()

    response = module_admin.put(path, json=body)

    assert response.status_code in (404, 422), response.text
    assert_problem(response, response.status_code, "mysql")
    assert module_server.data.config_ini.read_bytes() == before


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/api/v1/settings", {"GET", "PUT"}),
    ("DELETE", "/api/v1/settings/gitea", {"GET", "PUT"}),
    ("PATCH", "/api/v1/settings/gitea", {"GET", "PUT"}),
    ("POST", "/api/settings/gitea", {"GET", "PUT"}),
    # The POST routes own their paths: the section routes of the same shape do not serve them.
    ("DELETE", "/api/v1/settings/plan", {"POST"}),
    ("GET", "/api/v1/settings/plan", {"POST"}),
    ("PUT", "/api/v1/settings/plan", {"POST"}),
    ("DELETE", "/api/v1/settings/reload", {"POST"}),
    ("GET", "/api/v1/settings/reload", {"POST"}),
])
def test_a_wrong_method_is_405_listing_every_allowed_method(module_admin: httpx.Client, module_server: LiveServer,
                                                            method: str, path: str, allowed: set[str]) -> None:
    before = module_server.data.config_ini.read_bytes()

    response = module_admin.request(method, path, json={"user_email": "ops@example.com"})

    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"} == allowed
    assert module_server.data.config_ini.read_bytes() == before


METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE")


@pytest.mark.parametrize("path", [
    "/api/v1/settings", "/api/v1/settings/gitea", "/api/v1/settings/plan", "/api/v1/settings/reload",
    "/api/v1/settings/gitea/user_email", "/api/v1/system", "/api/v1/system/docker_library", "/api/v1/audit",
    "/api/v1/sync/status", "/metrics", "/api/settings", "/api/settings/gitea",
])
def test_allow_lists_exactly_the_methods_a_route_serves(module_admin: httpx.Client, module_server: LiveServer,
                                                          path: str) -> None:
    before = module_server.data.config_ini.read_bytes()
    allow = module_admin.options(path)
    assert allow.status_code == 405, allow.text
    allowed = {method.strip() for method in allow.headers["allow"].split(",")}

    # Each method is sent so that it cannot change anything: a stale If-Match, a body that is no
    # object, a timeout of 0 (reload); what matters is whether a route serves it. Every section and
    # key named exists, so a 404 too means that none does.
    statuses = {method: module_admin.request(method, path, json=[], params={"timeout": 0},
                                             headers={"if-match": '"stale"'}).status_code for method in METHODS}

    assert {method for method, status in statuses.items() if status not in (404, 405)} == allowed, statuses
    assert module_server.data.config_ini.read_bytes() == before


def test_a_rejected_secret_is_never_echoed(module_admin: httpx.Client) -> None:
    secret = "Hunter2-but-longer\x00"
    response = module_admin.put(SECTION, json={"user_pwd": secret})
    body = assert_problem(response, 422, "user_pwd")
    assert "Hunter2" not in response.text
    assert body["errors"][0]["value"] == MASK  # type: ignore[index]


@pytest.mark.parametrize("content", [
    b'{"user_pwd": "Hunter2-but-longer",}',
    b'{"user_pwd": "Hunter2-but-longer"',
    b'{"user_pwd": \'Hunter2-but-longer\'}',
    b'"Hunter2-but-longer"',
    b'["user_pwd", "Hunter2-but-longer"]',
])
def test_a_request_that_cannot_be_read_never_echoes_what_it_carried(module_admin: httpx.Client,
                                                                    content: bytes) -> None:
    response = module_admin.put(SECTION, content=content, headers=JSON_HEADERS)

    body = assert_problem(response, 400)
    assert "Hunter2" not in response.text
    for error in body["errors"]:  # type: ignore[attr-defined]
        assert set(error) == {"field", "message", "rule"}, error


# -- huge bodies ----------------------------------------------------------------------------------


def test_a_body_over_one_mib_is_413(module_admin: httpx.Client, module_server: LiveServer) -> None:
    before = module_server.data.config_ini.read_bytes()
    body = json.dumps({"user_name": "x" * (MIB + 1)}).encode()

    response = module_admin.put(SECTION, content=body, headers=JSON_HEADERS)

    assert_problem(response, 413, str(MIB))
    assert module_server.data.config_ini.read_bytes() == before
    assert module_admin.get("/healthz").status_code == 200


def test_a_body_just_under_one_mib_is_read_and_validated(module_admin: httpx.Client) -> None:
    body = json.dumps({"user_name": "x" * (MIB - 100)}).encode()
    assert len(body) <= MIB
    assert_problem(module_admin.put(SECTION, content=body, headers=JSON_HEADERS), 422, "user_name", "4096")


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"user_name": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


def test_a_chunked_body_over_one_mib_is_413(module_admin: httpx.Client, module_server: LiveServer) -> None:
    before = module_server.data.config_ini.read_bytes()

    # A generator makes httpx send Transfer-Encoding: chunked, with no Content-Length.
    response = module_admin.put(SECTION, content=chunks(2 * MIB), headers=JSON_HEADERS)

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, str(MIB))
    assert module_server.data.config_ini.read_bytes() == before
    assert module_admin.get("/healthz").status_code == 200


def test_a_chunked_body_over_one_mib_on_a_websoft9_route_is_refused(module_admin: httpx.Client,
                                                                     module_server: LiveServer) -> None:
    before = module_server.data.config_ini.read_bytes()
    response = module_admin.put("/api/settings/gitea", params={"key": "user_name", "value": "ops"},
                                content=chunks(2 * MIB), headers=JSON_HEADERS)
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"message", "details"}
    assert module_server.data.config_ini.read_bytes() == before


def test_a_declared_length_over_one_mib_on_a_websoft9_route_is_413_in_its_shape(module_admin: httpx.Client) -> None:
    response = module_admin.put("/api/settings/gitea", params={"key": "user_name", "value": "ops"},
                                content=b"x" * (MIB + 1))
    assert_legacy_error(response, 413, "Invalid Request")


# -- Websoft9's route -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [("user_name", "a\nb"), ("user_name", "x" * 5000),
                                            ("user_name", "\x00"), ("user_pwd", "p\tq-long-enough")])
def test_bad_values_on_the_websoft9_route_are_400_naming_the_key(module_admin: httpx.Client,
                                                                 module_server: LiveServer, key: str,
                                                                 value: str) -> None:
    before = module_server.data.config_ini.read_bytes()
    response = module_admin.put("/api/settings/gitea", params={"key": key, "value": value})
    assert key in assert_legacy_error(response, 400, "Invalid Request")
    assert module_server.data.config_ini.read_bytes() == before


@pytest.mark.parametrize(("method", "path", "section"), [
    ("GET", "/api/settings/%2F", "/"),
    ("GET", "/api/settings/gitea%2Fx", "gitea/x"),
    ("PUT", "/api/settings/gitea%2F?key=user_name&value=ops", "gitea/"),
])
def test_an_encoded_slash_on_the_websoft9_route_is_a_section_it_does_not_have(
        module_admin: httpx.Client, module_server: LiveServer, method: str, path: str, section: str) -> None:
    before = module_server.data.config_ini.read_bytes()

    response = module_admin.request(method, path)  # was a 307 to /api/settings

    assert_legacy_error(response, 400, "Invalid Request", f"Section:{section} does not exist")
    assert module_server.data.config_ini.read_bytes() == before


# -- random bodies --------------------------------------------------------------------------------

KNOWN = {
    "nginx_proxy_manager": ["base_url", "user_name", "user_pwd", "nike_name", "listen_port", "docker0_ip", "ssl_cert",
                            "ssl_key"],
    "gitea": ["base_url", "user_name", "user_email", "user_pwd"],
    "portainer": ["base_url", "user_name", "user_pwd"],
    "api_key": ["key"],
    "docker_mirror": ["url"],
    "domain": ["wildcard_domain"],
    "cockpit": ["port"],
    "initial_apps": ["keys"],
    "favorite_apps": ["keys"],
}
ODD_TEXT = ["", " ", "x", "websoft9", "ops@example.com", "http://example.com/api", "/data/x", "172.17.0.2",
            "9091", "-1", "65536", "true", "null", MASK, "é🚀", "a,b", "wordpress,gitea", "a\nb", "\x00", "\t",
            "\x1b[0m", "[x]", "k = v", "%(x)s", "enc:v1:abc", "x" * 4097, "Longenough-Passw0rd!", "f" * 64]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(11 if depth < 2 else 7)
    if kind == 0:
        return rng.choice(ODD_TEXT)
    if kind == 1:
        return rng.choice([0, 1, 80, 9091, 65535, 65536, -5, 2**63, 10**20])
    if kind == 2:
        return rng.random() * rng.choice([1, 1e6, -1e300])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind in (5, 6):
        return "".join(chr(rng.randrange(0x20, 0x2FF)) for _ in range(rng.randrange(0, 20)))
    if kind in (7, 8):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {random_name(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def random_name(rng: random.Random, section: str | None = None) -> str:
    if rng.random() < 0.7:
        return rng.choice(KNOWN[section]) if section in KNOWN else rng.choice(list(KNOWN))
    return rng.choice(["x", "mysql", "[a]", "a=b", "../x", "é", "", " k", "k" * 200, "user_pwd\n", "web"])


def random_body(rng: random.Random) -> tuple[str, Any]:
    """A request body, mostly shaped like a real one so that some writes succeed."""
    if rng.random() < 0.1:
        return BATCH, random_json(rng)
    if rng.random() < 0.5:
        sections = {random_name(rng) for _ in range(rng.randrange(1, 4))}
        return BATCH, {s: ({random_name(rng, s): random_json(rng, 2) for _ in range(rng.randrange(0, 4))}
                           if rng.random() < 0.9 else random_json(rng)) for s in sections}
    section = random_name(rng)
    body = {random_name(rng, section): random_json(rng, 2) for _ in range(rng.randrange(0, 4))}
    path = "/api/v1/settings/" + (quote(section, safe="") or "_")
    return path, body if rng.random() < 0.9 else random_json(rng)


def config_problems(core: Core) -> list[str]:
    snapshot = core.config.snapshot()
    return [str(error) for error in check_file(core.schema.config, snapshot.plaintext_values(), file="config.ini")]


def test_random_bodies_never_cause_a_5xx_or_an_invalid_file(admin: httpx.Client, live_server: LiveServer,
                                                            core: Core) -> None:
    rng = random.Random(20260425)
    assert config_problems(core) == []
    accepted = 0
    for attempt in range(300):
        path, body = random_body(rng)
        before = live_server.data.config_ini.read_bytes()
        response = admin.put(path, json=body)
        after = live_server.data.config_ini.read_bytes()
        context = f"#{attempt}: PUT {path} {json.dumps(body)[:300]} -> {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, context
        if response.status_code == 200:
            accepted += 1
            assert response.json()["version"] == version_of_file(live_server.data.config_ini), context
            if after != before:
                assert config_problems(core) == [], context
        else:
            assert 400 <= response.status_code < 500, context
            assert response.headers["content-type"].startswith(PROBLEM_JSON), context
            assert after == before, context
    # The generator must reach the write path, not only the refusals.
    assert 20 <= accepted <= 280, accepted
