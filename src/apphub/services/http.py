"""One product's HTTP API as the initialisers and connection tests call it.

Every failure becomes a ServiceError that names the product, what apphub was doing and the
call: ServiceUnreachable when a later attempt may work (no connection, a timeout, a 5xx), or
ServiceRefused with the product's own words (a 4xx). Request bodies (they hold passwords) are
never quoted; a message taken from a response is masked with the caller's secrets.

No cookies are kept: Portainer answers a login with a `portainer_api_key` cookie, and a request
that sends it back is held to its CSRF check and refused (service-apis.md §2.2).
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from apphub.errors import Interrupted, ServiceRefused, ServiceUnreachable
from apphub.reload.httphook import tls_context
from apphub.sync.values import mask_secrets


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret's plaintext replaced by the mask, longest first (so that a secret
    holding a shorter one is masked whole); an empty one masks nothing."""
    return mask_secrets(text, sorted({secret for secret in secrets if secret}, key=len, reverse=True))


class ProductClient:
    """Calls one product's API under `base_url`; `secrets` are masked in every error message."""

    def __init__(self, product: str, base_url: str, *, timeout: float, secrets: Iterable[str] = (),
                 transport: httpx.BaseTransport | None = None, stop: threading.Event | None = None) -> None:
        """`timeout`: what all the calls of this client may take together (one attempt of one step);
        `stop`: set when apphub is stopping, and no call starts after it is."""
        self.product = product
        self.base_url = base_url.rstrip("/")
        self._secrets = list(secrets)
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._stop = stop
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False, trust_env=False,
                                  verify=tls_context(), cookies=http.cookiejar.CookieJar(_NoCookies()))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProductClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_secret(self, secret: str) -> None:
        """Mask this too from now on (a token the product just created)."""
        self._secrets.append(secret)

    def call(self, method: str, path: str, *, what: str, expect: Collection[int] = (200,),
             auth: httpx.Auth | tuple[str, str] | None = None, headers: Mapping[str, str] | None = None,
             json_body: Any = None, files: Mapping[str, tuple[None, str]] | None = None,
             params: Mapping[str, str] | None = None) -> httpx.Response:
        """`method` `base_url + path`; returns the response when its status is in `expect`."""
        url = self.base_url + path
        where = f"{self.product}: {what} ({method} {_without_userinfo(url)})"
        if self._stop is not None and self._stop.is_set():
            raise Interrupted(f"{where}: apphub is stopping")
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ServiceUnreachable(f"{where}: the step's {self._timeout:g} s were used up before this call")
        try:
            # Each call may wait what is left of the attempt's time for each read (httpx's timeouts are
            # per phase); no call starts once it is used up.
            response = self._http.request(method, url, auth=auth, headers=headers, json=json_body, files=files,
                                          params=params, timeout=left)
        except httpx.TimeoutException as exc:
            raise ServiceUnreachable(f"{where}: no answer within {self._timeout:g} s ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(f"{where}: {self._masked(str(exc))[:300] or type(exc).__name__}") from None
        if response.status_code in expect:
            return response
        reason = self._masked(_reason(response))[:300]  # masked whole, then shortened: no piece of a secret
        if response.status_code >= 500:
            raise ServiceUnreachable(f"{where}: {response.status_code} {reason}")
        raise ServiceRefused(f"{where}: {response.status_code} {reason}", response.status_code)

    def json(self, response: httpx.Response, *, what: str) -> Any:
        """The body as JSON, or ServiceRefused saying the product answered something else."""
        try:
            return response.json()
        except ValueError:
            raise ServiceRefused(f"{self.product}: {what}: the answer is not JSON "
                                 f"({response.headers.get('content-type', 'no content type')})",
                                 response.status_code) from None

    def _masked(self, text: str) -> str:
        return mask(text, self._secrets)


def _reason(response: httpx.Response) -> str:
    """The product's own message: Gitea `message`, NPM `error.message`, Portainer `message`/`details`."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        text = response.text.strip().splitlines()
        return (text[0] if text else response.reason_phrase) or str(response.status_code)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        parts = [str(body[field]) for field in ("message", "details") if body.get(field)]
        if parts:
            return ": ".join(parts)
    return response.reason_phrase or str(response.status_code)


def _without_userinfo(url: str) -> str:
    """The URL as messages show it: a `user:password@` in it is dropped."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
