"""Error responses: RFC 9457 problem details on the new routes, Websoft9's shape on the legacy ones.

Every error the API can produce goes through here, so a client of the new routes always gets
`application/problem+json` with a `title`, a `detail` that names the thing, and `errors` (one per
broken rule) where there are several; Websoft9's clients keep getting `{"message", "details"}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from apphub.errors import (
    AmbiguousVersion,
    ApphubError,
    AuthError,
    DataDirError,
    FieldError,
    Forbidden,
    HistoryError,
    IniParseError,
    KeyNotFound,
    LockTimeout,
    NotFound,
    SchemaError,
    SecretError,
    SectionNotFound,
    ServiceError,
    StorageFull,
    SyncError,
    Unauthenticated,
    ValidationFailed,
    VersionConflict,
    VersionNotFound,
)

logger = logging.getLogger("apphub.api")

PROBLEM_JSON = "application/problem+json"
LEGACY_PREFIX = "/api/settings"

# status, short title and problem type of each error class; the first match in the MRO wins
_PROBLEMS: dict[type[ApphubError], tuple[int, str, str]] = {
    ValidationFailed: (422, "Invalid settings", "validation-failed"),
    SectionNotFound: (404, "Section not found", "section-not-found"),
    KeyNotFound: (404, "Key not found", "key-not-found"),
    NotFound: (404, "Not found", "not-found"),
    VersionConflict: (412, "Version conflict", "version-conflict"),
    VersionNotFound: (404, "Version not found", "version-not-found"),
    AmbiguousVersion: (400, "Ambiguous version", "ambiguous-version"),
    HistoryError: (503, "History unavailable", "history-unavailable"),
    IniParseError: (409, "File does not parse", "file-does-not-parse"),
    Unauthenticated: (401, "Not authenticated", "unauthenticated"),
    Forbidden: (403, "Forbidden", "forbidden"),
    LockTimeout: (503, "Busy", "lock-timeout"),
    SecretError: (500, "Secret cannot be decrypted", "secret-error"),
    SchemaError: (500, "Invalid schema", "schema-error"),
    StorageFull: (507, "Insufficient storage", "storage-full"),
    DataDirError: (500, "Data folder error", "data-dir-error"),
    SyncError: (503, "Sync engine unavailable", "sync-unavailable"),
    ServiceError: (502, "Service error", "service-error"),
}


def is_legacy(request: Request) -> bool:
    path = request.url.path
    return path == LEGACY_PREFIX or path.startswith(LEGACY_PREFIX + "/")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:apphub:problem:{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors)
    if request_id is not None:
        body["request_id"] = request_id
    return Response(json.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def legacy_error(status: int, message: str, details: str, headers: dict[str, str] | None = None) -> Response:
    """Websoft9's ErrorResponse: {"message": ..., "details": ...}."""
    return JSONResponse({"message": message, "details": details}, status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _field_errors(errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    return [error.as_dict() for error in errors]


def apphub_error_response(request: Request, exc: ApphubError) -> Response:
    status, title, slug = next(
        (_PROBLEMS[cls] for cls in type(exc).__mro__ if cls in _PROBLEMS), (500, "Internal error", "internal")
    )
    headers = {"WWW-Authenticate": 'APIKey header="x-api-key"'} if isinstance(exc, Unauthenticated) else None
    if status >= 500:
        logger.error("request %s failed: %s", _request_id(request), exc)
    if is_legacy(request):
        return _legacy_response(exc, status, headers)
    errors = _field_errors(exc.errors) if isinstance(exc, ValidationFailed) else None
    detail = exc.public if isinstance(exc, IniParseError) else str(exc)
    if isinstance(exc, ValidationFailed):
        count = len(exc.errors)
        detail = f"{count} problem{'s' if count != 1 else ''} in the proposed settings: " + "; ".join(
            str(error) for error in exc.errors
        )
    return problem(status, title, detail, slug=slug, errors=errors, instance=request.url.path,
                   headers=headers, request_id=_request_id(request))


def _legacy_response(exc: ApphubError, status: int, headers: dict[str, str] | None) -> Response:
    # Websoft9 answers 400 "Invalid Request" for every client mistake, auth included (reference §1.2).
    if isinstance(exc, SectionNotFound):
        return legacy_error(400, "Invalid Request", f"Section:{exc.section} does not exist")
    if isinstance(exc, KeyNotFound):
        return legacy_error(400, "Invalid Request", f"Key:{exc.key} does not exist")
    if isinstance(exc, Unauthenticated):
        return legacy_error(400, "Invalid Request", str(exc), headers)
    if isinstance(exc, Forbidden):
        return legacy_error(403, "Forbidden", str(exc))
    if isinstance(exc, ValidationFailed):
        return legacy_error(400, "Invalid Request", "; ".join(str(error) for error in exc.errors))
    if isinstance(exc, StorageFull):  # Websoft9's clients know 400 and 500
        return legacy_error(500, "Internal Server Error", str(exc))
    if isinstance(exc, IniParseError):  # Websoft9's clients know 400 and 500; this is not their mistake
        return legacy_error(500, "Internal Server Error", exc.public)
    if isinstance(exc, AuthError | NotFound | VersionConflict):
        return legacy_error(400, "Invalid Request", str(exc))
    return legacy_error(status, "Internal Server Error" if status >= 500 else "Invalid Request", str(exc))


def request_validation_response(request: Request, exc: RequestValidationError) -> Response:
    """A request FastAPI could not read (malformed JSON, wrong shape, missing parameter): 400.

    Its `errors` are `RequestProblem`s (`field`, `message`, `rule`): a request has no file, section
    or line. The message is pydantic's, which states the rule and never quotes the value sent (it may
    be a password: Websoft9's PUT carries it in the query string).
    """
    errors = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        message = error.get("msg", "is invalid")
        if error.get("type") == "json_invalid":
            context = error.get("ctx") or {}
            message = f"malformed JSON: {context.get('error', message)}"
        errors.append({"field": location, "message": message, "rule": error.get("type", "invalid")})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "the request is invalid"
    if is_legacy(request):
        # Websoft9 joins "<name>: <message>" with ", ", naming the parameter without its location.
        names = [str(error["loc"][1]) if len(error.get("loc", ())) > 1 else "body" for error in exc.errors()]
        details = ", ".join(f"{name}: {error['message']}" for name, error in zip(names, errors, strict=True))
        return legacy_error(400, "Request Validation Error", details)
    return problem(400, "Invalid request", detail, slug="invalid-request", errors=errors,
                   instance=request.url.path, request_id=_request_id(request))


def invalid_parameter(location: str, name: str, rule: str, message: str, value: str) -> RequestValidationError:
    """The error of a parameter a route checks itself, answered like those FastAPI checks (400)."""
    return RequestValidationError([{"type": rule, "loc": (location, name), "msg": message, "input": value}])


def http_error_response(request: Request, exc: StarletteHTTPException) -> Response:
    detail = str(exc.detail) if exc.detail else "error"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        detail = f"{request.method} is not allowed on {request.url.path} (allowed: {', '.join(allowed)})"
    elif exc.status_code == 404 and _is_system_write(request):
        # system.ini is read-only over the API at every depth, not only where a GET route exists.
        return problem(405, _reason(405), f"{request.method} is not allowed on {request.url.path}: system.ini "
                       "is read-only over the API", instance=request.url.path, headers={"Allow": "GET"},
                       request_id=_request_id(request))
    elif exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}"
    if is_legacy(request):
        return legacy_error(exc.status_code, "Invalid Request", detail, headers)
    return problem(exc.status_code, _reason(exc.status_code), detail, instance=request.url.path,
                   headers=headers, request_id=_request_id(request))


def _is_system_write(request: Request) -> bool:
    path = request.url.path
    return request.method not in ("GET", "HEAD") and (path == "/api/v1/system" or path.startswith("/api/v1/system/"))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    # Asked method by method, through the public Route.matches, so that it holds for included routers too.
    return [method for method in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE")
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in request.app.routes)]


