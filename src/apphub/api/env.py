"""`/api/v1/env`: the environment variables of every service, with where each value comes from;
the independent ones (env.ini) can be set and unset, the mapped ones (services.yaml's `env:`)
only through their config.ini key."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response

from apphub.api.auth import Principal, core_of, require_read, require_write
from apphub.api.etags import etag, is_not_modified, parse_if_match
from apphub.api.models import KeyChange, SyncReport, ok, version_field
from apphub.api.problems import ETAG_HEADER, READ_RESPONSES, SECTION_READ_RESPONSES, SYNC_RESPONSES, WRITE_RESPONSES
from apphub.api.settings import JSON, IfMatch, IfNoneMatch, Message, Reveal, actor_of
from apphub.api.sync import PLAN_RESPONSES, WAIT_DEFAULT_S, Wait, WaitTimeout, engine_of, sync_after_write
from apphub.envvars.store import FILE, EnvValue
from apphub.errors import Forbidden
from apphub.store.inistore import WriteResult

router = APIRouter(prefix="/api/v1", tags=["env"])


class NameConvertor(StringConvertor):
    """A variable's name in a path, but not `plan`: `/env/{scope}/plan` is the plan's route for
    every method (a PUT there is 405, not a variable named `plan`)."""

    regex = "(?!plan(?:/|$))[^/]+"


register_url_convertor("apphub_env_name", NameConvertor())
NAME_PATH = "/env/{scope}/{name:apphub_env_name}"

NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]{0,254}$"
SCOPE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Scope = Annotated[str, Path(description="`global`, or a service of services.yaml that takes an environment",
                            pattern=SCOPE_PATTERN, examples=["global"])]
Name = Annotated[str, Path(description="An environment variable name", pattern=NAME_PATTERN,
                           examples=["TZ"])]


class EnvVariable(BaseModel):
    """One variable and where its value comes from."""

    name: str
    value: str = Field(description="******** for a secret unless revealed")
    kind: Literal["independent", "mapped"]
    source: str = Field(description="`env.ini [scope]`, or the mapped text of services.yaml (`${gitea.base_url}`)")
    secret: bool
    keys: list[str] | None = Field(default=None, description="mapped: the config.ini keys it is made of")
    overrides: list[str] | None = Field(default=None, description="the sources of values it hides")


class EnvScope(BaseModel):
    service: bool | None = Field(description="true: a service's whole environment (global, its own, mapped); "
                                             "false: an env.ini section no service takes; null: global")
    variables: list[EnvVariable]
    errors: list[str] | None = Field(default=None, description="mapped variables that cannot be resolved")
    note: str | None = None


class EnvRead(BaseModel):
    version: str = version_field("env.ini's version: what If-Match takes on a write")
    scopes: dict[str, EnvScope]
    manifest_error: str | None = None


class EnvScopeRead(EnvScope):
    version: str = version_field("env.ini's version: what If-Match takes on a write")
    scope: str


class EnvSet(BaseModel):
    """A value to set; a secret is stored encrypted and never shown."""

    model_config = ConfigDict(extra="forbid", strict=True)

    value: str = Field(description="Any text but NUL (at most 4096 characters as env.ini stores it); "
                                   "******** keeps a secret's value")
    secret: bool = False


class EnvWriteAnswer(BaseModel):
    version: str = version_field("env.ini's new version")
    previous_version: str = version_field("The version the write replaced")
    changed: list[KeyChange]
    scope: EnvScopeRead
    sync: SyncReport | None = Field(default=None, description="Only with wait=true")


BatchBody = Annotated[
    dict[str, str | EnvSet],
    Body(description="NAME: value, or NAME: {value, secret}; all or nothing",
         examples=[{"TZ": "Europe/Berlin", "SMTP_PASSWORD": {"value": "s3cr3t", "secret": True}}]),
]
OneBody = Annotated[EnvSet, Body(examples=[{"value": "Europe/Berlin"}])]
READ = {**ok(EnvRead, ETAG_HEADER), **READ_RESPONSES}
SCOPE_READ = {**ok(EnvScopeRead, ETAG_HEADER), **SECTION_READ_RESPONSES}
WRITE = {**ok(EnvWriteAnswer, ETAG_HEADER), **WRITE_RESPONSES}


@router.get("/env", summary="Every scope's environment variables, with kind and source", responses=READ)
async def read_env(request: Request, principal: Annotated[Principal, Depends(require_read)],
                   if_none_match: IfNoneMatch = None) -> Response:
    # async, as the settings' read: a cached listing costs a few stats, less than a threadpool hop
    listing = core_of(request).envvars.listing()
    headers = {"ETag": etag(listing.tag), "Cache-Control": "no-cache"}
    if is_not_modified(if_none_match, listing.tag):
        return Response(status_code=304, headers=headers)
    return Response(listing.body, media_type=JSON, headers=headers)


@router.get("/env/{scope}", summary="One scope's environment variables", responses=SCOPE_READ)
async def read_scope(scope: Scope, request: Request, principal: Annotated[Principal, Depends(require_read)],
                     reveal: Reveal = False, if_none_match: IfNoneMatch = None) -> Response:
    core = core_of(request)
    if reveal and principal.role != "admin":
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'; revealing secrets needs 'admin'")
    body = await run_in_threadpool(core.envvars.scope, scope, reveal=reveal)
    tag = body["version"]
    if reveal:
        shown = [(scope, var["name"]) for var in body["variables"] if var["secret"]]
        await run_in_threadpool(core.audit.record_reveal, actor_of(request, principal), FILE, tag, shown)
    headers = {"ETag": etag(tag), "Cache-Control": "no-store" if reveal else "no-cache"}
    if not reveal and is_not_modified(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    return Response(json.dumps(body), media_type=JSON, headers=headers)


@router.put("/env/{scope}", summary="Set several variables of one scope, all or nothing", responses=WRITE)
def set_variables(scope: Scope, body: BatchBody, request: Request,
                  principal: Annotated[Principal, Depends(require_write)], if_match: IfMatch = None,
                  wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S, message: Message = None) -> Response:
    result = _set(request, principal, scope, _values(body), if_match, message)
    return _written(request, scope, result, wait, wait_timeout)


@router.put(NAME_PATH, summary="Set one variable", responses=WRITE)
def set_variable(scope: Scope, name: Name, body: OneBody, request: Request,
                 principal: Annotated[Principal, Depends(require_write)], if_match: IfMatch = None,
                 wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S, message: Message = None) -> Response:
    result = _set(request, principal, scope, {name: EnvValue(body.value, body.secret)}, if_match, message)
    return _written(request, scope, result, wait, wait_timeout)


@router.delete(NAME_PATH, summary="Unset an independent variable", responses=WRITE)
def unset_variable(scope: Scope, name: Name, request: Request,
                   principal: Annotated[Principal, Depends(require_write)], if_match: IfMatch = None,
                   wait: Wait = False, wait_timeout: WaitTimeout = WAIT_DEFAULT_S,
                   message: Message = None) -> Response:
    result = core_of(request).envvars.unset(scope, [name], actor_of(request, principal),
                                            if_match=parse_if_match(if_match), message=message)
    return _written(request, scope, result, wait, wait_timeout)


@router.post("/env/{scope}/plan", summary="What setting these variables would do to each service, touching nothing",
             responses={**PLAN_RESPONSES, **SYNC_RESPONSES})
def plan_variables(scope: Scope, body: BatchBody, request: Request,
                   _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    core = core_of(request)
    env = core.envvars.preview(scope, _values(body))
    return engine_of(request).plan(core.config.snapshot(), env).to_dict()


def _values(body: dict[str, str | EnvSet]) -> dict[str, EnvValue]:
    return {name: EnvValue(item) if isinstance(item, str) else EnvValue(item.value, item.secret)
            for name, item in body.items()}


def _set(request: Request, principal: Principal, scope: str, values: dict[str, EnvValue], if_match: str | None,
         message: str | None) -> WriteResult:
    return core_of(request).envvars.set(scope, values, actor_of(request, principal),
                                        if_match=parse_if_match(if_match), message=message)


def _written(request: Request, scope: str, result: WriteResult, wait: bool, timeout: float) -> Response:
    body: dict[str, Any] = {
        "version": result.snapshot.version,
        "previous_version": result.previous_version,
        "changed": [change.__dict__ for change in result.changes],
        "scope": core_of(request).envvars.scope(scope),
    }
    sync = sync_after_write(request, result.changed, wait, timeout)
    if sync is not None:
        body["sync"] = sync
    return Response(json.dumps(body), media_type=JSON, headers={"ETag": etag(result.snapshot.version)})
