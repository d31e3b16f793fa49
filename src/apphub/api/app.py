"""The FastAPI application: routers, middleware, error handlers, and the lifespan that owns `Core`.

The lifespan opens the data folder's stores when the server starts and closes them when it stops;
it is where the sync thread starts and stops too (DESIGN §3), so shutdown stays clean and quick.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse

import apphub
from apphub.api import (
    audit,
    env,
    environments,
    history,
    legacy,
    notifications,
    rules,
    schema,
    services,
    settings,
    system,
    templates,
)
from apphub.api import sync as sync_routes
from apphub.api.auth import AuthenticationMiddleware, Principal, require_read
from apphub.api.middleware import BodyLimitMiddleware, EncodedSlashMiddleware, RequestContextMiddleware
from apphub.api.models import Health, ok
from apphub.api.openapi import openapi_document
from apphub.api.problems import install_error_handlers
from apphub.core import Core
from apphub.db import Database
from apphub.environments.overlays import file_name
from apphub.errors import ApphubError
from apphub.history.push import Pusher, PushSettings
from apphub.history.worker import HistoryWorker
from apphub.paths import DataDir
from apphub.services.board import ServiceBoard
from apphub.services.manager import ServiceManager
from apphub.services.status import InitStatus
from apphub.services.worker import ServicesWorker
from apphub.sync.engine import SyncEngine
from apphub.sync.inputs import BackendFactory
from apphub.web import routes as console
from apphub.web.sessions import SessionStore

logger = logging.getLogger("apphub.api")

DESCRIPTION = """\
Configuration center: `config.ini` (user settings) and `system.ini` (system settings, read-only here)
are the single source of truth. Every route but `GET /healthz` and the console's sign-in needs an
`x-api-key` header (or the console's session cookie, with `x-csrf-token` on writes); keys have a
role (`read`, `write`, `admin`). Errors on `/api/v1` are RFC 9457 problem details.
Reads return an `ETag`; send it back as `If-Match` to make a write fail (412) if someone else
changed the file in between.
"""


def start_history(core: Core) -> tuple[HistoryWorker, Pusher]:
    """The history at the server's start (recovered, a damaged repository moved aside), its commit
    thread and its push thread. Serving goes on whatever the history's state: the status says it."""
    try:
        core.history.start()
    except ApphubError as exc:
        core.history.problem = f"the history could not start: {exc}"
        logger.error("%s", core.history.problem)
    worker = HistoryWorker(core.history)
    pusher = Pusher(core.history, lambda: PushSettings.from_system(core.system.snapshot()))
    pusher.on_failure.append(core.notifications.on_push_failed)
    worker.start()
    pusher.start()
    return worker, pusher


def notify_of_sync(core: Core, engine: SyncEngine) -> None:
    """Every sync round is told to the notification destinations, and a write of a file the sync
    carries is known to be followed by its report (a chat destination sends both as one)."""
    engine.on_report.append(core.notifications.on_report)
    core.notifications.synced = lambda file: file in synced_files(core)


def synced_files(core: Core) -> set[str]:
    """The files the sync engine carries to the services: config.ini, the running environment's
    overlay, env.ini (a write of one of them is followed by a sync report)."""
    active = core.environments.active()
    return {core.data.config_ini.name, core.data.env_ini.name} | ({file_name(active)} if active else set())


def start_services(app: FastAPI, core: Core) -> ServicesWorker:
    """The products' initialisation and every service's connection tests, in a thread of their own:
    serving never waits for them."""
    manager = ServiceManager(core, InitStatus(Database(core.data.database)))
    manager.on_run.append(core.notifications.on_init_run)
    app.state.services_database = manager.status.database
    board = ServiceBoard(manager, core.data.root / "services.yaml", core.data.root)
    worker = ServicesWorker(manager, board)
    app.state.services, app.state.services_board, app.state.services_worker = manager, board, worker
    worker.start()
    return worker


def create_app(data: DataDir, *, sync: bool = True, backends: BackendFactory | None = None,
               watch: bool = True) -> FastAPI:
    """The application for one initialised data folder, with its sync thread unless `sync` is False.

    `backends` builds the reload strategies and probes (default: the real ones from system.ini).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        core = Core(data)
        app.state.core = core
        sessions_database = Database(data.database)
        app.state.sessions = SessionStore(sessions_database)
        history_worker, pusher = start_history(core)
        app.state.pusher = pusher
        engine = None
        if sync:
            from apphub.reload.build import build_backends

            engine = SyncEngine(core, backends or build_backends, watch=watch)
            notify_of_sync(core, engine)
            engine.start()
        core.notifications.start()
        app.state.engine = engine
        services_worker = start_services(app, core)
        try:
            yield
        finally:
            services_worker.stop()
            app.state.services_database.close()
            if engine is not None:
                engine.stop()
            history_worker.stop()
            pusher.stop()
            sessions_database.close()
            core.close()

    app = FastAPI(
        title="Apphub config center",
        version=apphub.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # A path that matches no route is a 404, never a 307 to the path without its last slash:
        # `PUT /api/v1/settings/%2F` was sent on to the batch route.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    # The last added runs first: request id and access log, then the key, then the body limit, then
    # the refusal of an encoded slash.
    app.add_middleware(EncodedSlashMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AuthenticationMiddleware)
    app.add_middleware(RequestContextMiddleware)
    # The reads that tools poll first: a request is matched against the routes in this order.
    for router in (settings.router, env.router, system.router, audit.router, legacy.router, sync_routes.router,
                   history.router, services.router, rules.router, environments.router, templates.router,
                   notifications.router, schema.router, console.router):
        app.include_router(router)
    app.mount(console.ASSETS_PATH, console.Assets(directory=console.ASSETS), name="assets")

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers (no key needed)",
             response_model=None, responses=ok(Health))
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": apphub.__version__}

    # The API description is behind a key like everything else (only /healthz is open).
    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Annotated[Principal, Depends(require_read)]) -> JSONResponse:
        return JSONResponse(openapi_document(app))

    @app.get("/docs", include_in_schema=False)
    async def docs(_: Annotated[Principal, Depends(require_read)]) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Apphub config center")

    return app
