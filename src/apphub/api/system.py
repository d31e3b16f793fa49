"""`/api/v1/system`: `system.ini`, read-only over the API (only GET routes exist, so writes get 405)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from apphub.api.auth import Principal, core_of, require_read
from apphub.api.problems import READ_RESPONSES
from apphub.api.settings import Reveal, read_response, reveal_payload

router = APIRouter(prefix="/api/v1", tags=["system"], responses=READ_RESPONSES)


@router.get("/system", summary="All sections of system.ini")
async def read_system(request: Request, principal: Annotated[Principal, Depends(require_read)],
                      reveal: Reveal = False) -> Response:
    store = core_of(request).system
    snapshot = store.snapshot()
    if reveal:
        return read_response(request, snapshot,
                             await reveal_payload(request, principal, store, snapshot, snapshot.sections()))
    return read_response(request, snapshot)


@router.get("/system/{section}", summary="One section of system.ini")
async def read_system_section(section: str, request: Request, principal: Annotated[Principal, Depends(require_read)],
                              reveal: Reveal = False) -> Response:
    store = core_of(request).system
    snapshot = store.snapshot()
    values = snapshot.public_section(section)
    if reveal:
        payload = await reveal_payload(request, principal, store, snapshot, [section])
        values = payload["settings"][section]
    return read_response(request, snapshot, {"version": snapshot.version, "section": section, "settings": values})
