"""A user's channel list primes membership entries, never over an invalidation: in this
node's L1 on every read, and in L2 (for the other nodes) when the list was loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.cache.test_tiered import Counting, nodes, requests
from tests.support.backends import Backend
from ultrachat.bus.memory import MemoryBus
from ultrachat.cache.config import CHANNEL_MEMBERSHIP, build_config
from ultrachat.cache.tiered import TieredCache
from ultrachat.chat.caching import ChatCache
from ultrachat.storage import new_id


@asynccontextmanager
async def node() -> AsyncIterator[TieredCache]:
    cache = TieredCache(build_config(), MemoryBus())
    await cache.start()
    try:
        yield cache
    finally:
        await cache.stop()


async def test_the_channel_list_makes_later_membership_checks_hits() -> None:
    user, first, second, other = new_id(), new_id(), new_id(), new_id()
    async with node() as tiered:
        chat = ChatCache(tiered)
        assert await chat.channel_ids_of(user, Counting([first, second])) == [first, second]
        hits = requests(CHANNEL_MEMBERSHIP, "hit")
        never = Counting(False)
        assert await chat.is_member(first, user, never) is True
        both = await chat.memberships([(first, user), (second, user)], never)  # type: ignore[arg-type]
        assert both == {(first, user), (second, user)}
        assert never.calls == 0
        assert requests(CHANNEL_MEMBERSHIP, "hit") == hits + 3
        # A channel not in the list is not assumed either way: it is loaded.
        asked = Counting(False)
        assert await chat.is_member(other, user, asked) is False
        assert asked.calls == 1


async def test_a_membership_invalidated_during_the_read_is_not_primed() -> None:
    user, channel = new_id(), new_id()
    async with node() as tiered:
        chat = ChatCache(tiered)

        async def read_then_they_leave() -> list[str]:
            stale = [channel]  # read before the leave committed
            await chat.changed(channel, 2, "member.left", user, {})
            return stale

        await chat.channel_ids_of(user, read_then_they_leave)
        asked = Counting(False)
        assert await chat.is_member(channel, user, asked) is False  # from the loader
        assert asked.calls == 1


async def test_a_loaded_channel_list_serves_other_nodes_membership_checks(
    backend: Backend,
) -> None:
    user, first, second = new_id(), new_id(), new_id()
    async with nodes(backend, 2, build_config()) as (a, b):
        await ChatCache(a).channel_ids_of(user, Counting([first, second]))
        on_b = ChatCache(b)
        never = Counting(False)
        assert await on_b.is_member(first, user, never) is True
        both = await on_b.memberships([(first, user), (second, user)], never)  # type: ignore[arg-type]
        assert both == {(first, user), (second, user)}
        assert never.calls == 0


async def test_a_leave_during_the_lists_load_keeps_its_memberships_out_of_l2(
    backend: Backend,
) -> None:
    user, channel = new_id(), new_id()
    async with nodes(backend, 2, build_config()) as (a, b):

        async def read_then_they_leave() -> list[str]:
            stale = [channel]  # read before the leave committed
            await ChatCache(b).changed(channel, 2, "member.left", user, {})
            return stale

        await ChatCache(a).channel_ids_of(user, read_then_they_leave)
        asked = Counting(False)
        assert await ChatCache(b).is_member(channel, user, asked) is False
        assert asked.calls == 1
        assert a.remote is not None
        [(raw, _)] = await a.remote.get_many(CHANNEL_MEMBERSHIP, [f"{channel}:{user}"])
        assert raw == b"false"  # B's load, not the stale list's
