"""A node's connections in fixed shares, so periodic work over all of them (keepalive pings,
presence refreshes) is spread over its interval instead of done in one burst.

A connection's share is fixed by its id, so each is visited exactly once per interval, never
sooner: a keepalive that pinged a peer one share ago must not give it up already.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")
SHARES = 20  # visits per interval; one share of the connections each


class Slices(Generic[T]):
    def __init__(self, shares: int = SHARES) -> None:
        self._shares: list[dict[str, T]] = [{} for _ in range(shares)]

    def add(self, key: str, item: T) -> None:
        self._shares[hash(key) % len(self._shares)][key] = item

    def discard(self, key: str) -> None:
        self._shares[hash(key) % len(self._shares)].pop(key, None)

    async def every(self, interval: float) -> AsyncIterator[tuple[int, list[T]]]:
        """Forever, every ``interval / shares``: the next share's index (0 starts another
        interval) and its items as they are now."""
        tick = interval / len(self._shares)
        while True:
            for index, share in enumerate(self._shares):
                await asyncio.sleep(tick)
                yield index, list(share.values())
