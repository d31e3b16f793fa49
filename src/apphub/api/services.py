"""`/api/v1/services` and `/api/v1/init`: every service's health, the products' first-start
initialisation, and what a service's container fetches at start (init-config.sh)."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response

from apphub.api.auth import Principal, core_of, require_admin, require_read
from apphub.api.models import ok
from apphub.api.problems import COMMON_RESPONSES, problem_response
from apphub.api.settings import actor_of
from apphub.errors import Forbidden
from apphub.services.board import ServiceBoard
from apphub.services.bundle import build_bundle
from apphub.services.manager import PRODUCTS, ServiceManager
from apphub.services.worker import ServicesWorker

router = APIRouter(prefix="/api/v1", tags=["services"])

NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ServiceName = Annotated[str, Path(description="A product (nginx_proxy_manager, gitea, portainer, cockpit), an engine "
                                              "(docker, supervisord) or a service of services.yaml",
                                  pattern=NAME_PATTERN, examples=["gitea"])]
BASE: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    400: problem_response("A malformed parameter (a name outside [A-Za-z0-9_.-]); `errors` names each"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_response("No such service")}
MANIFEST_BROKEN: dict[int | str, dict[str, Any]] = {
    503: problem_response("services.yaml is invalid, or the service's files do not render (the detail says which)"),
}
TAR = "application/x-tar"


class ServiceHealth(BaseModel):
    """One connection test."""

    name: str
    kind: Literal["product", "engine", "service"]
    health: Literal["healthy", "unhealthy", "down", "unknown"]
    version: str | None = Field(description="What the service says it is (Gitea 1.26.3, Podman 5.4.2, ...)")
    authenticated: bool | None = Field(description="apphub's credentials work (null: it holds none for it)")
    reason: str | None = Field(description="Why it is not healthy (secrets masked)")
    checked_at: str | None
    duration_ms: float | None
    details: dict[str, Any]


class ServiceList(BaseModel):
    services: list[ServiceHealth]


class Dependencies(BaseModel):
    service: str
    ready: bool = Field(description="Every service it depends on (services.yaml depends_on) is healthy now")
    dependencies: list[ServiceHealth]


class InitStep(BaseModel):
    name: str
    description: str
    state: Literal["pending", "running", "done", "unchanged", "failed", "manual", "skipped"]
    attempts: int
    last_error: str | None
    detail: str | None = Field(description="What it did; for `manual`, what to run")
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None


class InitRun(BaseModel):
    service: str
    title: str
    state: Literal["pending", "running", "done", "failed", "manual"]
    trigger: str = Field(examples=["start", "retry", "api", "cli"])
    changed: bool
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    attempt: int
    steps: list[InitStep]


class InitStatus(BaseModel):
    enabled: list[str] = Field(description="system.ini [services] enabled")
    services: list[InitRun]


def manager_of(request: Request) -> ServiceManager:
    manager: ServiceManager = request.app.state.services
    return manager


def board_of(request: Request) -> ServiceBoard:
    board: ServiceBoard = request.app.state.services_board
    return board


@router.get("/services", summary="Every service with its health, version and last check",
            response_model=None, responses={**BASE, **ok(ServiceList)})
async def list_services(request: Request, _: Annotated[Principal, Depends(require_read)],
                        refresh: Annotated[bool, Query(description="Test every service now")] = False) -> Response:
    board = board_of(request)
    checks = await run_in_threadpool(board.check_all if refresh else board.latest)
    return JSONResponse({"services": [check.to_dict() for check in checks]})


@router.get("/services/{name}/health", summary="Test one service now", response_model=None,
            responses={**BASE, **NOT_FOUND, **ok(ServiceHealth)})
async def service_health(name: ServiceName, request: Request,
                         _: Annotated[Principal, Depends(require_read)]) -> Response:
    check = await run_in_threadpool(board_of(request).check, name)
    return JSONResponse(check.to_dict())


@router.get("/services/{name}/dependencies", summary="Whether the services it depends on are healthy now",
            response_model=None, responses={**BASE, **NOT_FOUND, **MANIFEST_BROKEN, **ok(Dependencies)})
async def service_dependencies(
        name: ServiceName, request: Request, _: Annotated[Principal, Depends(require_read)],
        format: Annotated[Literal["json", "text"], Query(description="text: `ready` or `waiting`, then a line "
                                                                     "`NAME HEALTH REASON` per dependency")] = "json",
) -> Response:
    ready, checks = await run_in_threadpool(board_of(request).dependencies, name)
    if format == "text":
        lines = ["ready" if ready else "waiting"]
        lines += [" ".join(filter(None, (check.name, check.health, _one_line(check.reason)))) for check in checks]
        return PlainTextResponse("\n".join(lines) + "\n")
    return JSONResponse({"service": name, "ready": ready, "dependencies": [check.to_dict() for check in checks]})


@router.get("/services/{name}/config", summary="The files and environment a service's container fetches at start",
            response_model=None,
            responses={**BASE, **NOT_FOUND, **MANIFEST_BROKEN,
                       403: problem_response("Neither an admin key nor this service's own key"),
                       409: problem_response("config.ini or env.ini does not parse"),
                       200: {"description": "JSON, or with format=tar a tar archive of `files/<path in the "
                                            "container>` and `env` (export lines)",
                             "content": {"application/json": {}, TAR: {}}}})
async def service_config(
        name: ServiceName, request: Request, principal: Annotated[Principal, Depends(require_read)],
        format: Annotated[Literal["json", "tar"], Query(description="tar: for init-config.sh")] = "json",
) -> Response:
    # Secrets are in plaintext here: the service's own key, or an admin, and nobody else.
    if principal.service != name and (principal.service is not None or principal.role != "admin"):
        raise Forbidden(f"the key '{principal.name}' has the role '{principal.role}'"
                        + (f" of the service '{principal.service}'" if principal.service else "")
                        + f"; the configuration of the service '{name}' (its secrets in plaintext) needs 'admin' "
                        f"or that service's own key (apphub services key {name})")
    core = core_of(request)
    bundle = await run_in_threadpool(build_bundle, core, name)
    # Handing out secrets in plaintext is a reveal: audited, by key name, never by value.
    actor = actor_of(request, principal)
    await run_in_threadpool(core.audit.record_reveal, actor, "config.ini", bundle.version, bundle.config_secrets)
    await run_in_threadpool(core.audit.record_reveal, actor, "env.ini", bundle.env_version, bundle.env_secrets)
    headers = {"X-Apphub-Version": bundle.version, "Cache-Control": "no-store"}
    if format == "tar":
        return Response(bundle.to_tar(), media_type=TAR, headers=headers)
    return JSONResponse(bundle.to_dict(), headers=headers)


@router.get("/init/status", summary="The products' first-start initialisation: per product, per step",
            response_model=None, responses={**BASE, **ok(InitStatus)})
async def init_status(request: Request, _: Annotated[Principal, Depends(require_read)]) -> Response:
    manager = manager_of(request)
    enabled = await run_in_threadpool(lambda: list(manager.settings().enabled))
    runs = await run_in_threadpool(manager.status.load)
    return JSONResponse({"enabled": enabled, "services": [run.to_dict() for run in runs.values()]})


@router.post("/init", summary="Run the initialisers again: every enabled product, or one", response_model=None,
             responses={**BASE, **NOT_FOUND, **ok(InitStatus),
                        202: {"description": "wait=false: the runs started; follow them at /api/v1/init/status",
                              "content": {"application/json": {}}},
                        403: problem_response("This needs an admin key")})
async def run_init(
        request: Request, _: Annotated[Principal, Depends(require_admin)],
        service: Annotated[str | None, Query(description="One product", pattern=NAME_PATTERN,
                                             examples=list(PRODUCTS))] = None,
        wait: Annotated[bool, Query(description="Answer once the runs end (a product that is down is retried "
                                                "first); false: at once, with 202")] = True,
) -> Response:
    manager = manager_of(request)
    names = [service] if service else None
    manager.check_known(names or ())  # a 404 before a run starts in the background
    worker: ServicesWorker | None = getattr(request.app.state, "services_worker", None)

    def run() -> dict[str, Any]:
        runs = manager.initialise(names, trigger="api")
        if worker is not None:
            worker.wake()  # the connection tests follow what the run changed
        return {"enabled": list(manager.settings().enabled), "services": [run.to_dict() for run in runs.values()]}

    if not wait:
        threading.Thread(target=run, name="apphub-init-api", daemon=True).start()
        return JSONResponse({"started": names or list(manager.settings().enabled),
                             "status": "/api/v1/init/status"}, status_code=202)
    return JSONResponse(await run_in_threadpool(run))


def _one_line(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())