def unexpected_error_response(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log only; it never carries plaintext secrets (they are Secret objects).
    logger.exception("request %s failed unexpectedly", _request_id(request))
    if is_legacy(request):
        return legacy_error(500, "Internal Server Error", "Internal Server Error")
    return problem(500, "Internal error", "unexpected error; see the apphub log for request_id",
                   slug="internal", request_id=_request_id(request))


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_error_handlers(app: FastAPI) -> None:
    async def on_apphub_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApphubError)
        return apphub_error_response(request, exc)

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return request_validation_response(request, exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(request, exc)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_error_response(request, exc)

    app.add_exception_handler(ApphubError, on_apphub_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


# -- how the errors look in the OpenAPI document ------------------------------------------------


class FieldProblem(BaseModel):
    """One broken rule of a write."""

    file: str
    section: str
    key: str | None
    value: str | None = Field(description="The value sent, masked (********) when the key is secret")
    rule: str = Field(examples=["type", "required", "min_length", "unknown_key"])
    message: str
    line: int | None = Field(description="Line of the key in the file, when it is already there")
    severity: str = Field(default="error", description="error: refuses the write; warning: accepted, reported",
                          examples=["error", "warning"])


class RequestProblem(BaseModel):
    """One part of a request that cannot be read: a parameter, a header or the body."""

    field: str = Field(description="Where, as `location.name`", examples=["query.before", "header.if-match", "body"])
    message: str = Field(description="What is wrong; never the value sent")
    rule: str = Field(examples=["int_parsing", "less_than_equal", "missing", "json_invalid", "datetime_parsing"])


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(examples=["urn:apphub:problem:validation-failed"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | list[RequestProblem] | None = Field(
        default=None,
        description="Every problem at once: FieldProblems when the schema refuses a write "
                    "(urn:apphub:problem:validation-failed, 422), RequestProblems when the request cannot be read "
                    "(urn:apphub:problem:invalid-request, 400)")
    request_id: str | None = None


class Websoft9Error(BaseModel):
    """Websoft9's ErrorResponse."""

    message: str = Field(examples=["Invalid Request"])
    details: str = Field(examples=["Section:foo does not exist"])


ETAG_HEADER = {"ETag": {"description": "The version of the file, quoted", "required": True,
                        "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'}}}
NOT_MODIFIED: dict[str, Any] = {"description": "If-None-Match names the current version: no body",
                                "headers": ETAG_HEADER}


def problem_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented problem response: `application/problem+json` only (openapi.openapi_document drops the
    `application/json` twin FastAPI adds for the model)."""
    response: dict[str, Any] = {"model": Problem, "description": description,
                                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if headers:
        response["headers"] = headers
    return response


def legacy_response(description: str) -> dict[str, Any]:
    return {"model": Websoft9Error, "description": description}


UNAUTHENTICATED = problem_response(
    "No x-api-key, or one that is not known",
    {"WWW-Authenticate": {"description": 'APIKey header="x-api-key"', "required": True, "schema": {"type": "string"}}})
SERVER_FAULT = problem_response("The server cannot serve this: a secret that does not decrypt, a schema or data "
                                "folder it cannot use; the log has the request_id")
# Every route but /healthz: a key is checked before routing, and any route can meet a broken data folder.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {401: UNAUTHENTICATED, 500: SERVER_FAULT}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    304: NOT_MODIFIED,
    400: problem_response("The request cannot be read (a malformed parameter); `errors` names each"),
    403: problem_response("reveal=true needs an admin key"),
    409: problem_response("The file does not parse (a hand edit to fix)"),
    507: problem_response("reveal=true: the disk holding the audit log is full, so nothing was shown"),
}
SECTION_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    **READ_RESPONSES,
    404: problem_response("No such section"),
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    400: problem_response("The request cannot be read: malformed JSON, a body that is not an object, a malformed "
                          "parameter; `errors` names each"),
    403: problem_response("The key's role is too weak (write needed; admin for [api_key] key)"),
    404: problem_response("No such section or key (DELETE)"),
    409: problem_response("config.ini does not parse (a hand edit to fix)"),
    412: problem_response("If-Match names a version that is no longer the current one"),
    413: problem_response("The body is over 1 MiB"),
    422: problem_response("The schema refuses the values; `errors` lists every problem"),
    503: problem_response("Another writer held the file lock too long"),
    507: problem_response("The disk holding the data folder is full: the write was not made"),
}
QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    400: problem_response("A malformed parameter (a bound passed, a time that is not ISO 8601); `errors` names each"),
}
SYNC_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    503: problem_response("The sync engine is not running in this process"),
}
LEGACY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: legacy_response("Missing or invalid key, unknown section or key, invalid value"),
    403: legacy_response("The key's role is too weak"),
    500: legacy_response("config.ini does not parse, a secret does not decrypt, the disk is full"),
}
LEGACY_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **LEGACY_RESPONSES,
    413: legacy_response("The request body is over 1 MiB (the route takes none)"),
    503: legacy_response("Another writer held the file lock too long"),
}
