"""`create_app(runtime)`: the FastAPI application (docs/architecture.md#http-and-dashboard). Nothing
happens at import time.

Routes, and who may call them (see `auth.py`):

- open: `/healthz`, `/readyz`, `/static/...`;
- `/metrics`: open, or behind basic auth when `server.protect_metrics`;
- behind basic auth when configured: `/api/v1/...`, `/cc.xml`, `/openapi.json`, `/docs` and the
  dashboard pages (`ciwatch.web.dashboard.router`, when that module exists);
- routes with their own secret (webhooks `POST /hooks/...`, `POST /api/v1/report`) are
  included in `_include_own_secret_routes`, without `require_auth`.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ciwatch.health import readiness
from ciwatch.metrics import CONTENT_TYPE, CiwatchCollector, MetricsRenderer, build_registry
from ciwatch.runtime import Runtime
from ciwatch.web import api, cctray, hooks, report
from ciwatch.web.auth import require_auth, require_metrics_auth
from ciwatch.web.context import runtime_of, snapshot_cache_of
from ciwatch.web.errors import error_response, error_responses, install_error_handlers
from ciwatch.web.schemas import StatusAnswer

STATIC_DIR = Path(__file__).parent / "static"
DASHBOARD_MODULE = "ciwatch.web.dashboard"
SWAGGER_JS = "/static/swagger/swagger-ui-bundle.js"
SWAGGER_CSS = "/static/swagger/swagger-ui.css"

# The `error` of a 503 from /readyz, by the first failed check.
READY_ERRORS = {
    "store": "store unavailable",
    "schema": "schema not current",
    "store_writes": "store refuses writes",
    "task": "background task down",
}

DESCRIPTION = """\
The API of ciwatch: runs, project/ref states, target health, alerts, silences; plus `/metrics`
(Prometheus), `/cc.xml` (CCTray), `/healthz` and `/readyz`.

Errors are always `{"error": "...", "detail": ...}`. When `server.username` and
`server.password` are set, every route except `/healthz`, `/readyz` (and `/metrics` unless
`server.protect_metrics`) needs HTTP basic auth.
"""


def create_app(
    runtime: Runtime,
    *,
    metrics_max_age: float | None = None,
    metrics_slow_max_age: float | None = None,
) -> FastAPI:
    """The web application over `runtime`: its store, settings, clock, self-metrics, metrics
    snapshot and ingest (`ciwatch.runtime`, the composition root); nothing is built twice.

    `metrics_max_age` and `metrics_slow_max_age` replace how old the runtime's snapshot and its
    run counts may be (seconds; by default 5 and 60).
    """
    cache = runtime.snapshot
    if metrics_max_age is not None:
        cache.max_age = metrics_max_age
    if metrics_slow_max_age is not None:
        cache.slow_max_age = metrics_slow_max_age
    settings = runtime.settings
    collector = CiwatchCollector(
        cache,
        runtime.metrics,
        store_health=runtime.store_health,
        gcpe=settings.metrics.gcpe_compatible,
        gcpe_sparse=settings.metrics.gcpe_sparse_status_metrics,
        gitlab_sources=(source.name for source in settings.sources if source.type == "gitlab"),
    )
    registry = build_registry(collector)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await cache.aclose()
            # Webhook follow-ups (Jenkins API reads, job fetches) get a bounded drain, then are
            # cancelled before the store closes; what the webhooks accepted is stored already.
            await runtime.ingest.drain()

    app = FastAPI(
        title="ciwatch",
        version="1",
        description=DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # Signs the dashboard forms' CSRF tokens (web/csrf.py); one per process, never stored.
    app.state.csrf_secret = secrets.token_bytes(32)
    app.state.metrics_cache = cache
    app.state.metrics_registry = registry
    app.state.metrics_renderer = MetricsRenderer(collector)
    app.state.projects_bodies = api.ProjectsBodies(cache)
    install_error_handlers(app)

    app.include_router(_probes())
    app.include_router(_metrics(), dependencies=[Depends(require_metrics_auth)])
    protected = [Depends(require_auth)]
    app.include_router(api.router, dependencies=protected)
    app.include_router(cctray.router, dependencies=protected)
    app.include_router(_documentation(app), dependencies=protected)
    dashboard = _dashboard_router()
    if dashboard is not None:
        app.include_router(dashboard, dependencies=protected)
    _include_own_secret_routes(app)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _include_own_secret_routes(app: FastAPI) -> None:
    """Webhooks (`/hooks/...`) and `POST /api/v1/report` check their own secrets (the source's
    webhook_secret, the bearer report_token): their routers go here, not behind require_auth."""
    app.include_router(hooks.router)
    app.include_router(report.router)


def _dashboard_router() -> APIRouter | None:
    """The dashboard's router, when the dashboard module is installed."""
    if importlib.util.find_spec(DASHBOARD_MODULE) is None:
        return None
    router = importlib.import_module(DASHBOARD_MODULE).router
    assert isinstance(router, APIRouter)
    return router


def _probes() -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/healthz", response_model=StatusAnswer, summary="Liveness")
    async def healthz() -> JSONResponse:
        """Always `{"status": "ok"}` while the process serves HTTP; never protected."""
        return JSONResponse({"status": "ok"})

    @router.get(
        "/readyz",
        response_model=StatusAnswer,
        summary="Readiness",
        responses=error_responses(503),
    )
    async def readyz(request: Request) -> JSONResponse:
        """`{"status": "ok"}` when the store answers, its schema is at the head migration, the
        last write probe committed and every supervised background task is running; 503 with
        the error object otherwise: `detail` names the first failed check (`store`, `schema`,
        `store_writes`, `task`) and `problems` lists them all. Never protected."""
        runtime = runtime_of(request)
        problems = await readiness(runtime.store, runtime.store_health, runtime.supervisor.down())
        if problems:
            first = problems[0]
            detail = {
                "check": first.check,
                "message": first.message,
                "problems": [{"check": p.check, "message": p.message} for p in problems],
            }
            return error_response(503, READY_ERRORS[first.check], detail)
        return JSONResponse({"status": "ok"})

    return router


def _metrics() -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."},
            **error_responses(401),
        },
    )
    async def metrics(request: Request) -> Response:
        """Every metric of docs/metrics.md, from a snapshot of the store at most a few seconds
        old. Behind basic auth only when `server.protect_metrics` is true."""
        await snapshot_cache_of(request).get()
        # Over thousands of refs this is CPU work (less when few refs changed since the last
        # scrape, see MetricsRenderer): off the event loop.
        renderer = request.app.state.metrics_renderer
        # Prometheus asks with `Accept-Encoding: gzip`; the compressed body is kept per body.
        if "gzip" in request.headers.get("accept-encoding", "").lower():
            body = await asyncio.to_thread(renderer.render_gzip)
            headers = {
                "Content-Type": CONTENT_TYPE,
                "Content-Encoding": "gzip",
                "Vary": "Accept-Encoding",
            }
            return Response(body, headers=headers)
        body = await asyncio.to_thread(renderer.render)
        return Response(body, headers={"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"})

    return router


def _documentation(app: FastAPI) -> APIRouter:
    router = APIRouter()

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # Swagger UI from our own /static (vendored, see static/swagger/SOURCE.md), not a CDN:
        # /docs works offline and behind a proxy that allows only this server.
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="ciwatch API",
            swagger_js_url=f"{root}{SWAGGER_JS}",
            swagger_css_url=f"{root}{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}/static/favicon.svg",
        )

    return router
