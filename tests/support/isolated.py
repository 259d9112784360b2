"""Apps of their own on the run's backend, for tests that need other settings.

Each gets a Redis key prefix under the run's (so the run's cleanup removes its keys) that no
other app shares: rate-limit buckets and revocations never leak between apps.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tests.support.app import settings_for
from tests.support.backends import Backend
from ultrachat.config import Settings
from ultrachat.gateway.app import create_app


def isolated_settings(backend: Backend, **overrides: Any) -> Settings:
    prefix = f"{backend.redis_prefix}{secrets.token_hex(4)}:"
    return settings_for(backend, redis_key_prefix=prefix, **overrides)


@asynccontextmanager
async def unstarted_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app whose lifespan never ran (no keys, no migrations): enough for the edge."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client
    finally:
        await app.state.runtime.stop()
