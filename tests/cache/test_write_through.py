"""Write-through of history heads: the apply rule (``advanced``), and ``TieredCache.update``
in each tier, against loads under way and across nodes.

The tier tests use the ``nodes`` of test_tiered.py (in-process caches; several of them, and
L2, need the PostgreSQL + Redis backend). The heads here are the shape chat/caching.py
stores: {"limit", "through", "messages"}, each message reduced to its seq.
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from tests.cache.test_local import Clock, tier
from tests.cache.test_tiered import Counting, nodes, requests, tier_hits
from tests.support.backends import Backend
from ultrachat.bus.memory import MemoryBus
from ultrachat.cache.config import CHANNEL_HISTORY_HEAD, ResourceConfig, build_config
from ultrachat.cache.local import MISSING
from ultrachat.cache.tiered import TieredCache
from ultrachat.chat.caching import ChatCache, advanced
from ultrachat.storage import new_id

R = "t-both"


def head(through: int | None, *seqs: int, limit: int = 5) -> dict[str, Any]:
    return {"limit": limit, "through": through, "messages": [{"seq": s} for s in seqs]}


def seqs(value: dict[str, Any]) -> list[int]:
    return [m["seq"] for m in value["messages"]]


def created(first: int, last: int) -> functools.partial[dict[str, Any] | None]:
    """The change a batch of new messages ``first``..``last`` makes."""
    messages = [{"seq": s} for s in range(first, last + 1)]
    return functools.partial(advanced, messages=messages, first_seq=first, last_seq=last)


# The apply rule


def test_messages_right_after_the_head_are_appended() -> None:
    assert created(11, 12)(head(10, 9, 10)) == head(12, 9, 10, 11, 12)


def test_appending_keeps_the_newest_page_size() -> None:
    grown = created(11, 13)(head(10, 7, 8, 9, 10, limit=4))
    assert grown == head(13, 10, 11, 12, 13, limit=4)


def test_a_gap_refuses_the_change() -> None:
    # Seq 11 went to an event this head never saw (an edit, another node's batch).
    assert created(12, 12)(head(10, 10)) is None


def test_a_head_of_unknown_currency_refuses_the_change() -> None:
    assert created(11, 11)(head(None, 10)) is None
    assert created(11, 11)({"limit": 5, "messages": []}) is None  # stored before versions


def test_a_head_loaded_after_the_events_is_kept_as_it_is() -> None:
    loaded_later = head(13, 11, 12, 13)
    assert created(11, 12)(loaded_later) is loaded_later
    # Current through part of the range only: not a state any commit leaves; refused.
    assert created(11, 13)(head(12, 11, 12)) is None


def test_an_event_that_changes_no_message_moves_through_on() -> None:
    moved = advanced(head(10, 9, 10), messages=(), first_seq=11, last_seq=11)
    assert moved == head(11, 9, 10)
    assert advanced(head(10, 10), messages=(), first_seq=12, last_seq=12) is None


def test_the_cached_head_is_never_modified() -> None:
    cached = head(10, 9, 10)
    before = orjson.dumps(cached)
    created(11, 11)(cached)
    advanced(cached, messages=(), first_seq=11, last_seq=11)
    assert orjson.dumps(cached) == before


# L1


def test_l1_replace_keeps_the_expiry_of_the_load() -> None:
    local, clock = tier(r=ResourceConfig(300, 10, "both"))
    local.set("r", "k", "loaded")
    clock.advance(200)
    assert local.replace("r", "k", "updated")
    assert local.get("r", "k") == "updated"
    clock.advance(100)
    assert local.get("r", "k") is MISSING
    assert not local.replace("r", "k", "nothing to replace")
    assert local.get("r", "k") is MISSING


def test_l1_replace_with_renew_starts_the_ttl_again() -> None:
    local, clock = tier(r=ResourceConfig(300, 10, "both"))
    local.set("r", "k", "loaded")
    clock.advance(200)
    assert local.replace("r", "k", "proven current", renew=True)
    clock.advance(299)
    assert local.get("r", "k") == "proven current"
    clock.advance(1)
    assert local.get("r", "k") is MISSING


# TieredCache.update


async def warm(cache: TieredCache, value: dict[str, Any], key: str = "h") -> None:
    assert await cache.get(R, key, Counting(value)) == value


async def in_l2(cache: TieredCache, key: str = "h") -> Any:
    assert cache.remote is not None
    [(raw, _)] = await cache.remote.get_many(R, [key])
    return None if raw is None else orjson.loads(raw)


async def test_an_update_is_applied_in_place_and_read_without_a_load(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        await warm(cache, head(10, 9, 10))
        await cache.update(R, {"h": created(11, 12)})
        assert cache.local.get(R, "h") == head(12, 9, 10, 11, 12)
        if cache.remote is not None:
            assert await in_l2(cache) == head(12, 9, 10, 11, 12)
        hits, misses = requests(R, "hit"), requests(R, "miss")
        unused = Counting("unused")
        assert await cache.get(R, "h", unused) == head(12, 9, 10, 11, 12)
        assert unused.calls == 0
        assert (requests(R, "hit") - hits, requests(R, "miss") - misses) == (1, 0)


async def test_a_refused_update_invalidates_every_tier(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        await warm(cache, head(10, 10))
        await cache.update(R, {"h": created(12, 12)})  # a gap
        assert cache.local.get(R, "h") is MISSING
        if cache.remote is not None:
            assert await in_l2(cache) is None
        assert await cache.get(R, "h", Counting(head(12, 10, 12))) == head(12, 10, 12)


async def test_one_update_takes_each_key_on_its_own(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        await warm(cache, head(10, 10), "current")
        await warm(cache, head(10, 10), "behind")
        await cache.update(R, {"current": created(11, 11), "behind": created(13, 13)})
        assert cache.local.get(R, "current") == head(11, 10, 11)
        assert cache.local.get(R, "behind") is MISSING
        if cache.remote is not None:
            assert await in_l2(cache, "current") == head(11, 10, 11)
            assert await in_l2(cache, "behind") is None


async def test_an_update_of_an_absent_key_leaves_it_absent(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        await cache.update(R, {"nothing": created(1, 1)})
        assert cache.local.get(R, "nothing") is MISSING
        if cache.remote is not None:
            assert await in_l2(cache, "nothing") is None


def updates(tier: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_updates_total", {"resource": R, "tier": tier, "result": result}
    )
    return value or 0.0


async def test_each_update_is_counted_by_what_it_found(backend: Backend) -> None:
    # Why heads go missing under load is read off these: nothing cached, or a gap.
    async with nodes(backend, 1) as (cache,):
        await warm(cache, head(10, 10), "current")
        await warm(cache, head(10, 10), "behind")
        tiers = ["l1"] if cache.remote is None else ["l1", "l2"]
        results = ("applied", "absent", "refused")
        before = {(t, r): updates(t, r) for t in tiers for r in results}
        await cache.update(
            R, {"current": created(11, 11), "behind": created(13, 13), "nothing": created(1, 1)}
        )
        for t in tiers:
            assert [updates(t, r) - before[t, r] for r in results] == [1, 1, 1], t


async def test_a_load_begun_before_an_update_cannot_store_an_older_head(
    backend: Backend,
) -> None:
    async with nodes(backend, 1) as (cache,):
        await warm(cache, head(10, 10, limit=1))
        # A lookup for a longer page refuses the cached head and loads; it read the database
        # before the batch 11..12 committed.
        old = Counting(head(10, 9, 10, limit=5))
        old.hold()
        lookup = asyncio.create_task(
            cache.get(R, "h", old, lambda value: value["limit"] >= 5),
        )
        await old.entered.wait()
        await cache.update(R, {"h": created(11, 12)})
        assert old.gate is not None
        old.gate.set()
        assert seqs(await lookup) == [9, 10]  # concurrent with the write: its answer is fair
        # Neither tier took the older head over the newer one.
        assert cache.local.get(R, "h") == head(12, 12, limit=1)
        if cache.remote is not None:
            assert await in_l2(cache) == head(12, 12, limit=1)


async def test_a_load_begun_before_an_update_of_an_absent_key_cannot_store(
    backend: Backend,
) -> None:
    async with nodes(backend, 1) as (cache,):
        stale = Counting(head(10, 10))
        stale.hold()
        lookup = asyncio.create_task(cache.get(R, "h", stale))
        await stale.entered.wait()
        await cache.update(R, {"h": created(11, 11)})  # nothing cached: invalidated
        assert stale.gate is not None
        stale.gate.set()
        assert await lookup == head(10, 10)
        assert cache.local.get(R, "h") is MISSING
        if cache.remote is not None:
            assert await in_l2(cache) is None  # the version moved: the store was refused
        assert await cache.get(R, "h", Counting(head(11, 10, 11))) == head(11, 10, 11)


@pytest.mark.parametrize("renew", [False, True])
async def test_l2_keeps_the_ttl_of_the_load_unless_renewed(backend: Backend, renew: bool) -> None:
    async with nodes(backend, 1) as (cache,):
        if cache.remote is None:
            pytest.skip("no L2 without Redis")
        await warm(cache, head(10, 10))
        client = cache.remote._client
        name = f"{cache.remote._values}{R}:h"
        await client.pexpire(name, 5_000)
        await cache.update(R, {"h": created(11, 11)}, renew=renew)
        assert await in_l2(cache) == head(11, 10, 11)
        ttl = await client.pttl(name)
        if renew:
            assert 5_000 < ttl <= 60_000  # t-both's TTL, from now
        else:
            assert 0 < ttl <= 5_000


async def test_l2_replaces_only_the_value_it_read(backend: Backend) -> None:
    async with nodes(backend, 1) as (cache,):
        if cache.remote is None:
            pytest.skip("no L2 without Redis")
        remote = cache.remote
        await warm(cache, head(10, 10))
        [(read, _)] = await remote.get_many(R, ["h"])
        assert read is not None
        # Another writer replaced it after it was read: the compare-and-set refuses and
        # deletes rather than store a successor of a value that is gone.
        assert await remote.replace_many(R, [("h", read, b'"first"')]) == [True]
        assert await remote.replace_many(R, [("h", read, b'"second"')]) == [False]
        assert await in_l2(cache) is None


async def test_other_nodes_drop_the_key_and_read_the_update_from_l2(backend: Backend) -> None:
    async with nodes(backend, 2) as (a, b):
        await warm(a, head(10, 10))
        await warm(b, head(10, 10))  # an L2 hit: B holds it in L1 too
        await a.update(R, {"h": created(11, 11)})
        # Without acknowledgements: allow the bus's delivery delay.
        for _ in range(100):
            if b.local.get(R, "h") is MISSING:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("B kept its L1 head after A's update")
        before = tier_hits(R, "l2")
        unused = Counting("unused")
        assert await b.get(R, "h", unused) == head(11, 10, 11)
        assert unused.calls == 0 and tier_hits(R, "l2") - before == 1


async def test_two_nodes_committing_to_one_channel_never_lose_a_message(
    backend: Backend,
) -> None:
    """A commits 11..12 and B 13..14 (the database orders them), and their updates race in
    every order. Whatever each tier ends with is either absent or the whole truth."""
    truth = head(14, 10, 11, 12, 13, 14)
    async with nodes(backend, 2) as (a, b):
        rng = random.Random(7)
        for round_ in range(20):
            key = f"race{round_}"
            await warm(a, head(10, 10), key)
            await warm(b, head(10, 10), key)
            updates = [a.update(R, {key: created(11, 12)}), b.update(R, {key: created(13, 14)})]
            rng.shuffle(updates)
            await asyncio.gather(*updates)
            await asyncio.sleep(0.02)  # each node's drop reaches the other
            assert await in_l2(a, key) in (None, truth)
            for cache in (a, b):
                assert cache.local.get(R, key) in (MISSING, truth)
                assert await cache.get(R, key, Counting(truth)) == truth


async def test_a_head_kept_current_by_sends_outlives_its_ttl() -> None:
    # Its TTL bounds changes no event reports; seqs running on without a gap prove it
    # current, so a channel's head stays while the channel is active, and only then.
    clock = Clock()
    cache = TieredCache(build_config(), MemoryBus(), clock=clock)
    chat = ChatCache(cache)
    channel = new_id()
    loads = 0

    async def load(limit: int) -> tuple[list[dict[str, Any]], int | None]:
        nonlocal loads
        loads += 1
        return [{"seq": 1}], 1

    ttl = build_config().resource(CHANNEL_HISTORY_HEAD).ttl
    assert await chat.history_head(channel, 50, load) == [{"seq": 1}]
    for seq in (2, 3, 4):
        clock.advance(ttl * 0.8)
        await chat.messages_created({channel: [{"seq": seq}]})
    assert [m["seq"] for m in await chat.history_head(channel, 50, load)] == [1, 2, 3, 4]
    assert loads == 1  # 2.4 TTLs after its load
    clock.advance(ttl)  # a TTL with no event
    await chat.history_head(channel, 50, load)
    assert loads == 2
