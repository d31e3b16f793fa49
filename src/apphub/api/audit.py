"""`/api/v1/audit`: the audit log, newest first, filtered, paged with a cursor."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from apphub.api.auth import Principal, core_of, require_read
from apphub.api.models import AuditPage, ok
from apphub.api.problems import QUERY_RESPONSES, invalid_parameter
from apphub.audit.log import AuditQuery, normalise_time

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=QUERY_RESPONSES)

# Ids are SQLite INTEGERs: a larger cursor cannot be bound to the query (it was a 500, issue 8).
MAX_ID = 2**63 - 1


def _time(name: str, value: str | None) -> str | None:
    """`value` if it is an ISO 8601 time; a bad one is a request that cannot be read (400), not bad settings."""
    if value is None:
        return None
    try:
        normalise_time(value)
    except (ValueError, OverflowError) as exc:  # OverflowError: a zone that moves it past year 1 or 9999
        raise invalid_parameter("query", name, "datetime_parsing",
                                f"is not an ISO 8601 time of years 1 to 9999 (UTC): {exc}", value) from exc
    return value


@router.get("/audit", summary="The audit log, newest first", response_model=None, responses=ok(AuditPage))
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
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Cursor: entries with a smaller id "
                                                                     "(ids are at most 2**63-1)")] = None,
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
