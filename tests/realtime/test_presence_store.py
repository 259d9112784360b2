"""Presence stores: a node's refresh of many connections at once, on both backends."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from tests.support.backends import Backend
from ultrachat.realtime.presence import (
    REFRESH_BATCH,
    MemoryPresence,
    PresenceStore,
    RedisPresence,
)


@asynccontextmanager
async def store_for(backend: Backend) -> AsyncIterator[PresenceStore]:
    if not backend.redis_url:
        yield MemoryPresence()
        return
    client = Redis.from_url(backend.redis_url)
    prefix = f"{backend.redis_prefix}{secrets.token_hex(4)}:"
    try:
        yield RedisPresence(client, prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_refresh_sets_every_connection_across_batches(backend: Backend) -> None:
    users = [f"u{i}" for i in range(REFRESH_BATCH + 7)]  # more than one round trip
    async with store_for(backend) as store:
        await store.set("u0", "old", "online", ttl=0.001)  # expired by now: not counted
        entries = [(u, f"c-{u}", "away" if i % 2 else "online") for i, u in enumerate(users)]
        await store.refresh(entries, ttl=30)
        await store.refresh([("u1", "c-u1b", "online")], ttl=30)  # a second device
        seen = await store.of([*users, "nobody"])
    assert seen["u0"] == "online" and seen["u1"] == "online"  # the best of the user's devices
    last = len(users) - 1  # in the second round trip
    assert seen["u3"] == "away" and seen[users[last]] == ("away" if last % 2 else "online")
    assert seen["nobody"] == "offline"
    assert sum(s != "offline" for s in seen.values()) == len(users)
