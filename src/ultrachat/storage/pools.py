"""The plan's ResourcePool: acquire, release, and a status of available, total and waiting.

Every pool is bounded, and acquiring waits at most ``ULTRACHAT_POOL_TIMEOUT_SECONDS``; after
that the pool raises (SQLAlchemy's ``TimeoutError``, redis's ``ConnectionError``) and the
gateway answers 503 with ``Retry-After`` (gateway/errors.py). Nothing queues without bound.

The status is what ``/metrics`` exports as ``ultrachat_pool_{available,total,waiting}``
(metrics/storage.py reads it at each scrape). Neither library counts its waiters, so the pools
here count the callers inside acquire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolProxiedConnection, QueuePool

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolStatus:
    available: int  # acquirable now without waiting (idle, or room to open one)
    total: int  # the most connections the pool holds
    waiting: int  # callers blocked in acquire (or opening a connection)

    @property
    def in_use(self) -> int:
        return self.total - self.available


class ResourcePool(Protocol[T]):
    """A bounded pool of ``T``: acquire waits at most the pool timeout, then raises."""

    name: str

    async def acquire(self) -> T: ...

    async def release(self, resource: T) -> None: ...

    def status(self) -> PoolStatus: ...


class WaitCountingQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, counting the callers waiting in checkout."""

    waiting = 0

    def connect(self) -> PoolProxiedConnection:
        self.waiting += 1
        try:
            return super().connect()
        finally:
            self.waiting -= 1


def queue_pool_status(pool: Any) -> PoolStatus:
    """The status of a SQLAlchemy QueuePool (zeros for pools without a bound)."""
    if not isinstance(pool, QueuePool):
        return PoolStatus(0, 0, 0)
    total = pool.size() + max(pool._max_overflow, 0)
    available = max(total - pool.checkedout(), 0)
    return PoolStatus(available, total, int(getattr(pool, "waiting", 0)))


class DatabasePool:
    """An engine's connection pool as a ResourcePool of connections."""

    def __init__(self, name: str, engine: AsyncEngine) -> None:
        self.name = name
        self.engine = engine

    async def acquire(self) -> AsyncConnection:
        return await self.engine.connect().start()

    async def release(self, resource: AsyncConnection) -> None:
        await resource.close()

    def status(self) -> PoolStatus:
        # engine.pool, not a saved reference: dispose() replaces the pool.
        return queue_pool_status(self.engine.pool)
