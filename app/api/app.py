"""The FastAPI application: routes, authentication, the body limit and the error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import errors
from app.api.deps import ApiState, require_token
from app.api.follow import FollowHub
from app.api.routes import candles, catalog, configurations, dashboard, health, metrics, results, schedules, training
from app.db import configure_pool
from app.engine import registry
from app.loop_pool import LoopPool
from app.queue import redis_connection
from app.services.candles import KeptChecks
from app.services.dispatch import LoopSender
from app.services.maintenance import MaintenanceLoop
from app.settings import Settings

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before anything reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)(
                scope, receive, send
            )


class _TooLarge(Exception):
    pass


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
    # What start-up built lives as long as the process: keep it out of every garbage collection,
    # which then walks only what requests allocate (shorter pauses in the tail of latencies).
    registry.log_broken()  # a strategy that failed to import or validate, by name; the rest serve
    gc.freeze()
    loop = None
    if settings.maintenance_in_api:
        loop = MaintenanceLoop(settings, redis_connection(settings.redis_url))
        loop.start()
    yield
    state: ApiState = app.state.api
    await state.follow_hub.close()
    await state.read_pool.close()
    await state.start_pool.close()
    if loop is not None:
        loop.stop()


def create_app(settings: Settings) -> FastAPI:
    # /docs is served by the dashboard router from vendored assets (no CDN); no /redoc.
    app = FastAPI(
        title="trad",
        version="2",
        summary="Training jobs for trading strategies",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    configure_pool(settings.db_pool_size, settings.db_max_overflow, settings.db_pool_pre_ping)
    read_pool = LoopPool(settings.database_url, settings.db_read_pool_size)
    app.state.api = ApiState(
        read_pool=read_pool,
        start_pool=LoopPool(settings.database_url, settings.db_start_pool_size),
        candle_checks=KeptChecks(),
        start_sender=LoopSender(redis_connection(settings.redis_url)),
        follow_hub=FollowHub(settings, partial(training.read_progress, read_pool)),
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    app.include_router(training.router, dependencies=[Depends(require_token)])
    app.include_router(catalog.router, dependencies=[Depends(require_token)])
    app.include_router(configurations.router, dependencies=[Depends(require_token)])
    app.include_router(results.router, dependencies=[Depends(require_token)])
    app.include_router(schedules.router, dependencies=[Depends(require_token)])
    app.include_router(candles.router, dependencies=[Depends(require_token)])
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)

    errors.install(app)
    return app
