"""`/api/v1/environments`: the overlays of config.ini (environments/overlays.py), their
differences, and keys promoted from one to another. Which environment runs is system.ini's
(read-only here, as system.ini is): `apphub environments use NAME`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response

from apphub.api.auth import Principal, check_may_change, core_of, require_read, require_write
from apphub.api.etags import parse_if_match
from apphub.api.models import WriteAnswer, ok
from apphub.api.problems import COMMON_RESPONSES, WRITE_RESPONSES, problem_response
from apphub.api.settings import IfMatch, Message, SettingsBody, actor_of, write_response
from apphub.api.sync import WAIT_DEFAULT_S, Wait, WaitTimeout, sync_after_write
from apphub.environments.compare import diff, promote
from apphub.environments.overlays import BASE, file_name
from apphub.errors import FieldError, ValidationFailed
from apphub.store.inistore import WriteResult
from apphub.store.schema import parse_reference

router = APIRouter(prefix="/api/v1/environments", tags=["environments"])


class EnvironmentConvertor(StringConvertor):
    """An environment's name in a path, but not `diff` nor `promote`: those paths belong to their
    routes for every method (else `GET /environments/promote` read an environment, and the 405 of
    another method there listed GET as allowed)."""

    regex = "(?!(?:diff|promote)(?:/|$))[^/]+"


register_url_convertor("apphub_environment", EnvironmentConvertor())

Name = Annotated[str, Path(description="An environment's name", examples=["prod"])]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such environment (or section, key)"),
    422: problem_response("Not an environment's name (1-32 lower-case letters, digits, '_' or '-'), or a value "
                          "refused; `errors` lists every problem"),
}
WRITE = {**ok(WriteAnswer), **WRITE_RESPONSES, **NOT_FOUND}


class Promotion(BaseModel):
    source: str = Field(alias="from", description="The environment to copy from (`base`: config.ini)")
    target: str = Field(alias="to", description="The environment to write (`base`: config.ini)")
    keys: list[str] | None = Field(default=None, description="`section.key`s to copy; none: every key that differs",
                                   examples=[["gitea.base_url"]])


@router.get("", summary="The environments, and which one runs", responses={**COMMON_RESPONSES})
def list_environments(request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    environments = core_of(request).environments
    listed = []
    for name in environments.names():
        overlay = environments.store(name).snapshot()
        keys = sum(len(overlay.document.items(section)) for section in overlay.sections())
        listed.append({"name": name, "file": file_name(name), "keys": keys, "version": overlay.version})
    return {"active": environments.active(), "environments": listed}


@router.get("/diff", summary="Where two environments' effective settings differ (secrets: only whether)",
            responses={**COMMON_RESPONSES, **NOT_FOUND, 400: problem_response("a or b is missing")})
def environments_diff(request: Request, _: Annotated[Principal, Depends(require_read)],
                      a: Annotated[str, Query(description="An environment (`base`: config.ini alone)")],
                      b: Annotated[str, Query(description="Another")]) -> dict[str, Any]:
    differences = diff(core_of(request).environments, a, b)
    return {"a": a, "b": b, "differences": [difference.as_dict() for difference in differences]}


@router.post("/promote", summary="Copy keys from one environment into another: one validated, audited write",
             responses=WRITE)
def environments_promote(request: Request, principal: Annotated[Principal, Depends(require_write)],
                         body: Annotated[Promotion, Body()], wait: Wait = False,
                         wait_timeout: WaitTimeout = WAIT_DEFAULT_S, message: Message = None) -> Response:
    core = core_of(request)
    if body.keys is not None:
        keys = [_key(text) for text in body.keys]
    else:
        keys = [(d.section, d.key) for d in diff(core.environments, body.source, body.target, new_b=True)]
    sections: dict[str, list[str]] = {}
    for section, key in keys:
        sections.setdefault(section, []).append(key)
    check_may_change(principal, sections)
    result = promote(core.environments, body.source, body.target, keys, actor_of(request, principal), message=message)
    return _answer(request, body.target, result, wait, wait_timeout)


@router.get("/{name:apphub_environment}", summary="An environment's overlay: only what differs from config.ini",
            responses={**COMMON_RESPONSES, **NOT_FOUND})
def read_environment(name: Name, request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    snapshot = core_of(request).environments.store(name).snapshot()
    return {"name": name, "file": snapshot.name, "version": snapshot.version, "settings": snapshot.public}


@router.put("/{name:apphub_environment}/{section}",
            summary="Set keys in an environment's overlay (made on first write)", responses=WRITE)
def update_environment(name: Name, section: str, body: SettingsBody, request: Request,
                       principal: Annotated[Principal, Depends(require_write)], if_match: IfMatch = None,
                       wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S,
                       message: Message = None) -> Response:
    check_may_change(principal, {section: body})
    result = core_of(request).environments.update(name, {section: body}, actor_of(request, principal),
                                                  if_match=parse_if_match(if_match), message=message)
    return _answer(request, name, result, wait, wait_timeout, [section])


@router.delete("/{name:apphub_environment}/{section}/{key}",
               summary="Drop a key from an overlay: config.ini's value applies again", responses=WRITE)
def delete_environment_key(name: Name, section: str, key: str, request: Request,
                           principal: Annotated[Principal, Depends(require_write)], if_match: IfMatch = None,
                           wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S,
                           message: Message = None) -> Response:
    check_may_change(principal, {section: [key]})
    store = core_of(request).environments.store(name)
    result = store.update({}, actor_of(request, principal), deletes=[(section, key)],
                          if_match=parse_if_match(if_match), action="environments.delete", message=message)
    return _answer(request, name, result, wait, wait_timeout, [section])


def _key(text: str) -> tuple[str, str]:
    found = parse_reference(text)
    if found is None:
        raise ValidationFailed([FieldError("environments", None, "promote", f"{text!r} does not name a key as "
                                           "section.key", file="environments")])
    return found


def _answer(request: Request, name: str, result: WriteResult, wait: bool, wait_timeout: float,
            sections: list[str] | None = None) -> Response:
    """The write's answer; the services are synced when what they get changed (the active
    environment's overlay, or config.ini)."""
    environments = core_of(request).environments
    affects = name == BASE or name == environments.active()
    sync = sync_after_write(request, result.changed and affects, wait, wait_timeout)
    return write_response(result, sections if sections is not None else result.snapshot.sections(), sync)
