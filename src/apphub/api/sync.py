"""The sync engine over HTTP: plan a change, sync now, status (and its live stream), Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from apphub.api.auth import (
    Principal,
    check_may_compare_secrets,
    core_of,
    require_read,
    require_write,
    still_authenticated,
)
from apphub.api.problems import SYNC_RESPONSES, WRITE_RESPONSES, problem_response
from apphub.errors import SyncError
from apphub.sync.apply import ApplyReport
from apphub.sync.engine import SyncEngine
from apphub.sync.status import StatusBoard

router = APIRouter(tags=["sync"], responses=SYNC_RESPONSES)

PLAN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{status: WRITE_RESPONSES[status] for status in (400, 409, 413, 422)},
    403: problem_response("A proposal with secret values needs an admin key (the plan would say whether a guess "
                          "equals the stored secret)")}
RELOAD_RESPONSES: dict[int | str, dict[str, Any]] = {status: WRITE_RESPONSES[status] for status in (400, 403)}
# The text format prometheus_client writes (generate_latest) and sends when a scraper asks for no other.
PROMETHEUS_TEXT = "text/plain; version=0.0.4"

WAIT_DEFAULT_S = 60.0
Wait = Annotated[bool, Query(description="Wait until the change reached the services; the response says "
                                         "what happened to each")]
WaitTimeout = Annotated[float, Query(gt=0, le=600, description="Seconds to wait at most")]


def engine_of(request: Request) -> SyncEngine:
    engine: SyncEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise SyncError("the sync engine is not running in this process")
    return engine


def report_dict(report: ApplyReport | None, timeout: float) -> dict[str, Any]:
    if report is None:
        return {"done": False, "detail": f"the sync did not finish within {timeout:g} s; see /api/v1/sync/status"}
    return {
        "done": True,
        "version": report.version,
        "ok": report.ok,
        "refused": report.refused,
        "services": [outcome.to_dict() for outcome in report.outcomes.values()],
    }


def sync_after_write(request: Request, changed: bool, wait: bool, timeout: float) -> dict[str, Any] | None:
    """Start a sync of what a write just changed (no debounce); with `wait`, block for its report.

    Called from the (threadpool) write routes. The watcher would see the write too; asking now
    saves its debounce, and the engine recognises the version so it is not processed twice.
    """
    engine: SyncEngine | None = getattr(request.app.state, "engine", None)
    if engine is None or not changed:
        return {"done": True, "detail": "nothing changed"} if wait and engine is not None else None
    ticket = engine.request(immediate=True)
    return report_dict(engine.wait(ticket, timeout), timeout) if wait else None


@router.post("/api/v1/settings/plan", summary="What a change would do to each service, touching nothing",
             responses=PLAN_RESPONSES)
def plan(request: Request, principal: Annotated[Principal, Depends(require_read)],
         body: Annotated[dict[str, dict[str, Any]] | None, Body(description="Proposed {section: {key: value}}; "
                                                                "none: what a full sync would do now")] = None,
         ) -> dict[str, Any]:
    core = core_of(request)
    check_may_compare_secrets(principal, core.config.schema.is_secret,
                              {section: list(keys) for section, keys in (body or {}).items() if isinstance(keys, dict)},
                              "planning")
    snapshot = core.config.preview(body) if body else core.config.snapshot()
    return engine_of(request).plan(snapshot).to_dict()


@router.post("/api/v1/settings/reload", summary="Sync every service now, and wait for the result",
             responses=RELOAD_RESPONSES)
async def reload(request: Request, _: Annotated[Principal, Depends(require_write)],
                 timeout: WaitTimeout = WAIT_DEFAULT_S) -> dict[str, Any]:
    engine = engine_of(request)
    ticket = engine.request(immediate=True, full=True, explicit=True)
    return report_dict(await run_in_threadpool(engine.wait, ticket, timeout), timeout)


@router.get("/api/v1/sync/status", summary="Per service: wanted and applied version, last result, timings; "
                                         "the history and its push")
async def status(request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    body = engine_of(request).status_dict()
    body["history"] = await run_in_threadpool(history_status, request)
    return body


# The status is also compared this often, for what the engine changes without telling (a
# drift found in place); what it tells (applying, applied, failed) goes out at once.
STREAM_CHECK_S = 2.0
PING_S = 15


async def status_events(board: StatusBoard, allowed: Callable[[], Awaitable[bool]]) -> AsyncIterator[dict[str, str]]:
    """A `status` event with the engine's status now, then one after every change of it, for as
    long as the caller is `allowed` (asked before each event and every STREAM_CHECK_S: a session
    that ended or a key revoked ends the stream)."""
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def tell() -> None:  # in the sync thread: hand the news to this loop, never block
        with contextlib.suppress(RuntimeError):  # the loop is closed: the stream is over
            loop.call_soon_threadsafe(changed.set)

    unsubscribe = board.subscribe(tell)
    try:
        sent = None
        while await allowed():
            changed.clear()
            body = json.dumps(board.snapshot())
            if body != sent:
                yield {"event": "status", "data": body}
                sent = body
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), STREAM_CHECK_S)
    finally:
        unsubscribe()


@router.get("/api/v1/sync/events", summary="The status as server-sent events: `status` now, then after every change",
            response_class=Response,
            responses={200: {"description": "text/event-stream: `event: status`, `data:` the body of "
                                            "GET /api/v1/sync/status without `history`",
                             "content": {"text/event-stream": {}}}})
async def events(request: Request, _: Annotated[Principal, Depends(require_read)],
                 csrf_token: Annotated[str | None, Query(description="The console's session token (EventSource "
                                                                     "sends no header); a key header needs none")]
                 = None) -> EventSourceResponse:
    async def allowed() -> bool:
        return await run_in_threadpool(still_authenticated, request)

    return EventSourceResponse(status_events(engine_of(request).status, allowed), ping=PING_S,
                               headers={"Cache-Control": "no-store"})


def history_status(request: Request) -> dict[str, Any]:
    """The history's commits and versions waiting, and the state of its push to the remote."""
    found = core_of(request).history.status()
    pusher = getattr(request.app.state, "pusher", None)
    found["push"] = pusher.status() if pusher is not None else {"configured": False, "state": "idle"}
    return found


@router.get("/metrics", summary="Prometheus metrics of the sync engine", response_class=Response,
            responses={200: {"description": "Prometheus text exposition format 0.0.4",
                             "content": {PROMETHEUS_TEXT: {}}}})
async def metrics(request: Request, _: Annotated[Principal, Depends(require_read)]) -> Response:
    return Response(generate_latest(engine_of(request).status.metrics.registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
