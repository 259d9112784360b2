"""Read replicas: routing read-only sessions to PostgreSQL hot standbys, and read-your-writes.

``ReplicaSet`` holds one engine per replica (a bounded pool like the primary's) and a health
loop that, about once a second, reads each replica's replay position and lag and puts it in
or out of rotation. ``Database.reader(user_id)`` asks it for a session:

- a replica in rotation whose last known replay position is at or past the user's last
  write, chosen round-robin; its session starts with a probe (``pg_last_wal_replay_lsn()``)
  that proves it answers and is still past that position;
- otherwise, or when the probe fails, the primary: a replica that is down when a read
  starts costs that read nothing but the failed probe.

Read-your-writes: after every write transaction commits on the primary, the primary's WAL
position is read (one statement on an autocommit connection) and kept

- per user, in the shared state (``ryw:<user_id>``, an atomic "raise to" in Redis so that
  concurrent writes on several nodes keep the highest), for ``ryw_ttl_seconds``: the lag
  bound plus the health check's staleness bound, after which every replica in rotation has
  replayed it anyway;
- per task (a context variable), so that a request reads its own writes even before it is
  known whose they are.

docs/database.md ("Read replicas") has the whole design and its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ultrachat.cache import Cache
from ultrachat.metrics.replicas import (
    DB_READS,
    REPLICA_IN_ROTATION,
    REPLICA_LAG_BYTES,
    REPLICA_LAG_SECONDS,
    REPLICA_UP,
    RYW_RECORD_FAILURES,
)
from ultrachat.storage.database import create_engine, server_settings
from ultrachat.tasks import cancel_and_wait

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ultrachat.storage.database import Database

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 1.5  # connect and query, each; a replica slower than this is down
CONNECT_TIMEOUT_SECONDS = 2.0  # for the replicas' read pools
# A replica's last good check must be this recent for it to stay in rotation. A check round
# takes at most about two timeouts (primary, then the replicas at once) plus the interval.
STALE_AFTER_SECONDS = 5.0
PRIMARY_ONLY = 2**64 - 1  # a position no replica reaches: "read from the primary"
RYW_KEY = "ryw:"

# The highest commit position of a write made in this task (request), so that a request's
# later reads see its own writes even when no user is attached to them.
_task_fence: ContextVar[int] = ContextVar("ultrachat_ryw_task_fence", default=0)
# Set by ``confirm_on_primary``: whether a read in the call went to a replica, and whether
# the call is being repeated on the primary.
_replica_reads: ContextVar[list[str] | None] = ContextVar("ultrachat_replica_reads", default=None)
_force_primary: ContextVar[bool] = ContextVar("ultrachat_force_primary", default=False)

P = ParamSpec("P")
T = TypeVar("T")

# After a commit: the write position when commits wait for their flush (the default), else
# the insert position, which is past every commit record already inserted. The write
# position is preferred because the insert position can sit past a page header that a
# caught-up replica never "replays", which would keep the user on the primary for nothing.
_COMMIT_POSITION_SQL = text(
    "SELECT (CASE WHEN current_setting('synchronous_commit') = 'off'"
    " THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_lsn() END)::text"
)
_PRIMARY_POSITION_SQL = "SELECT pg_current_wal_lsn()::text"
_REPLICA_HEALTH_SQL = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
)
_REPLAY_POSITION_SQL = text("SELECT pg_last_wal_replay_lsn()::text")


def parse_lsn(value: str) -> int:
    """``'16/B374D848'`` → the WAL byte position as an integer."""
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _nobody() -> str:
    return ""


def confirm_on_primary(
    *missing: type[BaseException],
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate a read: when it raised one of ``missing`` after reading from a replica, run
    it again on the primary, and let that answer stand.

    A replica may not have replayed another user's write yet (a channel just created, a
    membership just granted, a thread root just posted). Read-your-writes does not cover
    those, so absence is believed only from the primary. It costs a second read only on
    the "not found" path, and nothing at all without replicas.
    """

    def decorate(
        read: Callable[P, Coroutine[Any, Any, T]],
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(read)
        async def confirmed(*args: P.args, **kwargs: P.kwargs) -> T:
            used: list[str] = []
            token = _replica_reads.set(used)
            try:
                return await read(*args, **kwargs)
            except missing:
                if not used:
                    raise
            finally:
                _replica_reads.reset(token)
            forced = _force_primary.set(True)
            try:
                return await read(*args, **kwargs)
            finally:
                _force_primary.reset(forced)

        return confirmed

    return decorate


# Where users' last write positions are kept


class PositionStore(Protocol):
    """The last write position of each user, shared by every node, with a time to live."""

    async def get(self, user_id: str) -> int: ...

    async def raise_to(self, user_id: str, lsn: int, ttl_seconds: float) -> None:
        """Set the user's position to ``lsn`` unless it is higher already."""
        ...


class CachePositionStore:
    """On the shared-state ``Cache``: for the in-process cache (one process, no Redis).

    The read-then-write is atomic there because the in-process cache never suspends between
    the two; across processes use ``RedisPositionStore``, which is atomic in Redis.
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def get(self, user_id: str) -> int:
        raw = await self._cache.get(RYW_KEY + user_id)
        return int(raw, 16) if raw else 0

    async def raise_to(self, user_id: str, lsn: int, ttl_seconds: float) -> None:
        if lsn > await self.get(user_id):
            await self._cache.set(RYW_KEY + user_id, b"%016x" % lsn, ttl_seconds)


# Positions are 16 hex digits, so comparing the strings compares the numbers.
_RAISE_TO_LUA = """
local current = redis.call('GET', KEYS[1])
if (not current) or ARGV[1] > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""


class RedisPositionStore:
    """``<prefix>ryw:<user_id>`` in Redis, raised atomically by a script."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + RYW_KEY
        self._raise = client.register_script(_RAISE_TO_LUA)

    async def get(self, user_id: str) -> int:
        raw = await self._client.get(self._prefix + user_id)
        return int(raw, 16) if raw else 0

    async def raise_to(self, user_id: str, lsn: int, ttl_seconds: float) -> None:
        ttl_ms = max(1, int(ttl_seconds * 1000))
        await self._raise(keys=[self._prefix + user_id], args=[f"{lsn:016x}", ttl_ms])


# One replica


def _replica_connect_args(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    # A replica that is gone must fail a read over to the primary quickly, not after asyncpg's
    # default 60 s connect timeout.
    params["timeout"] = CONNECT_TIMEOUT_SECONDS
    params["server_settings"] = server_settings("ultrachat-replica")


class Replica:
    """One hot standby: its read pool, its health connection and what the last check found."""

    def __init__(self, index: int, url: str, pool_size: int, pool_timeout: float) -> None:
        self.name = str(index)
        self.engine: AsyncEngine = create_engine(url, pool_size, pool_timeout)
        event.listen(self.engine.sync_engine, "do_connect", _replica_connect_args)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._dsn = _asyncpg_dsn(url)
        self._health: Any = None  # an asyncpg connection of its own, outside the read pool
        self.up = False
        self.in_rotation = False
        self.state = "unchecked"  # ok | lagging | down | not_a_replica | unchecked
        self.replay_lsn = 0
        self.lag_seconds: float | None = None
        self.lag_bytes: int | None = None
        self.checked_at = -math.inf  # monotonic time of the last successful check
        self.error: str | None = None
        # Monotonic time of a primary position this replica had replayed: everything
        # committed before it is on the replica, which bounds the lag from above.
        self._caught_up_at: float | None = None
        self.publish()

    def eligible(self, now: float) -> bool:
        return self.in_rotation and now - self.checked_at <= STALE_AFTER_SECONDS

    async def check(self, primary_lsn: int | None, primary_at: float, max_lag: float) -> None:
        try:
            standby, replay, since_replay = await asyncio.wait_for(
                self._sample(), CHECK_TIMEOUT_SECONDS * 2
            )
        except Exception as exc:
            await self._drop_health()
            self.failed(exc)
            return
        now = time.monotonic()
        self.checked_at = now
        self.error = None
        if not standby or replay is None:
            # Promoted, or pointed at a primary by mistake: not a replica of ours any more.
            self.up, self.in_rotation = False, False
            self._set_state("not_a_replica")
            self.lag_seconds = self.lag_bytes = None
            self._caught_up_at = None
            self.publish()
            return
        self.up = True
        self.replay_lsn = parse_lsn(replay)
        self.lag_seconds, self.lag_bytes = self._lag(primary_lsn, primary_at, now, since_replay)
        self.in_rotation = self.lag_seconds is not None and self.lag_seconds <= max_lag
        self._set_state("ok" if self.in_rotation else "lagging")
        self.publish()

    def _lag(
        self, primary_lsn: int | None, primary_at: float, now: float, since_replay: float | None
    ) -> tuple[float | None, int | None]:
        if primary_lsn is not None and self.replay_lsn >= primary_lsn:
            # Caught up. An idle primary writes nothing, so "now - last replayed commit"
            # would grow forever here; it means nothing when nothing is missing.
            self._caught_up_at = primary_at
            return 0.0, 0
        lag_bytes = None if primary_lsn is None else primary_lsn - self.replay_lsn
        bounds = []
        if since_replay is not None:
            bounds.append(max(0.0, since_replay))
        if self._caught_up_at is not None:
            bounds.append(now - self._caught_up_at)
        return (min(bounds) if bounds else None), lag_bytes

    async def _sample(self) -> tuple[bool, str | None, float | None]:
        import asyncpg  # only when replicas are configured

        if self._health is None or self._health.is_closed():
            self._health = await asyncpg.connect(
                self._dsn,
                timeout=CHECK_TIMEOUT_SECONDS,
                server_settings={"application_name": "ultrachat-replica-health"},
            )
        row = await self._health.fetchrow(_REPLICA_HEALTH_SQL, timeout=CHECK_TIMEOUT_SECONDS)
        return bool(row[0]), row[1], row[2]

    async def _drop_health(self) -> None:
        conn, self._health = self._health, None
        if conn is not None:
            conn.terminate()

    def failed(self, exc: BaseException) -> None:
        """Out of rotation until a health check finds it well again."""
        self.up, self.in_rotation = False, False
        self.lag_seconds = self.lag_bytes = None
        self.error = f"{type(exc).__name__}: {exc}"[:200]
        self._set_state("down")
        self.publish()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            level = logging.INFO if state == "ok" else logging.WARNING
            detail = f" ({self.error})" if state == "down" and self.error else ""
            log.log(level, "replica %s: %s -> %s%s", self.name, self.state, state, detail)
        self.state = state

    def saw_replay(self, lsn: int) -> None:
        self.replay_lsn = max(self.replay_lsn, lsn)

    def publish(self) -> None:
        REPLICA_UP.labels(self.name).set(1 if self.up else 0)
        REPLICA_IN_ROTATION.labels(self.name).set(1 if self.in_rotation else 0)
        REPLICA_LAG_SECONDS.labels(self.name).set(
            math.nan if self.lag_seconds is None else self.lag_seconds
        )
        REPLICA_LAG_BYTES.labels(self.name).set(
            math.nan if self.lag_bytes is None else self.lag_bytes
        )

    def describe(self, now: float) -> dict[str, Any]:
        state = self.state
        if self.in_rotation and not self.eligible(now):
            state = "stale"  # no successful check lately
        # No error text here: /readyz is unauthenticated, and errors name hosts. The log has it.
        return {
            "replica": self.name,
            "status": state,
            "in_rotation": self.eligible(now),
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "lag_bytes": self.lag_bytes,
        }

    async def close(self) -> None:
        await self._drop_health()
        await self.engine.dispose()


# The set


class ReplicaSet:
    def __init__(
        self,
        primary: Database,
        urls: Sequence[str],
        *,
        max_lag_seconds: float,
        store: PositionStore,
        current_user: Callable[[], str] = _nobody,
        pool_size: int = 10,
        pool_timeout: float = 5.0,
        check_interval: float = CHECK_INTERVAL_SECONDS,
    ) -> None:
        self._primary = primary
        self.members = [Replica(i, url, pool_size, pool_timeout) for i, url in enumerate(urls)]
        self.max_lag_seconds = max_lag_seconds
        # Past this, every replica in rotation has replayed a write (docs/database.md).
        self.ryw_ttl_seconds = max_lag_seconds + STALE_AFTER_SECONDS + 1.0
        self._store = store
        self._current_user = current_user
        self._interval = check_interval
        self._primary_dsn = _asyncpg_dsn(primary.url)
        self._primary_health: Any = None
        self._next = itertools.count()
        self._task: asyncio.Task[None] | None = None
        # The highest commit position this process has seen; see ``wrote``.
        self.last_commit_lsn = 0
        self._position_unknown_until = -math.inf

    # Lifecycle

    async def start(self) -> None:
        """One check (bounded by its timeouts) so reads use replicas at once, then the loop."""
        await self.check()
        self._task = asyncio.create_task(self._check_forever(), name="replica-health")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        conn, self._primary_health = self._primary_health, None
        if conn is not None:
            conn.terminate()
        for replica in self.members:
            await replica.close()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:
                log.exception("replica health check failed")

    async def check(self) -> None:
        """Sample the primary's position, then every replica's, and update the rotation."""
        primary_at = time.monotonic()
        primary_lsn = await self._primary_position()
        await asyncio.gather(
            *(r.check(primary_lsn, primary_at, self.max_lag_seconds) for r in self.members)
        )

    async def _primary_position(self) -> int | None:
        import asyncpg  # only when replicas are configured

        try:
            if self._primary_health is None or self._primary_health.is_closed():
                self._primary_health = await asyncpg.connect(
                    self._primary_dsn,
                    timeout=CHECK_TIMEOUT_SECONDS,
                    server_settings={"application_name": "ultrachat-replica-health"},
                )
            value = await self._primary_health.fetchval(
                _PRIMARY_POSITION_SQL, timeout=CHECK_TIMEOUT_SECONDS
            )
        except Exception:
            conn, self._primary_health = self._primary_health, None
            if conn is not None:
                conn.terminate()
            return None  # lag then rests on the replicas' own replay timestamps
        return parse_lsn(value)

    # Reading

    @asynccontextmanager
    async def reader(self, user_id: str | None) -> AsyncIterator[AsyncSession]:
        session = await self._open(user_id)
        async with session:
            yield session

    async def _open(self, user_id: str | None) -> AsyncSession:
        if _force_primary.get():
            return self._on_primary("confirm")
        now = time.monotonic()
        candidates = [r for r in self.members if r.eligible(now)]
        if not candidates:
            return self._on_primary("no_replica")
        try:
            required = await self.required_position(user_id)
        except Exception:
            log.warning("read-your-writes position unavailable; reading from the primary")
            return self._on_primary("ryw_unavailable")
        candidates = [r for r in candidates if r.replay_lsn >= required]
        if not candidates:
            return self._on_primary("read_your_writes")
        first = next(self._next) % len(candidates)
        for replica in candidates[first:] + candidates[:first]:
            session = replica.sessions()
            try:
                replay = await session.scalar(_REPLAY_POSITION_SQL)
            except PoolTimeoutError:
                await _close_quietly(session)
                continue  # busy, not broken: another replica, else the primary
            except Exception as exc:
                await _close_quietly(session)
                log.warning("replica %s failed a read; out of rotation: %s", replica.name, exc)
                replica.failed(exc)
                continue
            if replay is None:  # promoted since the last check
                await _close_quietly(session)
                continue
            replica.saw_replay(parse_lsn(replay))
            if replica.replay_lsn < required:
                await _close_quietly(session)
                continue
            DB_READS.labels("replica", "replica").inc()
            used = _replica_reads.get()
            if used is not None:
                used.append(replica.name)
            return session
        return self._on_primary("failover")

    def _on_primary(self, reason: str) -> AsyncSession:
        DB_READS.labels("primary", reason).inc()
        return self._primary.sessions()

    async def required_position(self, user_id: str | None) -> int:
        """The WAL position a replica must have replayed to serve this user in this task.

        ``user_id`` defaults to the request's authenticated user."""
        required = _task_fence.get()
        user_id = user_id or self._current_user()
        if user_id:
            required = max(required, await self._store.get(user_id))
        return required

    # Writing

    async def committed(self) -> None:
        """After a write transaction committed on the primary: remember where it ended."""
        try:
            async with self._primary.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                value = await autocommit.scalar(_COMMIT_POSITION_SQL)
            lsn = parse_lsn(str(value))
        except Exception:
            RYW_RECORD_FAILURES.inc()
            log.warning("could not read the commit position; reads fall back to the primary")
            self._position_unknown_until = time.monotonic() + self.ryw_ttl_seconds
            lsn = PRIMARY_ONLY
        else:
            self.last_commit_lsn = max(self.last_commit_lsn, lsn)
        _task_fence.set(max(_task_fence.get(), lsn))
        user_id = self._current_user()
        if user_id:
            await self._remember(user_id, lsn)

    async def wrote(self, user_id: str) -> None:
        """``user_id``'s write was committed by another task (the group committer).

        That commit has already raised ``last_commit_lsn`` (``committed`` runs before the
        committer answers its senders), so this process's highest position covers it.
        """
        if time.monotonic() < self._position_unknown_until:
            lsn = PRIMARY_ONLY
        else:
            lsn = self.last_commit_lsn
        if lsn:
            _task_fence.set(max(_task_fence.get(), lsn))
            await self._remember(user_id, lsn)

    async def _remember(self, user_id: str, lsn: int) -> None:
        try:
            await self._store.raise_to(user_id, lsn, self.ryw_ttl_seconds)
        except Exception:
            RYW_RECORD_FAILURES.inc()
            log.warning("could not record a write for read-your-writes", exc_info=True)

    # Reporting

    def readiness(self) -> dict[str, Any]:
        """For /readyz: never makes the node unready; reads fall back to the primary."""
        now = time.monotonic()
        members = [r.describe(now) for r in self.members]
        serving = sum(1 for m in members if m["in_rotation"])
        body: dict[str, Any] = {
            "status": "ok" if serving == len(members) else "degraded",
            "in_rotation": serving,
            "total": len(members),
        }
        if serving < len(members):
            body["detail"] = (
                f"{len(members) - serving} of {len(members)} replicas out of rotation; "
                "their reads go to the primary (the node stays ready)"
            )
        body["members"] = members
        return body


async def _close_quietly(session: AsyncSession) -> None:
    with contextlib.suppress(Exception):
        await session.close()


def task_fence() -> int:
    """This task's read-your-writes fence (for tests and diagnostics)."""
    return _task_fence.get()
