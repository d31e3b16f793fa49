"""`/api/v1/system`: `system.ini`, read-only over the API (only GET routes exist, so writes get 405)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from apphub.api.auth import Principal, core_of, require_read
from apphub.api.settings import FILE_READ, SECTION_READ, IfNoneMatch, Reveal, read_file, read_file_section

router = APIRouter(prefix="/api/v1", tags=["system"])
SystemSection = Annotated[str, Path(description="A section of system.ini", examples=["docker_library"])]


@router.get("/system", summary="All sections of system.ini", responses=FILE_READ)
async def read_system(request: Request, principal: Annotated[Principal, Depends(require_read)],
                      reveal: Reveal = False, if_none_match: IfNoneMatch = None) -> Response:
    return await read_file(request, principal, core_of(request).system, reveal, if_none_match)


@router.get("/system/{section}", summary="One section of system.ini", responses=SECTION_READ)
async def read_system_section(section: SystemSection, request: Request,
                              principal: Annotated[Principal, Depends(require_read)], reveal: Reveal = False,
                              if_none_match: IfNoneMatch = None) -> Response:
    return await read_file_section(request, principal, core_of(request).system, section, reveal, if_none_match)
