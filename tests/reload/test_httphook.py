"""The `http` strategy against a real HTTP server on loopback."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from apphub.errors import ReloadError
from apphub.reload.httphook import http_strategies
from apphub.sync.manifest import HttpAction
from tests.conftest import free_port


def hook(url: str, method: str = "POST", timeout: float = 5) -> HttpAction:
    return HttpAction(strategy="http", url=url, method=method, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["POST", "GET", "PUT"])
def test_a_2xx_answer_is_success_and_the_method_is_used(loopback, method):
    loopback.respond = lambda m, path: (204 if m == "PUT" else 200, "")

    http_strategies()["http"]("web", hook(f"{loopback.url}/-/reload", method))

    assert loopback.requests == [(method, "/-/reload")]


def test_a_5xx_answer_fails_with_the_status_and_the_first_lines_of_the_body_whole(loopback):
    # Whole lines, never cut inside one: the engine masks secrets before it shortens (issue 8).
    body = "reload failed: config line 12: unknown key 'listen'. " + "x" * 500 + "\n" + \
        "".join(f"  line {n}  with  blanks\n" for n in range(2, 40))
    loopback.respond = lambda m, path: (500, body)

    with pytest.raises(ReloadError) as raised:
        http_strategies()["http"]("web", hook(f"{loopback.url}/reload"))

    message = str(raised.value)
    assert message.startswith(f"service web: http POST {loopback.url}/reload: answered HTTP 500 Internal Server Error")
    assert "reload failed: config line 12: unknown key 'listen'. " + "x" * 500 + " | line 2  with  blanks" in message
    assert message.endswith("line 20  with  blanks | …")  # the first 20 lines
    assert "line 21" not in message


def test_a_body_in_another_charset_is_read_as_utf8_when_it_is(loopback):
    # A secret is UTF-8 text: read in the declared latin-1, it would be spelled unlike any mask.
    loopback.respond = lambda m, path: (500, "mot de passe: Pässwörd-1")
    loopback.content_type = "text/plain; charset=latin-1"

    with pytest.raises(ReloadError) as raised:
        http_strategies()["http"]("web", hook(f"{loopback.url}/reload"))

    assert str(raised.value).endswith(": mot de passe: Pässwörd-1")


def test_a_4xx_answer_fails(loopback):
    loopback.respond = lambda m, path: (404, "no such route")

    with pytest.raises(ReloadError, match=r"answered HTTP 404 Not Found: no such route"):
        http_strategies()["http"]("web", hook(f"{loopback.url}/reload"))


def test_a_redirect_is_not_followed_and_fails(loopback):
    loopback.respond = lambda m, path: (302, "")

    with pytest.raises(ReloadError, match=r"HTTP 302 Found \(a redirect to /elsewhere, not followed\)"):
        http_strategies()["http"]("web", hook(f"{loopback.url}/reload"))
    assert loopback.requests == [("POST", "/reload")]


def test_connection_refused_fails_at_once():
    url = f"http://127.0.0.1:{free_port()}/reload"
    started = time.monotonic()

    with pytest.raises(ReloadError, match=r"service web: http POST .*: connection refused"):
        http_strategies()["http"]("web", hook(url, timeout=10))
    assert time.monotonic() - started < 2


def test_no_answer_within_the_action_timeout_fails(loopback):
    loopback.delay = 3.0
    started = time.monotonic()

    with pytest.raises(ReloadError, match=r"no answer within 0.3 s"):
        http_strategies()["http"]("web", hook(f"{loopback.url}/reload", timeout=0.3))
    assert time.monotonic() - started < 2


def test_a_password_in_the_url_is_masked_in_the_error(loopback):
    loopback.respond = lambda m, path: (401, "bad credentials")
    port = loopback.url.rsplit(":", 1)[1]

    with pytest.raises(ReloadError) as raised:
        http_strategies()["http"]("web", hook(f"http://admin:hunter2@127.0.0.1:{port}/reload"))

    assert "hunter2" not in str(raised.value)
    assert f"http://admin:***@127.0.0.1:{port}/reload" in str(raised.value)
    assert loopback.headers[0]["authorization"].startswith("Basic ")


def test_a_proxy_in_the_environment_does_not_divert_the_hook(loopback):
    os.environ["HTTP_PROXY"] = os.environ["http_proxy"] = f"http://127.0.0.1:{free_port()}"
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)

    http_strategies()["http"]("web", hook(f"{loopback.url}/reload"))

    assert loopback.requests == [("POST", "/reload")]


def test_a_given_client_is_used(loopback):
    with httpx.Client(headers={"X-Reload-Token": "t0ken"}) as client:
        http_strategies(client)["http"]("web", hook(f"{loopback.url}/reload"))

    assert loopback.headers[0]["x-reload-token"] == "t0ken"
