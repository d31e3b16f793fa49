"""`/api/v1/settings/history`, `/diff`, `/rollback`: the versions of config.ini, compared and brought back.

Every call takes a version as clients see it (the ETag) or a commit id, whole or an unambiguous
prefix. Secrets are masked everywhere: a changed secret shows as changed, never with a value.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from apphub.api.audit import MAX_ID, _time
from apphub.api.auth import Principal, core_of, findings_shown_to, require, require_read, require_write
from apphub.api.etags import parse_if_match
from apphub.api.problems import COMMON_RESPONSES, QUERY_RESPONSES, WRITE_RESPONSES, problem_response
from apphub.api.settings import IfMatch, actor_of, write_response
from apphub.api.sync import WAIT_DEFAULT_S, Wait, WaitTimeout, history_status, sync_after_write
from apphub.core import Core
from apphub.errors import FieldError, Forbidden
from apphub.history.index import HistoryQuery
from apphub.history.rollback import plan_rollback, rollback
from apphub.store.inistore import IniStore
from apphub.store.snapshot import Snapshot

UNAVAILABLE = problem_response("The history repository cannot be read or written (see /api/v1/history/status)")
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {**QUERY_RESPONSES, 503: UNAVAILABLE}
VERSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **QUERY_RESPONSES,
    400: problem_response("A malformed parameter, or a prefix that matches more than one version"),
    404: problem_response("No version of the history matches"),
    409: problem_response("That version does not parse under today's schema"),
    503: UNAVAILABLE,
}
PLAN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **VERSION_RESPONSES, 413: WRITE_RESPONSES[413], 422: problem_response("The body is not {\"version\": ...}")}
ROLLBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    **WRITE_RESPONSES,
    400: VERSION_RESPONSES[400],
    403: problem_response("The key's role is too weak (write needed; admin to force)"),
    404: VERSION_RESPONSES[404],
    422: problem_response("That version no longer validates against today's schema; `errors` lists every problem"),
    503: problem_response("Another writer held the file lock too long, or the history cannot be read"),
}

router = APIRouter(prefix="/api/v1", tags=["history"])

Version = Annotated[str, Path(description="A config.ini version (ETag) or a commit id, or an unambiguous prefix "
                                          "of either (4 characters at least)", max_length=64)]
require_admin = require("admin")


RollbackFile = Literal["config.ini", "env.ini"]  # system.ini and services.yaml: the CLI's, an admin's


class RollbackRequest(BaseModel):
    version: str = Field(max_length=64, description="The version (ETag) or commit id to bring back, or a prefix")
    message: str | None = Field(None, max_length=1000, description="Why; the history's commit message")
    force: bool = Field(False, description="Write it even if it no longer validates against today's schema "
                                           "(admin keys only); secrets that cannot be decrypted refuse it anyway")
    file: RollbackFile = Field("config.ini", description="config.ini, or env.ini (the environment variables)")


class PlanRequest(BaseModel):
    version: str = Field(max_length=64, description="The version (ETag) or commit id a rollback would bring back")
    file: RollbackFile = Field("config.ini", description="config.ini, or env.ini (the environment variables)")


def _store(core: Core, file: str) -> IniStore:
    return core.env.store if file == "env.ini" else core.config


@router.get("/settings/history", summary="The versions of config.ini and system files, newest first",
            responses=LIST_RESPONSES)
def read_history(
    request: Request,
    _: Annotated[Principal, Depends(require_read)],
    section: Annotated[str | None, Query(max_length=128, description="Versions that changed this section")] = None,
    key: Annotated[str | None, Query(max_length=128, description="Versions that changed this key")] = None,
    author: Annotated[str | None, Query(max_length=64, description="A key's name, cli, file, init")] = None,
    source: Annotated[str | None, Query(max_length=32, description="api, cli, file, rollback, init, ...")] = None,
    file: Annotated[str | None, Query(max_length=128, description="config.ini, system.ini, services.yaml...")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 time, inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 time, inclusive")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID, description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    query = HistoryQuery(section=section, key=key, author=author, source=source, file=file,
                         since=_time("since", since), until=_time("until", until), before=cursor, limit=limit)
    entries, next_cursor = core_of(request).history.page(query)
    next_link = None
    if next_cursor is not None:
        parameters = {name: value for name, value in request.query_params.items() if name != "cursor"}
        next_link = f"{request.url.path}?{urlencode({**parameters, 'cursor': str(next_cursor)})}"
    return {"entries": [entry.as_dict() for entry in entries], "next_cursor": next_cursor, "next": next_link}


@router.get("/settings/history/{version}", summary="One version: its settings (secrets masked) and what it changed",
            responses=VERSION_RESPONSES)
def read_version(version: Version, request: Request,
                 _: Annotated[Principal, Depends(require_read)]) -> Response:
    history = core_of(request).history
    entry = history.resolve(version, with_changes=True)
    snapshot: Snapshot = history.snapshot(entry)
    body = entry.as_dict() | {"settings": snapshot.public}
    return Response(json.dumps(body), media_type="application/json")


@router.get("/settings/diff", summary="What changed between two versions, per key and as a unified diff",
            responses=VERSION_RESPONSES)
def read_diff(
    request: Request,
    _: Annotated[Principal, Depends(require_read)],
    old: Annotated[str, Query(alias="from", max_length=64, description="A version or commit id (or prefix)")],
    new: Annotated[str | None, Query(alias="to", max_length=64,
                                     description="A version or commit id; none: the current version")] = None,
    file: Annotated[str, Query(pattern="^(config|system|env)\\.ini$")] = "config.ini",
    services: Annotated[bool, Query(description="config.ini only: also what going from `from` to `to` does to "
                                                "each service (both rendered and compared, and the action)")] = False,
) -> dict[str, Any]:
    core = core_of(request)
    found = core.history.diff(old, new, file).as_dict()
    engine = getattr(request.app.state, "engine", None)
    if services and file == "config.ini" and engine is not None:
        before = core.history.snapshot(core.history.resolve(old))
        after = core.history.snapshot(core.history.resolve(new)) if new else core.config.snapshot()
        found["services"] = engine.compare(before, after).to_dict()
    return found


@router.post("/settings/rollback/plan", summary="What a rollback would do, touching nothing",
             responses=PLAN_RESPONSES)
def plan(request: Request, principal: Annotated[Principal, Depends(require_read)],
         body: Annotated[PlanRequest, Body()]) -> dict[str, Any]:
    core = core_of(request)
    engine = getattr(request.app.state, "engine", None)
    planner: Callable[[Snapshot], dict[str, Any]] | None = None
    if engine is not None and body.file == "env.ini":
        planner = lambda snapshot: engine.plan(core.config.snapshot(), snapshot).to_dict()  # noqa: E731
    elif engine is not None:
        planner = lambda snapshot: engine.plan(snapshot).to_dict()  # noqa: E731
    store = _store(core, body.file)
    found = plan_rollback(core.history, store, body.version, planner)

    def is_secret(finding: FieldError) -> bool:
        return store.schema.is_secret(finding.section, finding.key or "")

    return dataclasses.replace(found, problems=findings_shown_to(principal, found.problems, is_secret),
                               warnings=findings_shown_to(principal, found.warnings, is_secret)).as_dict()


@router.post("/settings/rollback", summary="Bring a version back as a new version", responses=ROLLBACK_RESPONSES)
def roll_back(request: Request, principal: Annotated[Principal, Depends(require_write)],
              body: Annotated[RollbackRequest, Body()], if_match: IfMatch = None, wait: Wait = False,
              wait_timeout: WaitTimeout = WAIT_DEFAULT_S) -> Response:
    if body.force and principal.role != "admin":
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; forcing a rollback to a "
                        "version that no longer validates needs 'admin'")
    core = core_of(request)
    result, target = rollback(core.history, _store(core, body.file), body.version, actor_of(request, principal),
                              force=body.force, message=body.message, if_match=parse_if_match(if_match))
    response = write_response(result, result.snapshot.sections(),
                              sync_after_write(request, result.changed, wait, wait_timeout))
    extra: dict[str, Any] = {"rolled_back_to": {"commit": target.commit, "version": target.config_version,
                                                "at": target.at}}
    if not result.changed:
        extra["detail"] = f"{body.file} is at that version already: nothing changed"
    return _merged(response, extra)


@router.get("/history/status", summary="The history: commits, versions waiting, the push to the remote",
            responses=COMMON_RESPONSES)
async def status(request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    return await run_in_threadpool(history_status, request)


def _merged(response: Response, extra: dict[str, Any]) -> Response:
    body = json.loads(bytes(response.body)) | extra
    return Response(json.dumps(body), media_type="application/json", headers={"ETag": response.headers["ETag"]})
