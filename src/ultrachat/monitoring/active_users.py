"""Active users: distinct users with a live connection or an authenticated request in the
last 5 minutes, across every node.

No request pays a round trip for this. The edge adds the caller's id to a set in this
process (``seen``, a set insertion), and every ``FLUSH_SECONDS`` the set goes out in one
batch: with Redis, one pipeline that adds the batch to a sorted set scored by time (shared by
every node under the key prefix), trims what is older than the window and counts the rest;
embedded, a dict in the process. So a user is counted once however many nodes saw them, and
the count lags the truth by at most one flush.

Users with a live WebSocket are re-sent at most every ``REFRESH_SECONDS``, not every flush:
50 000 sockets would otherwise mean 50 000 members rewritten every 10 s for no new fact. A
user who disconnects therefore drops out 4 to 5 minutes later rather than exactly 5.

Times are the nodes' wall clocks (scores must compare across nodes); a few seconds of skew
only moves the window's edge by as much. Scores only move forward (``ZADD GT``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Protocol

from ultrachat.tasks import cancel_and_wait

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
WINDOW_SECONDS = 300.0
FLUSH_SECONDS = 10.0
REFRESH_SECONDS = 60.0


class ActiveUserStore(Protocol):
    async def record(self, user_ids: Collection[str], now: float, window: float) -> int:
        """Mark ``user_ids`` active at ``now``; forget users last active ``window`` seconds
        ago or earlier; return how many remain."""
        ...


class MemoryActiveUsers:
    """The embedded store: one process is the whole deployment."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    async def record(self, user_ids: Collection[str], now: float, window: float) -> int:
        for user_id in user_ids:
            self._last[user_id] = max(now, self._last.get(user_id, now))
        cutoff = now - window
        for user_id in [u for u, at in self._last.items() if at <= cutoff]:
            del self._last[user_id]
        return len(self._last)


class RedisActiveUsers:
    """One sorted set shared by every node: member = user id, score = last seen (epoch s)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = f"{prefix}monitoring:active_users"

    async def record(self, user_ids: Collection[str], now: float, window: float) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            if user_ids:
                pipe.zadd(self.key, dict.fromkeys(user_ids, now), gt=True)
            pipe.zremrangebyscore(self.key, "-inf", now - window)
            pipe.zcard(self.key)
            # A deployment that stops leaves nothing behind for long.
            pipe.expire(self.key, int(window * 2))
            results = await pipe.execute()
        return int(results[-2])


class ActiveUsers:
    """This node's recorder: ``seen`` on the request path, ``flush`` in the background."""

    def __init__(
        self,
        store: ActiveUserStore,
        connected: Callable[[], Iterable[str]] = tuple,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = FLUSH_SECONDS,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self._store = store
        self._connected = connected
        self._clock = clock
        self.interval = interval
        self.window = window
        self._pending: set[str] = set()
        self._refreshed: dict[str, float] = {}  # connected user -> when last sent
        self._task: asyncio.Task[None] | None = None
        self.count = 0  # as of the last flush, across all nodes

    def seen(self, user_id: str) -> None:
        """``user_id`` made an authenticated request now. Costs a set insertion."""
        self._pending.add(user_id)

    async def flush(self) -> int:
        """Send what was seen since the last flush; return (and keep) the count."""
        now = self._clock()
        batch, self._pending = self._pending, set()
        refreshed: dict[str, float] = {}
        for user_id in self._connected():
            last = self._refreshed.get(user_id)
            if last is None or now - last >= REFRESH_SECONDS:
                batch.add(user_id)
                last = now
            refreshed[user_id] = last
        try:
            self.count = await self._store.record(batch, now, self.window)
        except BaseException:
            self._pending |= batch  # sent with the next flush
            raise
        self._refreshed = refreshed
        return self.count

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="active-users")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.warning("recording active users failed; retrying", exc_info=True)
