"""The Redis connection pool as a ResourcePool (imported only when Redis is configured).

``BlockingConnectionPool`` waits up to its timeout for a free connection, then raises
``redis.exceptions.ConnectionError("No connection available.")``, which the gateway answers
with 503 and ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection

from ultrachat.storage.pools import PoolStatus


class WaitCountingBlockingPool(BlockingConnectionPool):
    """redis-py's blocking pool, counting the callers waiting for a connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        self.waiting += 1
        try:
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
        finally:
            self.waiting -= 1
        return connection


class RedisPool:
    """A redis-py blocking pool as a ResourcePool of connections."""

    def __init__(self, name: str, pool: BlockingConnectionPool) -> None:
        self.name = name
        self.pool = pool

    async def acquire(self) -> AbstractConnection:
        connection: AbstractConnection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        return connection

    async def release(self, resource: AbstractConnection) -> None:
        await self.pool.release(resource)

    def status(self) -> PoolStatus:
        total = self.pool.max_connections
        available = max(total - len(self.pool._in_use_connections), 0)
        return PoolStatus(available, total, int(getattr(self.pool, "waiting", 0)))
