"""In-process cache: an LRU dict with per-entry expiry. Single node only.

With this cache each process has its own view; run several processes or machines only with
``ULTRACHAT_REDIS_URL`` set, which swaps in the Redis cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence


class MemoryCache:
    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries

    def _lookup(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def get(self, key: str) -> bytes | None:
        return self._lookup(key, time.monotonic())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = time.monotonic()
        return [self._lookup(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def ping(self) -> bool:
        return True
