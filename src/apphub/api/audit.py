"""`/api/v1/audit`: the audit log, newest first, filtered, paged with a cursor."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from apphub.api.auth import Principal, core_of, require_read
from apphub.api.problems import READ_RESPONSES
from apphub.audit.log import AuditQuery, normalise_time
from apphub.errors import FieldError, ValidationFailed

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=READ_RESPONSES)


def _time(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        normalise_time(value)
    except ValueError as exc:
        raise ValidationFailed([FieldError("query", name, "type", f"is not an ISO 8601 time: {exc}", value,
                                           file="request")]) from exc
    return value


@router.get("/audit", summary="The audit log, newest first")
async def read_audit(
    request: Request,
    principal: Annotated[Principal, Depends(require_read)],
    section: Annotated[str | None, Query(max_length=128)] = None,
    key: Annotated[str | None, Query(max_length=128)] = None,
    actor: Annotated[str | None, Query(max_length=64, description="A key's name, or cli")] = None,
    source: Annotated[str | None, Query(max_length=32, description="api, cli, file, init, ...")] = None,
    action: Annotated[str | None, Query(max_length=64, description="settings.update, secrets.reveal, ...")] = None,
    since: Annotated[str | None, Query(description="ISO 8601 time, inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 time, inclusive")] = None,
    before: Annotated[int | None, Query(ge=1, description="Cursor: entries with a smaller id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    query = AuditQuery(section=section, key=key, actor=actor, source=source, action=action,
                       since=_time("since", since), until=_time("until", until), before_id=before, limit=limit)
    events = await run_in_threadpool(core_of(request).audit.query, query)
    next_link = None
    if len(events) == limit:
        parameters = {name: value for name, value in request.query_params.items() if name != "before"}
        parameters["before"] = str(events[-1].id)
        next_link = f"{request.url.path}?{urlencode(parameters)}"
    return {"entries": [event.as_dict() for event in events], "next": next_link}
