"""The console's session: a key exchanged for a cookie, over HTTP against a live server.

Expected: the cookie is HttpOnly, SameSite=Strict, for the whole site and the session's length
(Secure over TLS); it opens what its key opens and no more; a write needs the session's CSRF
header; signing out, revoking the key or replacing Websoft9's key ends it; the key and the cookie
are kept only as hashes; a service's key cannot sign in.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from apphub.core import Core
from apphub.db import Database
from apphub.paths import DataDir
from apphub.web.routes import ASSETS_PATH, STATIC
from apphub.web.sessions import COOKIE_NAME, CSRF_HEADER, LIFETIME, SessionStore
from tests.api.conftest import Keys, assert_problem, websoft9_key_of
from tests.conftest import LiveServer

APPHUB = Path(sys.executable).with_name("apphub")


def cli(server: LiveServer, *args: str) -> None:
    subprocess.run([str(APPHUB), "--data-dir", str(server.data.root), *args], check=True, capture_output=True)


def signed_in(server: LiveServer, key: str) -> tuple[httpx.Client, str]:
    """A client holding the console's cookie (and no key), and the session's CSRF token."""
    client = server.client()
    answer = client.post("/api/v1/session", json={"key": key})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf_token"]


@pytest.fixture
def console(live_server: LiveServer, keys: Keys) -> Iterator[tuple[httpx.Client, str]]:
    client, csrf = signed_in(live_server, keys.write)
    try:
        yield client, csrf
    finally:
        client.close()


def test_signing_in_sets_a_strict_http_only_cookie_and_answers_who_and_the_csrf_token(
        live_server: LiveServer, keys: Keys) -> None:
    with live_server.client() as client:
        answer = client.post("/api/v1/session", json={"key": keys.write})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["name"], body["role"]) == ("deployer", "write")
    assert len(body["csrf_token"]) >= 40
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert f"max-age={int(LIFETIME.total_seconds())}" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here; over TLS it is Secure (below)
    assert keys.write not in cookie


def test_over_tls_the_cookie_is_secure(live_server: LiveServer, admin_key: str) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback: what a TLS proxy in front of apphub sends
    with live_server.client() as client:
        answer = client.post("/api/v1/session", json={"key": admin_key}, headers={"x-forwarded-proto": "https"})

    assert answer.status_code == 200, answer.text
    assert "secure" in answer.headers["set-cookie"].lower().split("; ")


def test_every_request_with_the_cookie_needs_its_token(console: tuple[httpx.Client, str], core: Core) -> None:
    """A browser sends the cookie to every port of the host name (Gitea's, Portainer's...): the
    cookie alone must open nothing, not even a read."""
    client, csrf = console
    wrong = csrf[:-1] + ("A" if csrf[-1] != "A" else "B")

    read_bare = client.get("/api/v1/settings/gitea")
    read_wrong = client.get("/api/v1/settings/gitea", headers={CSRF_HEADER: wrong})
    who = client.get("/api/v1/session")
    read = client.get("/api/v1/settings/gitea", headers={CSRF_HEADER: csrf})
    forged = client.put("/api/v1/settings/gitea", json={"user_email": "forged@example.com"})
    made = client.put("/api/v1/settings/gitea", json={"user_email": "console@example.com"}, headers={CSRF_HEADER: csrf})

    for refused in (read_bare, read_wrong, who, forged):
        assert_problem(refused, 403, CSRF_HEADER)
        assert csrf not in refused.text
    assert read.status_code == 200, read.text
    assert made.status_code == 200, made.text
    assert core.config.snapshot().public["gitea"]["user_email"] == "console@example.com"
    assert _last_update(core) == {"actor": "deployer", "source": "console"}


def _last_update(core: Core) -> dict[str, object]:
    with sqlite3.connect(core.data.database) as connection:
        connection.row_factory = sqlite3.Row
        row = connection.execute("SELECT actor, source FROM audit_events WHERE action = 'settings.update' "
                                 "ORDER BY id DESC LIMIT 1").fetchone()
    return dict(row)


def test_a_read_session_may_not_write_even_with_its_csrf_token(live_server: LiveServer, keys: Keys,
                                                               core: Core) -> None:
    before = core.data.config_ini.read_bytes()
    client, csrf = signed_in(live_server, keys.read)
    try:
        answer = client.put("/api/v1/settings/gitea", json={"user_email": "reader@example.com"},
                            headers={CSRF_HEADER: csrf})
    finally:
        client.close()

    assert_problem(answer, 403, "reader", "read", "write")
    assert core.data.config_ini.read_bytes() == before


def test_a_revealed_secret_is_not_stored_by_the_browser(console: tuple[httpx.Client, str], keys: Keys,
                                                         live_server: LiveServer) -> None:
    with live_server.client(keys.admin) as admin:
        revealed = admin.get("/api/v1/settings/gitea", params={"reveal": "true"})
        masked = admin.get("/api/v1/settings/gitea")

    assert revealed.headers["cache-control"] == "no-store"
    assert masked.headers["cache-control"] == "no-cache"


def test_signing_in_is_audited_as_the_console(live_server: LiveServer, keys: Keys, core: Core) -> None:
    signed_in(live_server, keys.write)[0].close()

    with sqlite3.connect(core.data.database) as connection:
        rows = connection.execute("SELECT actor, source, message FROM audit_events WHERE action = 'session.opened'"
                                  ).fetchall()
    assert rows == [("deployer", "console", "signed in to the web console")]


def test_a_bad_key_or_body_opens_nothing(live_server: LiveServer, keys: Keys) -> None:
    with live_server.client() as client:
        unknown = client.post("/api/v1/session", json={"key": "ahk_0123456789ab_" + "A" * 43})
        empty = client.post("/api/v1/session", json={"key": ""})
        form = client.post("/api/v1/session", content=f"key={keys.admin}",
                           headers={"content-type": "application/x-www-form-urlencoded"})

    assert_problem(unknown, 401, "Invalid API Key")
    assert empty.status_code == 400, empty.text
    assert form.status_code == 400, form.text  # a cross-site form cannot sign someone in with its key
    for answer in (unknown, empty, form):
        assert "set-cookie" not in answer.headers


def test_a_service_key_cannot_sign_in(live_server: LiveServer, core: Core) -> None:
    key = core.keys.create("gitea-init", "read", service="gitea")
    with live_server.client() as client:
        answer = client.post("/api/v1/session", json={"key": key})

    assert_problem(answer, 403, "gitea-init", "gitea")
    assert "set-cookie" not in answer.headers


def test_signing_out_ends_the_session(console: tuple[httpx.Client, str]) -> None:
    client, csrf = console
    cookie = client.cookies[COOKIE_NAME]

    answer = client.delete("/api/v1/session", headers={CSRF_HEADER: csrf})

    assert answer.status_code == 204, answer.text
    assert COOKIE_NAME not in client.cookies  # the answer deleted it
    client.cookies.set(COOKIE_NAME, cookie)  # and the old cookie, sent again with its token, opens nothing
    assert_problem(client.get("/api/v1/settings", headers={CSRF_HEADER: csrf}), 401, "sign in again")


def test_revoking_the_key_ends_its_sessions(console: tuple[httpx.Client, str], live_server: LiveServer) -> None:
    client, csrf = console
    assert client.get("/api/v1/settings", headers={CSRF_HEADER: csrf}).status_code == 200

    cli(live_server, "keys", "revoke", "deployer")

    assert_problem(client.get("/api/v1/settings", headers={CSRF_HEADER: csrf}), 401, "revoked")


def test_replacing_the_websoft9_key_ends_its_sessions(live_server: LiveServer, core: Core) -> None:
    client, csrf = signed_in(live_server, websoft9_key_of(core))
    try:
        assert client.get("/api/v1/session", headers={CSRF_HEADER: csrf}).json()["role"] == "admin"

        cli(live_server, "genkey")

        assert_problem(client.get("/api/v1/settings", headers={CSRF_HEADER: csrf}), 401, "sign in again")
    finally:
        client.close()


def test_a_key_header_wins_over_the_cookie(console: tuple[httpx.Client, str], keys: Keys) -> None:
    client, _ = console

    answer = client.get("/api/v1/session", headers={"x-api-key": keys.read})  # no token: the key is enough

    assert (answer.json()["name"], answer.json()["csrf_token"]) == ("reader", None)


def test_the_database_keeps_only_hashes_of_the_key_and_the_cookie(console: tuple[httpx.Client, str],
                                                                  keys: Keys, core: Core) -> None:
    client, csrf = console
    cookie = client.cookies[COOKIE_NAME]

    dump = "\n".join(sqlite3.connect(core.data.database).iterdump())

    assert "web_sessions" in dump
    assert csrf in dump
    assert cookie not in dump
    assert keys.write not in dump


def test_a_session_ends_after_its_lifetime(data_dir: DataDir, core: Core) -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    clock = [now]
    database = Database(data_dir.database)
    try:
        sessions = SessionStore(database, clock=lambda: clock[0])
        token, opened = sessions.open("admin", "0" * 64, "admin")
        clock[0] = now + LIFETIME - timedelta(seconds=1)
        assert sessions.find(token) == opened
        clock[0] = now + LIFETIME
        assert sessions.find(token) is None
        assert sessions.find(token + "x") is None
    finally:
        database.close()


def test_the_page_and_its_files_are_served_without_a_key_with_a_strict_policy(live_server: LiveServer) -> None:
    with live_server.client() as client:
        page = client.get("/")
        script = client.get(f"{ASSETS_PATH}/app.js")
        missing = client.get(f"{ASSETS_PATH}/nothing.js")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "immutable" in script.headers["cache-control"]  # its URL changes with it
    assert f'src="{ASSETS_PATH}/app.js"' in page.text
    assert missing.status_code == 404


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for path in STATIC.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path
            assert "https://" not in text, path
            assert "//cdn" not in text, path
