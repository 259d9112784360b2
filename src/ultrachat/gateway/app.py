"""The one ASGI app that composes every service behind the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ultrachat.audit.routes import router as audit_router
from ultrachat.auth.routes import router as auth_router
from ultrachat.billing.routes import router as billing_router
from ultrachat.chat.routes import router as chat_router
from ultrachat.config import Settings, load_settings
from ultrachat.dashboard.routes import router as dashboard_router
from ultrachat.gateway import health
from ultrachat.gateway.errors import install_error_handlers
from ultrachat.gateway.middleware import EdgeMiddleware, EnvelopeCORSMiddleware
from ultrachat.gateway.openapi import error_responses
from ultrachat.gateway.runtime import Runtime
from ultrachat.monitoring.routes import router as monitoring_router
from ultrachat.preferences.routes import router as preferences_router
from ultrachat.realtime.asgi import router as realtime_router
from ultrachat.realtime.edge import RUNTIME_KEY
from ultrachat.realtime.routes import router as presence_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start()
        try:
            # In the ASGI server's app state: the native real-time edge finds it there.
            yield {RUNTIME_KEY: runtime}
        finally:
            await runtime.stop()

    app = FastAPI(
        title="UltraChat",
        version="0.1.0",
        lifespan=lifespan,
        # What any operation can get from the edge or the framework. 400: a JSON body FastAPI
        # cannot decode at all (not UTF-8, nested too deeply, an integer of too many digits;
        # malformed JSON is a 422), or a CORS preflight from an origin not allowed.
        responses=error_responses(400, 413, 422),
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth_router)
    app.include_router(chat_router)
    app.include_router(preferences_router)
    app.include_router(realtime_router)
    app.include_router(presence_router)
    app.include_router(audit_router)
    app.include_router(dashboard_router)
    app.include_router(billing_router)
    app.include_router(monitoring_router)
    if settings.cors_origins:
        app.add_middleware(
            EnvelopeCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            max_age=600,
        )
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        on_user=runtime.collector.active_users.seen,
    )
    return app
