"""The two-tier cache: single flight, L1 and L2, invalidation across nodes, metrics.

"Nodes" here are TieredCache instances in this process, each with its own bus connection
(and Redis client) when the backend has Redis; tests/cache/test_two_nodes.py runs real
server processes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from tests.support.backends import Backend
from ultrachat.bus.memory import MemoryBus
from ultrachat.bus.redis import RedisBus
from ultrachat.cache.config import CacheConfig, ResourceConfig
from ultrachat.cache.local import MISSING
from ultrachat.cache.remote import RedisTier
from ultrachat.cache.tiered import TieredCache

CONFIG = CacheConfig(
    global_ttl=3600,
    max_size=1000,
    resources={
        "t-both": ResourceConfig(60, 100, "both"),
        "t-time": ResourceConfig(30, 100, "time"),
        "t-size": ResourceConfig(30, 100, "size"),
    },
)


def requests(resource: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_requests_total", {"resource": resource, "result": result}
    )
    return value or 0.0


def tier_hits(resource: str, tier: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_tier_hits_total", {"resource": resource, "tier": tier}
    )
    return value or 0.0


class Counting:
    """A loader that counts its calls, and can be held until released."""

    def __init__(self, value: Any = "loaded") -> None:
        self.value = value
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def hold(self) -> None:
        self.gate = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(0.02)
        return self.value


@asynccontextmanager
async def nodes(
    backend: Backend, count: int, config: CacheConfig = CONFIG
) -> AsyncIterator[list[TieredCache]]:
    """``count`` caches sharing one Redis prefix (PostgreSQL backend), or one in-process
    cache on a MemoryBus (SQLite backend: more than one node is skipped)."""
    async with AsyncExitStack() as stack:
        if not backend.redis_url:
            if count > 1:
                pytest.skip("several nodes need Redis; this backend runs one process")
            cache = TieredCache(config, MemoryBus())
            await cache.start()
            stack.push_async_callback(cache.stop)
            yield [cache]
            return
        prefix = f"{backend.redis_prefix}{secrets.token_hex(4)}:"
        caches = []
        for _ in range(count):
            client = Redis.from_url(backend.redis_url)
            stack.push_async_callback(client.aclose)
            bus = RedisBus(client, prefix)
            await bus.start()
            stack.push_async_callback(bus.close)
            cache = TieredCache(config, bus, RedisTier(client, prefix, config))
            await cache.start()
            stack.push_async_callback(cache.stop)
            caches.append(cache)
        yield caches


async def test_fifty_concurrent_gets_of_one_key_load_it_once(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        load = Counting({"n": 1})
        hits, misses = requests("t-both", "hit"), requests("t-both", "miss")
        values = await asyncio.gather(*(cache.get("t-both", "hot", load) for _ in range(50)))
        assert load.calls == 1
        assert values == [{"n": 1}] * 50
        assert requests("t-both", "miss") - misses == 1
        assert requests("t-both", "hit") - hits == 49
        # And afterwards it is a plain L1 hit.
        assert await cache.get("t-both", "hot", load) == {"n": 1}
        assert load.calls == 1


async def test_a_failed_load_fails_every_waiter_and_caches_nothing(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        calls = 0

        async def broken() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            raise RuntimeError("database down")

        results = await asyncio.gather(
            *(cache.get("t-both", "k", broken) for _ in range(10)), return_exceptions=True
        )
        assert calls == 1
        assert all(isinstance(r, RuntimeError) for r in results)
        assert cache.local.get("t-both", "k") is MISSING
        assert await cache.get("t-both", "k", Counting("fine")) == "fine"


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        load = Counting("v")
        load.hold()
        first = asyncio.create_task(cache.get("t-both", "k", load))
        await load.entered.wait()
        second = asyncio.create_task(cache.get("t-both", "k", load))
        await asyncio.sleep(0)
        first.cancel()
        assert load.gate is not None
        load.gate.set()
        assert await second == "v"
        assert load.calls == 1


async def test_an_invalidation_during_a_load_keeps_its_value_out(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        old = Counting("old")
        old.hold()
        before = asyncio.create_task(cache.get("t-both", "k", old))
        await old.entered.wait()
        await cache.invalidate([("t-both", "k")])  # the write committed meanwhile
        # A lookup after the invalidation does not join the stale load: it loads anew.
        assert await cache.get("t-both", "k", Counting("new")) == "new"
        assert old.gate is not None
        old.gate.set()
        assert await before == "old"  # concurrent with the write: either answer is fair
        assert await cache.get("t-both", "k", Counting("unused")) == "new"
        if cache.remote is not None:
            [(raw, _)] = await cache.remote.get_many("t-both", ["k"])
            assert raw == b'"new"'


def warms(resource: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_warms_total", {"resource": resource, "result": result}
    )
    return value or 0.0


async def test_a_warm_loads_once_without_counting_a_lookup(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        load = Counting("ready")
        hits, misses = requests("t-both", "hit"), requests("t-both", "miss")
        loaded, present = warms("t-both", "loaded"), warms("t-both", "present")
        await cache.warm("t-both", "k", load)
        await cache.warm("t-both", "k", load)  # held already: nothing to load
        assert load.calls == 1
        assert (warms("t-both", "loaded") - loaded, warms("t-both", "present") - present) == (1, 1)
        assert (requests("t-both", "hit"), requests("t-both", "miss")) == (hits, misses)
        assert await cache.get("t-both", "k", Counting("unused")) == "ready"
        assert requests("t-both", "hit") - hits == 1
        if cache.remote is not None:
            [(raw, _)] = await cache.remote.get_many("t-both", ["k"])
            assert raw == b'"ready"'


async def test_a_lookup_during_a_warm_joins_it(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        load = Counting("ready")
        load.hold()
        warming = asyncio.create_task(cache.warm("t-both", "k", load))
        await load.entered.wait()
        lookup = asyncio.create_task(cache.get("t-both", "k", Counting("unused")))
        await asyncio.sleep(0)
        assert load.gate is not None
        load.gate.set()
        assert await lookup == "ready"
        await warming
        assert load.calls == 1


async def test_a_failed_warm_raises_nothing_and_caches_nothing(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async with nodes(backend, 1) as (cache,):

        async def broken() -> str:
            raise RuntimeError("database down")

        await cache.warm("t-both", "k", broken)
        assert "warming t-both k failed" in caplog.text
        assert cache.local.get("t-both", "k") is MISSING
        assert await cache.get("t-both", "k", Counting("later")) == "later"


async def test_a_warm_on_one_node_serves_the_others_from_l2(backend: Backend) -> None:
    async with nodes(backend, 2) as (a, b):
        await a.warm("t-both", "k", Counting("ready"))
        on_b = Counting("unused")
        assert await b.get("t-both", "k", on_b) == "ready"
        assert on_b.calls == 0


async def test_values_round_trip_through_l2_as_json(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        if cache.remote is None:
            pytest.skip("no L2 without Redis")
        value = {"a": [1, 2.5, None, True], "b": {"c": "ü"}}
        await cache.get("t-both", "json", Counting(value))
        cache.local.clear()
        assert await cache.get("t-both", "json", Counting("unused")) == value


async def test_get_many_loads_only_what_no_tier_holds(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        asked: list[list[str]] = []

        async def load_many(keys: list[str]) -> dict[str, int]:
            asked.append(sorted(keys))
            return {k: int(k) for k in keys}

        assert await cache.get_many("t-both", ["1", "2"], load_many) == {"1": 1, "2": 2}
        assert await cache.get_many("t-both", ["1", "2", "3"], load_many) == {
            "1": 1,
            "2": 2,
            "3": 3,
        }
        assert asked == [["1", "2"], ["3"]]
        await cache.invalidate([("t-both", "2")])
        await cache.get_many("t-both", ["1", "2", "3"], load_many)
        assert asked[-1] == ["2"]


async def test_a_refused_value_counts_as_a_miss_and_is_replaced(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        await cache.get("t-both", "page", Counting({"limit": 10}))
        bigger = Counting({"limit": 50})
        value = await cache.get("t-both", "page", bigger, lambda v: v["limit"] >= 50)
        assert value == {"limit": 50} and bigger.calls == 1
        assert await cache.get("t-both", "page", Counting({"limit": 1})) == {"limit": 50}


async def test_l2_serves_a_node_that_never_loaded(backend: Backend) -> None:
    async with nodes(backend, 2) as (a, b):
        await a.get("t-both", "shared", Counting("from the database"))
        before = tier_hits("t-both", "l2")
        on_b = Counting("unused")
        assert await b.get("t-both", "shared", on_b) == "from the database"
        assert on_b.calls == 0
        assert tier_hits("t-both", "l2") - before == 1
        # B keeps it in its L1 from then on.
        assert b.local.get("t-both", "shared") == "from the database"


async def test_an_invalidation_has_reached_every_node_when_it_returns(backend: Backend) -> None:
    async with nodes(backend, 2) as (a, b):
        await a.get("t-both", "k", Counting("v1"))
        await b.get("t-both", "k", Counting("unused"))
        assert b.local.get("t-both", "k") == "v1"
        await a.invalidate([("t-both", "k")])
        # No waiting, no polling: B dropped it before A's invalidate returned.
        assert b.local.get("t-both", "k") is MISSING
        assert a.local.get("t-both", "k") is MISSING
        assert a.remote is not None
        [(raw, _)] = await a.remote.get_many("t-both", ["k"])
        assert raw is None
        assert await b.get("t-both", "k", Counting("v2")) == "v2"
        assert await a.get("t-both", "k", Counting("unused")) == "v2"


async def test_a_load_that_read_before_a_write_cannot_put_it_in_l2(backend: Backend) -> None:
    async with nodes(backend, 2) as (a, b):
        stale = Counting("stale")
        stale.hold()
        on_b = asyncio.create_task(b.get("t-both", "k", stale))
        await stale.entered.wait()  # B read L2's version and the database: "stale"
        await a.invalidate([("t-both", "k")])  # A's write commits and invalidates
        assert stale.gate is not None
        stale.gate.set()
        assert await on_b == "stale"
        assert a.remote is not None
        [(raw, _)] = await a.remote.get_many("t-both", ["k"])
        assert raw is None  # the version moved: B's value was refused
        assert b.local.get("t-both", "k") is MISSING
        assert await a.get("t-both", "k", Counting("fresh")) == "fresh"


async def test_l2_expiry_follows_the_strategy(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        if cache.remote is None:
            pytest.skip("no L2 without Redis")
        for resource in ("t-both", "t-time", "t-size"):
            await cache.get(resource, "ttl", Counting(1))
        client: Redis = cache.remote._client
        prefix = cache.remote._values
        ttls = {r: await client.pttl(f"{prefix}{r}:ttl") for r in ("t-both", "t-time", "t-size")}
        assert 59_000 < ttls["t-both"] <= 60_000
        assert 29_000 < ttls["t-time"] <= 30_000
        # ``size`` never expires in L1; in L2 the global TTL is its backstop.
        assert 3_599_000 < ttls["t-size"] <= 3_600_000


class FlakyBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.up = True

    @property
    def healthy(self) -> bool:
        return self.up


async def test_a_node_that_cannot_hear_invalidations_stops_using_its_l1() -> None:
    bus = FlakyBus()
    cache = TieredCache(CONFIG, bus)
    await cache.start()
    try:
        await cache.get("t-both", "k", Counting("before"))
        bus.up = False
        during = Counting("during the outage")
        assert await cache.get("t-both", "k", during) == "during the outage"
        assert await cache.get("t-both", "k", during) == "during the outage"
        assert during.calls == 2  # no L1 while deaf
        bus.up = True
        # Back: L1 was emptied (invalidations may have been missed), then is used again.
        after = Counting("after")
        assert await cache.get("t-both", "k", after) == "after"
        assert await cache.get("t-both", "k", after) == "after"
        assert after.calls == 1
    finally:
        await cache.stop()


async def test_a_disabled_cache_always_loads() -> None:
    cache = TieredCache(CONFIG, MemoryBus(), enabled=False)
    load = Counting("v")
    for _ in range(3):
        assert await cache.get("t-both", "k", load) == "v"
    assert load.calls == 3
    await cache.invalidate([("t-both", "k")])


async def test_unknown_resources_in_invalidations_are_ignored() -> None:
    cache = TieredCache(CONFIG, MemoryBus())
    await cache.invalidate([("no-such-resource", "k")])
