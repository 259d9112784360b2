"""An UltraChat app on a provisioned backend, driven in-process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tests.support.backends import Backend
from ultrachat.config import Settings, load_settings
from ultrachat.gateway.app import create_app
from ultrachat.storage import Database
from ultrachat.storage.migrate import upgrade

# Cheap hashing keeps the suite fast; test_passwords checks the production parameters.
FAST_HASHING = {"argon2_memory_kib": 64, "argon2_time_cost": 1}
GENEROUS_LIMITS = {"rate_limit_auth_max": 100_000, "rate_limit_account_max": 100_000}
# Every test deployment shares one master key, as a real deployment's nodes do. (SQLite's
# generated key file is tested on its own, in tests/crypto.)
TEST_MASTER_KEY = "6a" * 32


def settings_for(backend: Backend, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_key_prefix": backend.redis_prefix,
        "master_key": TEST_MASTER_KEY,
        **FAST_HASHING,
        **GENEROUS_LIMITS,
        **overrides,
    }
    return load_settings(**values)


async def migrate(settings: Settings) -> None:
    db = Database(settings.effective_database_url)
    try:
        await upgrade(db)
    finally:
        await db.close()


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A started app (lifespan run) and a client bound to it."""
    await migrate(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client
