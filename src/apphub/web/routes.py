"""The console over HTTP: its page at `/`, its files under `/assets/`, and its session, which a
key opens (`POST /api/v1/session`) and the page closes when someone signs out.

The page is one HTML file and a few scripts and a stylesheet, all in the package: nothing is
built at install time and nothing is fetched from elsewhere. What it shows it asks of the API,
with the session's cookie.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from apphub.api.auth import Principal, authenticate, core_of, require_read
from apphub.api.problems import COMMON_RESPONSES, SERVER_FAULT, UNAUTHENTICATED, problem_response
from apphub.api.settings import actor_of
from apphub.audit.log import Actor
from apphub.errors import Forbidden
from apphub.keys import hash_key
from apphub.web.sessions import COOKIE_NAME, Session, SessionStore

STATIC = Path(__file__).parent / "static"
ASSETS = STATIC / "assets"


def assets_version(folder: Path = ASSETS) -> str:
    """A digest of every file the page loads: the part of their URLs that changes when any does."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# The files are served under /assets/VERSION/ and cached for good (a script's relative imports
# stay under the same VERSION); only the page itself, which names VERSION, is asked for each time.
# Without it, every script of every page load costs a round trip to revalidate.
ASSETS_VERSION = assets_version()
ASSETS_PATH = f"/assets/{ASSETS_VERSION}"
PAGE = (STATIC / "index.html").read_text(encoding="utf-8").replace("/assets/", f"{ASSETS_PATH}/")
# The page runs only what it brought: no inline script, nothing from another origin, and it is
# never framed (clickjacking a rollback button).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}

router = APIRouter(tags=["console"])


class SignIn(BaseModel):
    key: str = Field(min_length=1, max_length=512, description="An API key (read, write or admin); it is not kept")


class SessionAnswer(BaseModel):
    name: str = Field(description="The key's name: the author of the console's changes")
    role: str
    csrf_token: str | None = Field(description="Send it back as the x-csrf-token header with every write")
    expires_at: str | None


class Assets(StaticFiles):
    """The console's files, with the page's headers, cached for good (their URL names their version)."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def sessions_of(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.sessions
    return sessions


def _answer(name: str, role: str, session: Session | None) -> dict[str, Any]:
    return {"name": name, "role": role, "csrf_token": session.csrf_token if session is not None else None,
            "expires_at": session.expires_at.isoformat() if session is not None else None}


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=PAGE_HEADERS)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml", headers=PAGE_HEADERS)


@router.post("/api/v1/session", summary="Sign in to the console: exchange a key for a session cookie",
             response_model=SessionAnswer,
             responses={400: problem_response("The body is not {\"key\": \"...\"}"),
                        401: UNAUTHENTICATED,
                        403: problem_response("A service's key cannot sign in to the console"), 500: SERVER_FAULT})
def sign_in(request: Request, body: Annotated[SignIn, Body()]) -> JSONResponse:
    core = core_of(request)
    principal = authenticate(core, body.key)
    if principal.service is not None:
        raise Forbidden(f"the key '{principal.name}' belongs to the service '{principal.service}': it cannot sign in "
                        "to the console")
    sessions = sessions_of(request)
    token, session = sessions.open(principal.name, hash_key(body.key), principal.role)
    core.audit.record(Actor(principal.name, "console", getattr(request.state, "request_id", None)), "session.opened",
                      message="signed in to the web console")
    response = JSONResponse(_answer(principal.name, principal.role, session))
    response.set_cookie(COOKIE_NAME, token, max_age=int(sessions.lifetime.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/api/v1/session", summary="Who is calling, and the session's CSRF token when it is the console",
            response_model=SessionAnswer, responses=COMMON_RESPONSES)
async def whoami(principal: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    return _answer(principal.name, principal.role, principal.session)


@router.delete("/api/v1/session", summary="Sign out: the session cookie stops working", status_code=204,
               responses=COMMON_RESPONSES)
async def sign_out(request: Request, principal: Annotated[Principal, Depends(require_read)]) -> Response:
    token = request.cookies.get(COOKIE_NAME)
    if principal.session is not None and token:
        await run_in_threadpool(sessions_of(request).close, token)
        await run_in_threadpool(core_of(request).audit.record, actor_of(request, principal), "session.closed",
                                message="signed out of the web console")
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
