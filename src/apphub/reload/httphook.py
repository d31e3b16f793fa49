"""The `http` reload strategy: call the service's own reload endpoint; 2xx is success.

Redirects are not followed (a hook that redirects is misconfigured, and the message says where it
points), and proxies from the environment are ignored: hooks and probes target local services,
and an HTTP_PROXY set for package downloads must not divert them.

A response body is quoted in whole lines, never cut inside one, never escaped and its blanks never
squeezed: a service can answer with a secret its files hold, and the sync engine masks secrets
before it shortens a message (apphub.sync.redact); a cut or an escape made before that could leave
part of a secret that no mask matches (issue 8).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal
from urllib.parse import urlsplit

import httpx

from apphub.errors import ReloadError
from apphub.reload.base import ActionSpec, ReloadFn

_BODY_LINES = 20


class HttpAction(ActionSpec):
    strategy: Literal["http"]
    url: str
    method: Literal["GET", "POST", "PUT"] = "POST"


def shown_url(url: str) -> str:
    """The URL with a password in it masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username}:***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def body_excerpt(response: httpx.Response) -> str:
    """The first lines of a response body, whole, joined on one line (empty when there is none).

    Bytes that are UTF-8 are read as UTF-8 whatever the charset says: secrets are UTF-8 text, and
    a body read in another charset would spell one differently from every mask.
    """
    try:
        text = response.content.decode("utf-8")
    except UnicodeDecodeError:
        text = response.text  # its declared charset, or UTF-8 with replacement characters
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:_BODY_LINES]) + (" | …" if len(lines) > _BODY_LINES else "")


def describe_status(response: httpx.Response) -> str:
    """`HTTP 503 Service Unavailable: <body excerpt>` (or where a redirect points)."""
    described = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if response.is_redirect:
        return f"{described} (a redirect to {response.headers.get('location', '?')}, not followed)"
    excerpt = body_excerpt(response)
    return f"{described}: {excerpt}" if excerpt else described


def describe_http_error(exc: httpx.HTTPError, timeout: float) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect within {timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or type(exc).__name__
        if "refused" in reason.lower():
            return "connection refused (is the service listening?)"
        return f"cannot connect: {reason}"
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        # h11 quotes what it could not parse, escaped as bytes (a secret would be spelled by repr).
        return f"the answer is not valid HTTP ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's roots), made once for every client apphub opens:
    making one loads the CA bundle, about 19 ms of CPU, which every probe of a health gate paid
    before (issue 10's benchmark), and every product client of the initialisers (issue 11's)."""
    return httpx.create_ssl_context()


@contextmanager
def http_client(client: httpx.Client | None) -> Iterator[httpx.Client]:
    """The given client, or a short-lived one closed on exit (so nothing leaks between reloads)."""
    if client is not None:
        yield client
        return
    with httpx.Client(follow_redirects=False, trust_env=False, verify=tls_context()) as own:
        yield own


def http_strategies(client: httpx.Client | None = None) -> dict[str, ReloadFn]:
    """The `http` strategy: `action.method` on `action.url` within `action.timeout`; 2xx is success."""

    def call(service: str, action: ActionSpec) -> None:
        if not isinstance(action, HttpAction):
            raise ReloadError(f"service {service}: http was given a {action.strategy} action")
        where = f"service {service}: http {action.method} {shown_url(action.url)}"
        with http_client(client) as http:
            try:
                response = http.request(action.method, action.url, timeout=action.timeout)
            except httpx.InvalidURL as exc:
                raise ReloadError(f"{where}: the URL is not valid: {exc}") from exc
            except httpx.HTTPError as exc:
                raise ReloadError(f"{where}: {describe_http_error(exc, action.timeout)}") from exc
        if not response.is_success:
            raise ReloadError(f"{where}: answered {describe_status(response)}")

    return {"http": call}
