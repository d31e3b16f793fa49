"""`/api/v1/settings`: read and change `config.ini`, validated, versioned, audited."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response

from apphub.api.auth import Principal, check_may_change, core_of, require_read, require_write
from apphub.api.etags import etag, is_not_modified, parse_if_match
from apphub.api.models import SectionRead, SettingsRead, WriteAnswer, ok
from apphub.api.problems import ETAG_HEADER, READ_RESPONSES, SECTION_READ_RESPONSES, WRITE_RESPONSES
from apphub.api.sync import WAIT_DEFAULT_S, Wait, WaitTimeout, sync_after_write
from apphub.audit.log import Actor
from apphub.errors import Forbidden
from apphub.store.inistore import IniStore, WriteResult
from apphub.store.snapshot import Snapshot

router = APIRouter(prefix="/api/v1", tags=["settings"])

JSON = "application/json"
SettingsBody = Annotated[
    dict[str, Any],
    Body(description="Keys and their new values; a secret sent back as ******** keeps its value",
         examples=[{"user_name": "websoft9", "user_email": "ops@example.com"}]),
]
BatchBody = Annotated[
    dict[str, dict[str, Any]],
    Body(description="Sections, each with keys and their new values; applied all or nothing",
         examples=[{"gitea": {"user_email": "ops@example.com"}, "cockpit": {"port": 9091}}]),
]
IfMatch = Annotated[str | None, Header(description="Apply only if config.ini is still at this version (ETag)")]
IfNoneMatch = Annotated[str | None, Header(description="Answer 304 with no body if the file is still at this "
                                                       "version (ETag), or at any with *")]
Message = Annotated[str | None, Query(max_length=1000, description="Why: kept in the audit log and as the "
                                                                  "history's commit message")]
Reveal = Annotated[bool, Query(description="Show secrets in plaintext (admin keys only; audited)")]
Section = Annotated[str, Path(description="A section of config.ini (not plan, reload, history, diff, rollback, "
                                          "validate: "
                                          "those are routes)",
                              examples=["gitea"])]


class SectionConvertor(StringConvertor):
    """A section name in a path, but not `plan`, `reload` (POST routes of api/sync.py), `history`,
    `diff`, `rollback` (api/history.py) nor `validate` (api/rules.py): those paths belong to their
    routes for every method.
    Else `GET /api/v1/settings/plan` read a section named `plan`, and the 405 of `DELETE` there
    listed the GET and PUT of the section routes as allowed (issue 8).
    """

    regex = "(?!(?:plan|reload|history|diff|rollback|validate)(?:/|$))[^/]+"


register_url_convertor("apphub_section", SectionConvertor())
SECTION_PATH = "/settings/{section:apphub_section}"
FILE_READ = {**ok(SettingsRead, ETAG_HEADER), **READ_RESPONSES}
SECTION_READ = {**ok(SectionRead, ETAG_HEADER), **SECTION_READ_RESPONSES}
WRITE = {**ok(WriteAnswer, ETAG_HEADER), **WRITE_RESPONSES}


def actor_of(request: Request, principal: Principal) -> Actor:
    """Who makes the change, and through what: `console` for the web console, `api` otherwise."""
    source = "console" if principal.session is not None else "api"
    return Actor(principal.name, source, getattr(request.state, "request_id", None))


def read_response(snapshot: Snapshot, if_none_match: str | None, payload: dict[str, Any] | None = None,
                  *, revealed: bool = False) -> Response:
    # Revealed secrets must not rest in a browser's cache after the page is closed.
    headers = {"ETag": etag(snapshot.version), "Cache-Control": "no-store" if revealed else "no-cache"}
    if is_not_modified(if_none_match, snapshot.version):
        return Response(status_code=304, headers=headers)
    content = snapshot.public_json if payload is None else json.dumps(payload).encode()
    return Response(content, media_type=JSON, headers=headers)


def write_response(result: WriteResult, sections: Iterable[str], sync: dict[str, Any] | None = None) -> Response:
    snapshot = result.snapshot
    body: dict[str, Any] = {
        "version": snapshot.version,
        "previous_version": result.previous_version,
        "changed": [change.__dict__ for change in result.changes],
        "settings": {section: snapshot.public_section(section) for section in dict.fromkeys(sections)
                     if snapshot.document.has_section(section)},
        "warnings": [warning.as_dict() for warning in result.warnings],
    }
    if sync is not None:
        body["sync"] = sync
    return Response(json.dumps(body), media_type=JSON, headers={"ETag": etag(snapshot.version)})


async def reveal_payload(request: Request, principal: Principal, store: IniStore, snapshot: Snapshot,
                         sections: list[str]) -> dict[str, Any]:
    """The plaintext view for an admin, recorded in the audit log (which keys, never the values)."""
    if principal.role != "admin":
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; revealing secrets needs 'admin'")
    settings = {section: snapshot.public_section(section, reveal=True) for section in sections}
    shown = [(section, key) for section, key in snapshot.secret_keys() if section in sections]
    await run_in_threadpool(core_of(request).audit.record_reveal, actor_of(request, principal), store.name,
                            snapshot.version, shown)
    return {"version": snapshot.version, "settings": settings}


async def read_file(request: Request, principal: Principal, store: IniStore, reveal: bool,
                    if_none_match: str | None) -> Response:
    """Every section of one INI file (config.ini here, system.ini in the system router)."""
    snapshot = store.snapshot()
    if reveal:
        return read_response(snapshot, if_none_match,
                             await reveal_payload(request, principal, store, snapshot, snapshot.sections()),
                             revealed=True)
    return read_response(snapshot, if_none_match)


async def read_file_section(request: Request, principal: Principal, store: IniStore, section: str,
                            reveal: bool, if_none_match: str | None) -> Response:
    snapshot = store.snapshot()
    values = snapshot.public_section(section)  # raises SectionNotFound first, whatever the role
    if reveal:
        values = (await reveal_payload(request, principal, store, snapshot, [section]))["settings"][section]
    return read_response(snapshot, if_none_match,
                         {"version": snapshot.version, "section": section, "settings": values}, revealed=reveal)


@router.get("/settings", summary="All sections of config.ini", response_description="Secrets masked",
            responses=FILE_READ)
async def read_settings(request: Request, principal: Annotated[Principal, Depends(require_read)],
                        reveal: Reveal = False, if_none_match: IfNoneMatch = None) -> Response:
    return await read_file(request, principal, core_of(request).config, reveal, if_none_match)


@router.get(SECTION_PATH, summary="One section of config.ini", responses=SECTION_READ)
async def read_section(section: Section, request: Request, principal: Annotated[Principal, Depends(require_read)],
                       reveal: Reveal = False, if_none_match: IfNoneMatch = None) -> Response:
    return await read_file_section(request, principal, core_of(request).config, section, reveal, if_none_match)


@router.put(SECTION_PATH, summary="Merge keys into one section", responses=WRITE)
def update_section(section: Section, body: SettingsBody, request: Request,
                   principal: Annotated[Principal, Depends(require_write)], if_match: IfMatch = None,
                   wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S, message: Message = None) -> Response:
    check_may_change(principal, {section: body})
    result = core_of(request).config.update({section: body}, actor_of(request, principal),
                                            if_match=parse_if_match(if_match), message=message)
    return write_response(result, [section], sync_after_write(request, result.changed, wait, wait_timeout))


@router.put("/settings", summary="Change several sections at once, all or nothing",
            responses=WRITE)
def update_settings(body: BatchBody, request: Request, principal: Annotated[Principal, Depends(require_write)],
                    if_match: IfMatch = None, wait: Wait = False,
                    wait_timeout: WaitTimeout = WAIT_DEFAULT_S, message: Message = None) -> Response:
    check_may_change(principal, body)
    result = core_of(request).config.update(body, actor_of(request, principal), if_match=parse_if_match(if_match),
                                            message=message)
    return write_response(result, body, sync_after_write(request, result.changed, wait, wait_timeout))


@router.delete(SECTION_PATH + "/{key}", summary="Remove a key the schema does not require",
               responses=WRITE)
def delete_key(section: str, key: str, request: Request, principal: Annotated[Principal, Depends(require_write)],
               if_match: IfMatch = None, wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S,
               message: Message = None) -> Response:
    check_may_change(principal, {section: [key]})
    result = core_of(request).config.update({}, actor_of(request, principal), deletes=[(section, key)],
                                            if_match=parse_if_match(if_match), action="settings.delete",
                                            message=message)
    return write_response(result, [section], sync_after_write(request, result.changed, wait, wait_timeout))
