"""Cache metrics: hits and misses per resource, so that a hit rate per resource follows.

A *hit* is a lookup answered without loading from the database (from L1, from L2, or by
joining a load already under way for the same key); a *miss* ran the loader. So the misses
of a resource are exactly the database loads it made, and

    rate(ultrachat_cache_requests_total{result="hit"}[5m])
      / ignoring(result) sum without(result) (rate(ultrachat_cache_requests_total[5m]))

is its hit rate. The one other kind of database load is a warm (``TieredCache.warm``: a
value loaded just before it will be asked for, such as a profile at sign-in), counted apart
in ``ultrachat_cache_warms_total`` because no lookup asked for it.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge

CACHE_REQUESTS = Counter(
    "ultrachat_cache_requests_total",
    "Cache lookups by resource and result (hit: no database load; miss: loaded).",
    ["resource", "result"],
)
CACHE_TIER_HITS = Counter(
    "ultrachat_cache_tier_hits_total",
    "Hits by the tier that answered: l1 (this process), l2 (Redis) or flight (a shared load).",
    ["resource", "tier"],
)
CACHE_INVALIDATIONS = Counter(
    "ultrachat_cache_invalidations_total",
    "Keys invalidated by writes on this node, by resource.",
    ["resource"],
)
CACHE_UPDATES = Counter(
    "ultrachat_cache_updates_total",
    "Write-through updates by resource and tier (l1, l2): applied in place; or invalidated,"
    " because the tier held nothing (absent) or something the update could not apply to"
    " (refused: a gap in the seqs, or another writer changed it first).",
    ["resource", "tier", "result"],
)
CACHE_WARMS = Counter(
    "ultrachat_cache_warms_total",
    "Entries made ready ahead of their lookups, by resource and result: loaded (from the"
    " database), present (a tier held it already).",
    ["resource", "result"],
)
CACHE_IMPLIED = Counter(
    "ultrachat_cache_implied_total",
    "Entries stored in L2 because a loaded value implies them (a user's channel list, their"
    " memberships), by resource and result: stored, or skipped (the source changed meanwhile).",
    ["resource", "result"],
)
CACHE_INVALIDATION_TIMEOUTS = Counter(
    "ultrachat_cache_invalidation_timeouts_total",
    "Invalidations acknowledged by fewer nodes than received them within the timeout.",
)
CACHE_ERRORS = Counter(
    "ultrachat_cache_errors_total",
    "Failed cache operations (L2 reads, writes and invalidations, invalidation publishes).",
    ["operation"],
)
CACHE_ENTRIES = Gauge(
    "ultrachat_cache_entries", "Entries in this process's L1, by resource.", ["resource"]
)
CACHE_L1_FLUSHES = Counter(
    "ultrachat_cache_l1_flushes_total",
    "Times this process emptied its L1 after a bus outage (invalidations may have been lost).",
)


@functools.cache
def requests(resource: str, result: str) -> Any:
    """The bound hit/miss counter: ``labels()`` validates and locks on every call, which was
    a measurable share of a cached request; the bound child is looked up once."""
    return CACHE_REQUESTS.labels(resource, result)


@functools.cache
def tier_hits(resource: str, tier: str) -> Any:
    return CACHE_TIER_HITS.labels(resource, tier)
