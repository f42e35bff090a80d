"""The FastAPI application: ``create_app(settings)``.

One process serves the REST API, git smart HTTP and the event worker. Sync route
functions run in FastAPI's thread pool; the git bridge is async and streams.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from mergegate import __version__
from mergegate.service.agent_runs import AgentRunWorker
from mergegate.service.checks import CheckWorker
from mergegate.service.errors import ServiceError
from mergegate.service.events import Dispatcher, HandlerContext, Worker
from mergegate.service.server import Server, prepare
from mergegate.service.settings import ServerSettings
from mergegate.web.git import GitEndpoint
from mergegate.web.routers import admin, agent_runs, approvals, changes, gate, groups, repos, reviews, users

log = logging.getLogger("mergegate.web")

_ERROR_WORDS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
}


def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _ERROR_WORDS.get(status, "error"), "reason": reason}, status, headers=headers)


def create_app(settings: ServerSettings, server: Server | None = None, *, start_worker: bool = True) -> FastAPI:
    """Build the app. ``server`` is the prepared data directory (prepared here if omitted)."""
    server = server or prepare(settings)
    context = HandlerContext(server.forge, settings.url, merge_method=settings.merge_method)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = checker = runs = None
        if start_worker:
            worker = Worker(Dispatcher(server.db, context), poll_s=settings.worker_poll_s)
            worker.start()
            # Checks run in their own small pool: a slow check never holds up events.
            checker = CheckWorker(
                server.db, server.forge, workers=settings.check_workers, poll_s=settings.worker_poll_s
            )
            checker.start()
            # Hosted agent runs (and approval expiry) in their own thread: a run waits on models.
            runs = AgentRunWorker(server.db, server.forge, settings.data_dir, poll_s=settings.worker_poll_s)
            runs.start()
        app.state.worker = worker
        app.state.checker = checker
        app.state.agent_worker = runs
        try:
            yield
        finally:
            if runs is not None:
                runs.stop()
            if checker is not None:
                checker.stop()
            if worker is not None:
                worker.stop()
            server.db.dispose()

    app = FastAPI(
        title="mergegate",
        version=__version__,
        description=(
            "The merge gate no AI agent can open. Authenticate with `Authorization: Bearer <token>`. "
            "git smart HTTP is served at `/git/<repo>.git` (Basic auth: user name + token)."
        ),
        lifespan=lifespan,
    )
    app.state.server = server
    app.state.context = context
    app.state.worker = None
    app.state.checker = None
    app.state.agent_worker = None

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        headers = {"WWW-Authenticate": 'Bearer realm="mergegate"'} if exc.status == 401 else None
        response = _problem(exc.status, exc.reason, headers)
        if word := getattr(exc, "error", None):
            response = JSONResponse({"error": word, "reason": exc.reason}, exc.status, headers=headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _problem(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _problem(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _problem(500, "internal error; the server log has the details")

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict:
        """Liveness: answers once the database is migrated and the app is up."""
        return {"ok": True, "version": __version__}

    routers = (users, repos, changes, reviews, gate, groups, admin, approvals, agent_runs)
    for module in routers:
        app.include_router(module.router)
    app.router.routes.append(Route("/git/{path:path}", GitEndpoint(), methods=["GET", "POST"]))
    return app
