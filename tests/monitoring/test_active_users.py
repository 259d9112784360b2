"""Active users: once per user across nodes, gone 5 minutes after their last sign of life."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.backends import REDIS_URL, redis_prefix
from ultrachat.monitoring.active_users import (
    ActiveUsers,
    ActiveUserStore,
    MemoryActiveUsers,
    RedisActiveUsers,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def stores(
    request: pytest.FixtureRequest, redis: Redis
) -> AsyncIterator[tuple[ActiveUserStore, ActiveUserStore]]:
    """The store as two nodes see it: one dict (embedded), or one Redis prefix."""
    if request.param == "memory":
        store = MemoryActiveUsers()
        yield store, store
        return
    async with redis_prefix() as prefix:
        yield RedisActiveUsers(redis, prefix), RedisActiveUsers(redis, prefix)


async def test_a_user_counts_once_across_nodes_and_expires(
    stores: tuple[ActiveUserStore, ActiveUserStore],
) -> None:
    clock = Clock()
    connected_on_b: set[str] = set()
    node_a = ActiveUsers(stores[0], clock=clock)
    node_b = ActiveUsers(stores[1], lambda: connected_on_b, clock=clock)

    for _ in range(3):
        node_a.seen("alice")
    node_b.seen("alice")  # the same user through another node
    node_b.seen("bob")
    assert await node_a.flush() == 1
    assert await node_b.flush() == 2
    assert await node_a.flush() == 2  # each node counts every node's users

    clock.now += 240
    node_a.seen("bob")
    assert await node_a.flush() == 2
    clock.now += 61  # alice: 301 s since her last request
    assert await node_a.flush() == 1
    clock.now += 240  # bob: 301 s
    assert await node_b.flush() == 0


async def test_a_live_connection_keeps_its_user_active(
    stores: tuple[ActiveUserStore, ActiveUserStore],
) -> None:
    clock = Clock()
    connected = {"carol"}
    node = ActiveUsers(stores[0], lambda: connected, clock=clock)
    assert await node.flush() == 1
    for _ in range(60):  # 10 minutes of flushes while connected
        clock.now += 10
        assert await node.flush() == 1
    connected.clear()
    clock.now += 240
    assert await node.flush() == 1
    clock.now += 60  # at most 5 minutes after her last refresh
    assert await node.flush() == 0


async def test_a_failed_flush_keeps_the_batch() -> None:
    class Broken:
        fail = True

        async def record(self, user_ids: object, now: float, window: float) -> int:
            if self.fail:
                raise ConnectionError("down")
            return len(user_ids)  # type: ignore[arg-type]

    store = Broken()
    node = ActiveUsers(store)
    node.seen("dave")
    with pytest.raises(ConnectionError):
        await node.flush()
    store.fail = False
    assert await node.flush() == 1
