"""Presence: online, away or offline, aggregated over all of a user's devices and nodes.

Each connection records its own status with an expiry; a user's presence is the best status
among their unexpired connections (online > away > offline). Nodes refresh the entries of
their live connections, so a node that dies takes its users offline within one TTL without
anyone having to notice. Changes are pushed as ephemeral ``presence`` frames (no seq).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

STATUSES = ("online", "away")
REFRESH_BATCH = 500  # connections per pipelined round trip when refreshing
_RANK = {"offline": 0, "away": 1, "online": 2}


def best(statuses: Sequence[str]) -> str:
    return max(statuses, key=lambda s: _RANK.get(s, 0), default="offline")


Entry = tuple[str, str, str]
"""(user_id, connection_id, status)"""


class PresenceStore(Protocol):
    async def set(self, user_id: str, connection_id: str, status: str, ttl: float) -> None: ...

    async def refresh(self, entries: Sequence[Entry], ttl: float) -> None:
        """``set`` for many connections at once (a node's periodic refresh)."""
        ...

    async def remove(self, user_id: str, connection_id: str) -> None: ...

    async def remove_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``remove`` for many (user_id, connection_id) at once."""
        ...

    async def of(self, user_ids: Sequence[str]) -> dict[str, str]: ...


class MemoryPresence:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, tuple[str, float]]] = {}

    async def set(self, user_id: str, connection_id: str, status: str, ttl: float) -> None:
        self._entries.setdefault(user_id, {})[connection_id] = (status, time.time() + ttl)

    async def refresh(self, entries: Sequence[Entry], ttl: float) -> None:
        for user_id, connection_id, status in entries:
            await self.set(user_id, connection_id, status, ttl)

    async def remove(self, user_id: str, connection_id: str) -> None:
        entries = self._entries.get(user_id)
        if entries is not None:
            entries.pop(connection_id, None)
            if not entries:
                del self._entries[user_id]

    async def remove_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        for user_id, connection_id in pairs:
            await self.remove(user_id, connection_id)

    async def of(self, user_ids: Sequence[str]) -> dict[str, str]:
        now = time.time()
        return {
            user_id: best(
                [s for s, expires in self._entries.get(user_id, {}).values() if expires > now]
            )
            for user_id in user_ids
        }


# KEYS: the users' hashes; ARGV: the key TTL in seconds, then connection id and value for
# each key. One command for a whole batch: redis-py spends about 28 µs of the node's CPU to
# queue and parse the two commands of each connection in a pipeline, 3 µs for its share of
# one script call (docs/benchmarks.md), and the refresh runs for every connection.
_SET_ENTRIES = """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], ARGV[2 * i], ARGV[2 * i + 1])
  redis.call('EXPIRE', KEYS[i], ttl)
end
return #KEYS
"""

# KEYS: the users' hashes; ARGV: the connection id to drop from each.
_REMOVE_ENTRIES = """
for i = 1, #KEYS do
  redis.call('HDEL', KEYS[i], ARGV[i])
end
return #KEYS
"""


class RedisPresence:
    """One hash per user: field = connection id, value = ``status|expires_at``.

    Writes go through Lua scripts touching many users' keys at once, so this needs one Redis
    (or a primary with replicas), as the rest of UltraChat's Redis use does; Redis Cluster
    would refuse keys from several slots in one script."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "presence:"
        self._set_entries = client.register_script(_SET_ENTRIES)
        self._remove_entries = client.register_script(_REMOVE_ENTRIES)

    async def set(self, user_id: str, connection_id: str, status: str, ttl: float) -> None:
        await self.refresh([(user_id, connection_id, status)], ttl)

    async def refresh(self, entries: Sequence[Entry], ttl: float) -> None:
        """One script call per ``REFRESH_BATCH`` connections, not two commands each: a node
        with 10,000 connections refreshes in 20 calls every interval."""
        expires = f"{time.time() + ttl:.3f}"
        key_ttl = int(ttl) + 1
        for start in range(0, len(entries), REFRESH_BATCH):
            batch = entries[start : start + REFRESH_BATCH]
            args: list[str | int] = [key_ttl]
            for _, connection_id, status in batch:
                args += (connection_id, f"{status}|{expires}")
            await self._set_entries(keys=[self._prefix + user for user, _, _ in batch], args=args)

    async def remove(self, user_id: str, connection_id: str) -> None:
        await self._client.hdel(self._prefix + user_id, connection_id)

    async def remove_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        for start in range(0, len(pairs), REFRESH_BATCH):
            batch = pairs[start : start + REFRESH_BATCH]
            await self._remove_entries(
                keys=[self._prefix + user for user, _ in batch],
                args=[connection for _, connection in batch],
            )

    async def of(self, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.hgetall(self._prefix + user_id)
            hashes = await pipe.execute()
        now = time.time()
        result = {}
        for user_id, entries in zip(user_ids, hashes, strict=True):
            live = []
            for value in entries.values():
                status, _, expires = value.decode().partition("|")
                if float(expires or 0) > now:
                    live.append(status)
            result[user_id] = best(live)
        return result
