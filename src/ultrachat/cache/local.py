"""L1: every node's in-process tier, bounded per resource and in total.

One least-recently-used ordering per resource, plus a global access tick so that, past the
global ``max_size``, the least recently used entry of *any* resource goes. Values are kept as
Python objects (no decoding on a hit); callers must treat them as read-only.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ultrachat.cache.config import CacheConfig, ResourceConfig


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What ``get`` returns for an absent (or expired) entry; a cached ``None`` is a value."""


@dataclass(slots=True)
class _Entry:
    expires_at: float
    tick: int
    value: Any


class LocalTier:
    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._stores: dict[str, OrderedDict[str, _Entry]] = {
            name: OrderedDict() for name in config.resources
        }
        self._tick = 0
        self._size = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return self._size

    def size_of(self, resource: str) -> int:
        return len(self._stores[resource])

    def get(self, resource: str, key: str) -> Any:
        store = self._stores[resource]
        entry = store.get(key)
        if entry is None:
            return MISSING
        if entry.expires_at <= self._clock():
            del store[key]
            self._size -= 1
            self.expirations += 1
            return MISSING
        store.move_to_end(key)
        self._tick += 1
        entry.tick = self._tick
        return entry.value

    def set(self, resource: str, key: str, value: Any) -> None:
        config = self._config.resource(resource)
        if config.max_size == 0 or self._config.max_size == 0:
            return
        store = self._stores[resource]
        now = self._clock()
        expires_at = now + config.ttl if config.expires else math.inf
        self._tick += 1
        if key in store:
            store.move_to_end(key)
        else:
            self._size += 1
        store[key] = _Entry(expires_at, self._tick, value)
        self._trim(store, config, now)

    def replace(self, resource: str, key: str, value: Any, *, renew: bool = False) -> bool:
        """Swap a live entry's value. It keeps its expiry, so that it still expires ``ttl``
        after it was loaded (which bounds changes no write reports), unless ``renew``: the
        caller proved the new value current, and its ``ttl`` starts again."""
        entry = self._stores[resource].get(key)
        now = self._clock()
        if entry is None or entry.expires_at <= now:
            return False
        entry.value = value
        if renew and entry.expires_at != math.inf:
            entry.expires_at = now + self._config.resource(resource).ttl
        return True

    def delete(self, resource: str, key: str) -> bool:
        if self._stores[resource].pop(key, None) is None:
            return False
        self._size -= 1
        return True

    def clear(self) -> None:
        for store in self._stores.values():
            store.clear()
        self._size = 0

    def _trim(self, store: OrderedDict[str, _Entry], config: ResourceConfig, now: float) -> None:
        if config.expires:
            # Expired entries at the cold end go first: they would never be served again.
            while store:
                coldest = next(iter(store.values()))
                if coldest.expires_at > now:
                    break
                store.popitem(last=False)
                self._size -= 1
                self.expirations += 1
        if config.bounded:
            while len(store) > config.max_size:
                store.popitem(last=False)
                self._size -= 1
                self.evictions += 1
        while self._size > self._config.max_size:
            self._evict_globally_coldest()

    def _evict_globally_coldest(self) -> None:
        coldest: OrderedDict[str, _Entry] | None = None
        coldest_tick = math.inf
        for store in self._stores.values():
            if store:
                tick = next(iter(store.values())).tick
                if tick < coldest_tick:
                    coldest, coldest_tick = store, tick
        assert coldest is not None
        coldest.popitem(last=False)
        self._size -= 1
        self.evictions += 1
