"""Presence stores and the hub: many connections refreshed, or ended, at once."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from tests.support.backends import Backend
from ultrachat.bus.memory import MemoryBus
from ultrachat.realtime.connection import Connection
from ultrachat.realtime.presence import (
    REFRESH_BATCH,
    MemoryPresence,
    PresenceStore,
    RedisPresence,
)
from ultrachat.realtime.presence_hub import PresenceHub, presence_topic


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


async def test_remove_many_drops_exactly_those_connections_across_batches(
    backend: Backend,
) -> None:
    users = [f"u{i}" for i in range(REFRESH_BATCH + 7)]
    async with store_for(backend) as store:
        await store.refresh([(u, f"phone-{u}", "online") for u in users], ttl=30)
        await store.refresh([(u, f"laptop-{u}", "away") for u in users[:3]], ttl=30)
        await store.remove_many([(u, f"phone-{u}") for u in users])
        seen = await store.of(users)
    assert {u: s for u, s in seen.items() if s != "offline"} == {u: "away" for u in users[:3]}


async def test_a_users_entries_expire_with_their_key_in_redis(backend: Backend) -> None:
    if not backend.redis_url:
        pytest.skip("the in-process store has no keys: each entry carries its own expiry")
    client = Redis.from_url(backend.redis_url)
    prefix = f"{backend.redis_prefix}{secrets.token_hex(4)}:"
    store = RedisPresence(client, prefix)
    try:
        await store.set("u1", "c1", "online", ttl=30)
        # A node that dies stops refreshing: its users' hashes go with their TTL.
        assert 29 <= await client.ttl(prefix + "presence:u1") <= 31
        assert (await client.hget(prefix + "presence:u1", "c1") or b"").startswith(b"online|")
    finally:
        await client.delete(prefix + "presence:u1")
        await client.aclose()


class CountingStore(MemoryPresence):
    def __init__(self) -> None:
        super().__init__()
        self.removals: list[int] = []

    async def remove_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.removals.append(len(pairs))
        await super().remove_many(pairs)


async def test_connections_ending_together_are_removed_and_published_together() -> None:
    store, bus = CountingStore(), MemoryBus()
    hub = PresenceHub(bus, store, ttl=60)
    published: list[str] = []
    connections = [Connection(f"c{i}", f"u{i % 50}", "s", 10) for i in range(200)]
    kept = Connection("phone", "u0", "s", 10)  # u0 stays online on another device
    for connection in [*connections, kept]:
        await hub.connected(connection)
    for user in {c.user_id for c in connections}:
        await bus.subscribe(presence_topic(user), lambda _t, p: published.append(p.decode()))
    await asyncio.gather(*(hub.disconnected(c) for c in connections))
    # Batched, not one removal each (at most: the first alone, the rest while it ran).
    assert sum(store.removals) == 200 and len(store.removals) <= 2, store.removals
    offline = {p.split("|")[2] for p in published if '"offline"' in p}
    assert offline == {f"u{i}" for i in range(1, 50)}  # everyone but u0, once each
    assert (await store.of(["u0", "u1"])) == {"u0": "online", "u1": "offline"}
    await hub.stop()


class RefreshLog(MemoryPresence):
    """When each connection was refreshed, and how many went in each refresh."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshed: dict[str, list[float]] = {}
        self.rounds: list[int] = []

    async def refresh(self, entries: Sequence[tuple[str, str, str]], ttl: float) -> None:
        now = asyncio.get_running_loop().time()
        self.rounds.append(len(entries))
        for _, connection_id, _ in entries:
            self.refreshed.setdefault(connection_id, []).append(now)
        await super().refresh(entries, ttl)


async def test_the_refresh_is_spread_over_its_interval_and_reaches_each_entry_in_time() -> None:
    ttl = 0.6  # refreshed every ttl / 3 = 0.2 s, well before an entry expires
    store = RefreshLog()
    hub = PresenceHub(MemoryBus(), store, ttl=ttl)
    connections = [Connection(f"c{i}", f"u{i}", "s", 10) for i in range(200)]
    for connection in connections:
        await hub.connected(connection)
    await hub.disconnected(connections.pop())

    async def each_refreshed_twice() -> None:
        while not all(len(store.refreshed.get(c.id, ())) >= 2 for c in connections):
            await asyncio.sleep(0.02)

    await hub.start()
    try:
        await asyncio.wait_for(each_refreshed_twice(), 5)
    finally:
        await hub.stop()
    assert "c199" not in store.refreshed  # gone: not kept alive
    for connection in connections:
        times = store.refreshed[connection.id]
        assert all(b - a >= ttl / 3 * 0.9 for a, b in itertools.pairwise(times)), times
    # In rounds over a share each, not one burst of all 199.
    assert max(store.rounds) < len(connections) / 4, store.rounds
