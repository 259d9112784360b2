"""In-process GCRA limiter for the embedded default (one process).

Each decision runs without an await between read and write, so it is atomic on the event
loop; it cannot see other processes, which is why multi-process serving needs Redis.
"""

from __future__ import annotations

import time

from ultrachat.ratelimit.base import Decision, Limit, gcra

_MAX_KEYS = 200_000


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._tats: dict[str, int] = {}

    async def hit(self, key: str, limit: Limit) -> Decision:
        now = _now_us()
        decision, new_tat = gcra(self._tats.get(key), now, limit)
        if new_tat is not None:
            if len(self._tats) >= _MAX_KEYS:
                self._evict(now)
            self._tats[key] = new_tat
        return decision

    async def peek(self, key: str, limit: Limit) -> Decision:
        decision, _ = gcra(self._tats.get(key), _now_us(), limit)
        return decision

    async def reset(self, key: str) -> None:
        self._tats.pop(key, None)

    def _evict(self, now: int) -> None:
        # A TAT in the past means a full bucket: forgetting it changes no decision.
        for stale in [k for k, tat in self._tats.items() if tat <= now]:
            del self._tats[stale]


def _now_us() -> int:
    return time.monotonic_ns() // 1000
