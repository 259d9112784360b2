"""Provision an isolated backend for one test run: its own database and Redis key prefix.

PostgreSQL and Redis are mandatory when CI=true (a missing service fails the run); elsewhere
their tests skip with a visible reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

ADMIN_PG_DSN = os.environ.get(
    "ULTRACHAT_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("ULTRACHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str
    redis_prefix: str


def unavailable(reason: str) -> None:
    """Fail in CI, skip (visibly) elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true requires this service: {reason}", pytrace=False)
    pytest.skip(f"service unavailable (set CI=true to make this fatal): {reason}")


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards; yields its asyncpg URL."""
    name = f"uc_test_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(ADMIN_PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {ADMIN_PG_DSN}: {exc}")
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_PG_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A random key prefix on the shared Redis, whose keys are deleted afterwards."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL}: {exc}")
        raise
    prefix = f"uctest:{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            await client.delete(key)
        await client.aclose()


@asynccontextmanager
async def provision(name: str, tmp: Path) -> AsyncIterator[Backend]:
    if name == "sqlite":
        yield Backend(name, f"sqlite+aiosqlite:///{tmp / 'ultrachat.db'}", "", "uc:")
        return
    async with postgres_database() as url, redis_prefix() as prefix:
        yield Backend(name, url, REDIS_URL, prefix)
