"""Caches.

- ``Cache`` (base.py, memory.py, redis.py): a small key-value store with per-entry TTLs, for
  shared state that must never be evicted (session revocations).
- ``TieredCache`` (tiered.py): the plan's CacheConfig made real, for the hot read paths: an
  in-process L1 (local.py) on every node and Redis as L2 (remote.py), invalidated on every
  node through the bus. docs/cache.md describes it.
"""

from ultrachat.cache.base import Cache

__all__ = ["Cache"]
