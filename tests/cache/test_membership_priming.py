"""A user's channel list primes this node's membership entries, never over an invalidation.

Priming is L1 only (this node's memory), so one in-process cache shows all of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.cache.test_tiered import Counting, requests
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
