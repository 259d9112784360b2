"""Bounded pools: an exhausted pool answers 503 with Retry-After within the pool timeout (never
a hang or a 500), a waiter is served once a connection comes back, and the status is exported."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from tests.auth.factories import Account, account, assert_error
from tests.support.app import running_app
from tests.support.backends import Backend
from tests.support.isolated import isolated_settings
from ultrachat.metrics.storage import PoolCollector
from ultrachat.storage.pools import PoolStatus, ResourcePool

POOL_TIMEOUT = 0.3
CHANNELS = "/api/v1/channels"


SmallApp = tuple[FastAPI, httpx.AsyncClient, Account]


@asynccontextmanager
async def _small_app(backend: Backend, pool_timeout: float) -> AsyncIterator[SmallApp]:
    """An app with one database connection and the smallest Redis pool."""
    settings = isolated_settings(
        backend, database_pool_size=1, redis_pool_size=2, pool_timeout_seconds=pool_timeout
    )
    async with running_app(settings) as (app, client):
        user = await account(client)
        yield app, client, user


@pytest.fixture
async def small_app(backend: Backend) -> AsyncIterator[SmallApp]:
    async with _small_app(backend, POOL_TIMEOUT) as triple:
        yield triple


@pytest.fixture
async def patient_app(backend: Backend) -> AsyncIterator[SmallApp]:
    """The same with a long pool timeout, so that a waiter is seen waiting on a busy machine."""
    async with _small_app(backend, 30.0) as triple:
        yield triple


def _pool(app: FastAPI, name: str) -> ResourcePool[Any]:
    [pool] = [p for p in app.state.runtime.pools if p.name == name]
    return pool


async def _hold_all(pool: ResourcePool[Any]) -> list[Any]:
    return [await pool.acquire() for _ in range(pool.status().available)]


def _assert_busy(response: httpx.Response, elapsed: float) -> None:
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert elapsed < POOL_TIMEOUT + 2, f"answered after {elapsed:.1f}s"


async def test_an_exhausted_database_pool_is_a_503_with_retry_after(
    small_app: SmallApp,
) -> None:
    app, client, user = small_app
    pool = _pool(app, "primary")
    assert pool.status() == PoolStatus(available=1, total=1, waiting=0)
    held = await _hold_all(pool)
    try:
        assert pool.status() == PoolStatus(available=0, total=1, waiting=0)
        started = time.perf_counter()
        response = await client.get(CHANNELS, headers=user.headers)
        _assert_busy(response, time.perf_counter() - started)
        assert "database" in response.json()["error"]["message"]
    finally:
        for connection in held:
            await pool.release(connection)
    assert (await client.get(CHANNELS, headers=user.headers)).status_code == 200


async def test_a_waiter_is_counted_and_served_when_a_connection_comes_back(
    patient_app: SmallApp,
) -> None:
    app, client, user = patient_app
    pool = _pool(app, "primary")
    [held] = await _hold_all(pool)
    request = asyncio.create_task(client.get(CHANNELS, headers=user.headers))
    try:
        for _ in range(500):
            if pool.status().waiting or request.done():
                break
            await asyncio.sleep(0.01)
        assert pool.status() == PoolStatus(available=0, total=1, waiting=1)
    finally:
        await pool.release(held)
    response = await request
    assert response.status_code == 200, response.text
    assert pool.status() == PoolStatus(available=1, total=1, waiting=0)


async def test_an_exhausted_redis_pool_is_a_503_with_retry_after(
    backend: Backend, small_app: SmallApp
) -> None:
    if not backend.redis_url:
        pytest.skip("the embedded backend has no Redis")
    app, client, user = small_app
    pool = _pool(app, "redis")
    assert pool.status().total == 2
    held = await _hold_all(pool)
    try:
        assert pool.status().available == 0
        started = time.perf_counter()
        response = await client.get(CHANNELS, headers=user.headers)
        _assert_busy(response, time.perf_counter() - started)
        assert "Redis" in response.json()["error"]["message"]
    finally:
        for connection in held:
            await pool.release(connection)
    assert (await client.get(CHANNELS, headers=user.headers)).status_code == 200


async def test_pool_status_is_exported_as_metrics(backend: Backend, small_app: SmallApp) -> None:
    app, client, _ = small_app
    registry = CollectorRegistry()
    collector = PoolCollector()
    collector.track(*app.state.runtime.pools)
    registry.register(collector)
    pool = _pool(app, "primary")

    def sample(name: str, pool_name: str = "primary") -> float | None:
        return registry.get_sample_value(f"ultrachat_pool_{name}", {"pool": pool_name})

    assert (sample("available"), sample("total"), sample("waiting")) == (1, 1, 0)
    [held] = await _hold_all(pool)
    try:
        assert (sample("available"), sample("total"), sample("waiting")) == (0, 1, 0)
    finally:
        await pool.release(held)
    if backend.redis_url:
        assert sample("total", "redis") == 2
        assert sample("waiting", "redis") == 0

    # The process-wide /metrics carries the same series (summed over this process's apps).
    scraped = (await client.get("/metrics")).text
    for name in ("available", "total", "waiting"):
        assert f'ultrachat_pool_{name}{{pool="primary"}}' in scraped
    if backend.redis_url:
        assert 'ultrachat_pool_total{pool="redis"}' in scraped
