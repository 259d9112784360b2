"""The two-tier cache: L1 in every process, L2 in Redis (when configured), the database last.

Reads (``get``, ``get_many``): L1, then L2, then the caller's loader; what was loaded is
stored in both tiers. Concurrent ``get``s of one key on one node share one load
(single flight), so a stampede on a hot key reaches the database once per node.

Writes call ``invalidate`` after their transaction committed and before they answer:

1. L2: the keys are deleted and their versions bumped (remote.py), so no load that began
   before the write can put its stale value back;
2. L1 here: the keys are dropped, and loads already under way for them may no longer
   store what they read (a per-key invalidation epoch, below);
3. every other node: an invalidation on the bus; each node drops the keys from its L1 the
   same way and acknowledges. With ``wait=True`` the writer waits for as many
   acknowledgements as the bus reported receivers, up to ``invalidation_timeout``.

A write that knows the new value from the old one (a channel's newest page after a send)
calls ``update`` instead: L2 is replaced under compare-and-set (remote.py), this node's L1
in place, and every other node drops the keys from its L1 (its next lookup is an L2 hit). A
tier that cannot take the change (the key is absent, or the change refuses what is there)
is invalidated as above. Both fence loads under way, as an invalidation does.

Two ways to fill without a lookup: ``warm`` makes a key ready just before it will be asked
for (a profile at sign-in), and a ``get`` with ``implies`` stores, along with a value it
loaded, the entries that value proves (a user's channel list proves their memberships) in L2,
fenced by the loaded key's version (remote.py, ``set_implied``).

A node whose bus is down cannot hear invalidations, so it stops using its L1 until the bus
is back, and then empties it before using it again. docs/cache.md states the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis.exceptions import RedisError

from ultrachat.bus import Bus
from ultrachat.cache.config import CacheConfig
from ultrachat.cache.local import MISSING, LocalTier
from ultrachat.cache.remote import RedisTier, Version
from ultrachat.metrics import cache as cache_metrics
from ultrachat.metrics.cache import (
    CACHE_ENTRIES,
    CACHE_ERRORS,
    CACHE_IMPLIED,
    CACHE_INVALIDATION_TIMEOUTS,
    CACHE_INVALIDATIONS,
    CACHE_L1_FLUSHES,
    CACHE_REQUESTS,
    CACHE_UPDATES,
    CACHE_WARMS,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

INVALIDATE_TOPIC = "cache.invalidate"
# Invalidations remembered per node to tell a load whether its key changed meanwhile. A load
# older than the oldest one forgotten does not store its value (it is still returned).
MAX_RECENT_INVALIDATIONS = 100_000
_L2_ERRORS = (RedisError, OSError, orjson.JSONDecodeError)


def ack_topic(node_id: str) -> str:
    return f"cache.ack:{node_id}"


Key = tuple[str, str]
"""(resource, key)"""

Implied = tuple[str, Mapping[str, Any]]
"""(resource, {key: value}): entries a loaded value proves."""

Change = Callable[[Any], Any]
"""A write-through: the cached value (never MISSING) → its successor, or None when the
change cannot apply to it. Must not modify the value it is given (L1 shares it)."""


def _apply(change: Change, value: Any) -> Any:
    """``change(value)``; None for an absent value, or a change that failed (a bug: the key
    is invalidated instead, which is always safe)."""
    if value is MISSING:
        return None
    try:
        return change(value)
    except Exception:
        log.exception("cache: a write-through failed; invalidating instead")
        return None


def _outcome(current: Any, successor: Any) -> str:
    """How a write-through went in one tier: ``applied``; ``absent`` (nothing cached) or
    ``refused`` (a gap, or the value changed under it), both of which invalidate."""
    if current is MISSING:
        return "absent"
    return "refused" if successor is None else "applied"


@dataclass(slots=True)
class _Acks:
    received: int = 0
    expected: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if self.expected is not None and self.received >= self.expected:
            self.done.set()


class TieredCache:
    def __init__(
        self,
        config: CacheConfig,
        bus: Bus,
        remote: RedisTier | None = None,
        *,
        invalidation_timeout: float = 1.0,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.local = LocalTier(config, clock)
        self.remote = remote
        self.enabled = enabled
        self.node_id = secrets.token_hex(8)
        self._bus = bus
        self._timeout = invalidation_timeout
        self._flights: dict[Key, asyncio.Task[Any]] = {}
        self._epoch = 0
        self._floor = 0
        self._recent: OrderedDict[Key, int] = OrderedDict()
        self._ids = itertools.count(1)
        self._acks: dict[int, _Acks] = {}
        self._suspect = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        for resource in config.resources:
            for result in ("hit", "miss"):
                CACHE_REQUESTS.labels(resource, result)
            CACHE_ENTRIES.labels(resource).set_function(self._sizer(resource))

    def _sizer(self, resource: str) -> Callable[[], float]:
        return lambda: float(self.local.size_of(resource))

    async def start(self) -> None:
        if not self.enabled:
            return
        await self._bus.subscribe(INVALIDATE_TOPIC, self._on_invalidate)
        await self._bus.subscribe(ack_topic(self.node_id), self._on_ack)
        self._bus.on_reconnect(self._after_bus_outage)
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            with contextlib.suppress(Exception):
                await self._bus.unsubscribe(INVALIDATE_TOPIC)
                await self._bus.unsubscribe(ack_topic(self.node_id))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # Reading

    async def get(
        self,
        resource: str,
        key: str,
        load: Callable[[], Awaitable[T]],
        accept: Callable[[T], bool] | None = None,
        implies: Callable[[T], Implied] | None = None,
    ) -> T:
        """The cached value, or ``load()``'s (stored on the way). ``accept`` may refuse a
        cached value (e.g. a page too short), which then counts as a miss. ``implies`` gives
        the entries a loaded value proves; they are stored in L2 with it, unless ``key`` is
        invalidated meanwhile. Only for entries whose every invalidation also invalidates
        ``key``, in the same call (that is what makes the fence hold)."""
        if not self.enabled:
            cache_metrics.requests(resource, "miss").inc()
            return await load()
        use_l1 = self._l1_usable()
        if use_l1:
            value = self.local.get(resource, key)
            if value is not MISSING and (accept is None or accept(value)):
                self._hit(resource, "l1")
                return value  # type: ignore[no-any-return]
        flight = self._flights.get((resource, key))
        if flight is not None:
            value = await asyncio.shield(flight)
            if accept is None or accept(value):
                self._hit(resource, "flight")
                return value  # type: ignore[no-any-return]
            return await self._fill(resource, key, load, accept, implies)
        return await asyncio.shield(
            self._fly(resource, key, self._fill(resource, key, load, accept, implies))
        )

    async def warm(self, resource: str, key: str, load: Callable[[], Awaitable[Any]]) -> None:
        """Make ``key`` ready for the lookups about to ask for it (a user's profile when they
        sign in): loaded, the way a miss loads it, unless a tier holds it already. Not a
        lookup, so not counted as a hit or a miss (``ultrachat_cache_warms_total``). A
        failed load is left for the lookup to meet; it is only logged here."""
        if not self.enabled or resource not in self.config.resources:
            return
        if self._l1_usable() and self.local.get(resource, key) is not MISSING:
            CACHE_WARMS.labels(resource, "present").inc()
            return
        if (resource, key) in self._flights:
            return  # being loaded already
        try:
            await asyncio.shield(
                self._fly(resource, key, self._fill(resource, key, load, None, counted=False))
            )
        except Exception:
            log.warning("cache: warming %s %s failed", resource, key, exc_info=True)

    def _fly(self, resource: str, key: str, fill: Awaitable[T]) -> asyncio.Task[T]:
        """Run ``fill`` as the key's single flight: later lookups on this node join it."""
        task: asyncio.Task[T] = asyncio.ensure_future(fill)
        self._flights[(resource, key)] = task
        task.add_done_callback(lambda done: self._landed(resource, key, done))
        return task

    @property
    def epoch(self) -> int:
        """Now, for ``prime``: taken before the read that the primed values come from."""
        return self._epoch

    def prime(self, resource: str, values: Mapping[str, Any], since: int) -> None:
        """Keep in this node's L1 values known from another read that began at epoch
        ``since`` (a user's channel list says they are a member of each), except for keys
        invalidated since then: the same rule as a loaded value."""
        if not self.enabled:
            return
        for key, value in values.items():
            self._store_l1(resource, key, value, since)

    async def get_many(
        self,
        resource: str,
        keys: Iterable[str],
        load_many: Callable[[list[str]], Awaitable[Mapping[str, T]]],
    ) -> dict[str, T]:
        """Values for ``keys``: what the tiers hold, the rest from one ``load_many(missing)``
        call, which must return a value for every key it is given. No single flight: meant
        for callers that are one task per node already (the group committer)."""
        wanted = list(dict.fromkeys(keys))
        if not self.enabled:
            cache_metrics.requests(resource, "miss").inc(len(wanted))
            return dict(await load_many(wanted)) if wanted else {}
        found: dict[str, T] = {}
        missing: list[str] = []
        if self._l1_usable():
            for key in wanted:
                value = self.local.get(resource, key)
                if value is MISSING:
                    missing.append(key)
                else:
                    found[key] = value
                    self._hit(resource, "l1")
        else:
            missing = wanted
        if not missing:
            return found
        start = self._epoch
        versions: dict[str, Version] = {}
        if self.remote is not None:
            try:
                stored = await self.remote.get_many(resource, missing)
                still: list[str] = []
                for key, (raw, version) in zip(missing, stored, strict=True):
                    if raw is None:
                        versions[key] = version
                        still.append(key)
                    else:
                        found[key] = orjson.loads(raw)
                        self._hit(resource, "l2")
                        self._store_l1(resource, key, found[key], start)
                missing = still
            except _L2_ERRORS:
                CACHE_ERRORS.labels("l2_get").inc()
                versions = {}
        if missing:
            cache_metrics.requests(resource, "miss").inc(len(missing))
            loaded = await load_many(missing)
            for key in missing:
                found[key] = loaded[key]
            await self._store_l2(
                resource, [(k, found[k], versions[k]) for k in missing if k in versions]
            )
            for key in missing:
                self._store_l1(resource, key, found[key], start)
        return found

    # Writing

    async def invalidate(self, keys: Iterable[Key], *, wait: bool = True) -> None:
        """Drop ``keys`` from L2, this node's L1 and every other node's L1 (see the module
        docstring). Never raises: the write it follows is committed already."""
        pairs = [k for k in dict.fromkeys(keys) if k[0] in self.config.resources]
        if not pairs or not self.enabled:
            return
        for resource, _ in pairs:
            CACHE_INVALIDATIONS.labels(resource).inc()
        if self.remote is not None:
            await self._invalidate_l2(pairs)
        self._forget(pairs)
        await self._tell_others(pairs, wait)

    async def update(
        self, resource: str, changes: Mapping[str, Change], *, renew: bool = False
    ) -> None:
        """Write-through: each key's value becomes ``change(value)``, computed in each tier
        from what that tier holds (L2 under compare-and-set). Where the key is absent or its
        change returns None, the key is invalidated in that tier instead. Other nodes drop
        the keys from their L1 without acknowledging (the ``wait=False`` of ``invalidate``).
        An updated entry keeps its expiry unless ``renew``: the change proved the successor
        current (a history head's seqs run on without a gap), so its TTL starts again.
        Call it after the write committed, before answering. Never raises."""
        if not changes or not self.enabled or resource not in self.config.resources:
            return
        if self.remote is not None:
            await self._update_l2(resource, changes, renew)
        pairs = [(resource, key) for key in changes]
        if self._l1_usable():
            currents = {k: self.local.get(resource, k) for k in changes}
            successors = {k: _apply(c, currents[k]) for k, c in changes.items()}
            # Loads under way may have read the old value: none of them may store it now.
            self._fence(pairs)
            for key, value in successors.items():
                if value is None or not self.local.replace(resource, key, value, renew=renew):
                    self.local.delete(resource, key)
                CACHE_UPDATES.labels(resource, "l1", _outcome(currents[key], value)).inc()
        await self._tell_others(pairs, wait=False)

    async def _tell_others(self, pairs: list[Key], wait: bool) -> None:
        """Publish ``pairs`` for every other node to drop from its L1; with ``wait``, wait
        for their acknowledgements (up to the timeout)."""
        invalidation_id = next(self._ids)
        acks = _Acks() if wait else None
        if acks is not None:
            self._acks[invalidation_id] = acks
        payload = orjson.dumps({"n": self.node_id, "i": invalidation_id, "w": wait, "k": pairs})
        try:
            receivers = await self._bus.publish_counted(INVALIDATE_TOPIC, payload)
            if acks is None:
                return
            acks.expected = max(0, receivers - (1 if self._started else 0))
            acks.check()
            try:
                await asyncio.wait_for(acks.done.wait(), self._timeout)
            except TimeoutError:
                CACHE_INVALIDATION_TIMEOUTS.inc()
                log.warning(
                    "cache: %d of %s nodes acknowledged an invalidation within %.1fs",
                    acks.received,
                    acks.expected,
                    self._timeout,
                )
        except Exception:
            # The bus is down: other nodes are not using their L1 and empty it on reconnect.
            CACHE_ERRORS.labels("publish").inc()
            log.warning("cache: invalidation publish failed", exc_info=True)
        finally:
            self._acks.pop(invalidation_id, None)

    def flush_l1(self) -> None:
        """Empty L1; loads under way no longer store what they read."""
        self.local.clear()
        self._flights.clear()
        self._epoch += 1
        self._floor = self._epoch
        self._recent.clear()
        CACHE_L1_FLUSHES.inc()

    # Internals

    async def _fill(
        self,
        resource: str,
        key: str,
        load: Callable[[], Awaitable[T]],
        accept: Callable[[T], bool] | None,
        implies: Callable[[T], Implied] | None = None,
        *,
        counted: bool = True,
    ) -> T:
        """L2, then ``load``; ``counted=False`` for a warm, which no lookup asked for."""
        start = self._epoch
        version: Version | None = None
        if self.remote is not None:
            try:
                [(raw, version)] = await self.remote.get_many(resource, [key])
                if raw is not None:
                    value: T = orjson.loads(raw)
                    if accept is None or accept(value):
                        if counted:
                            self._hit(resource, "l2")
                        else:
                            CACHE_WARMS.labels(resource, "present").inc()
                        self._store_l1(resource, key, value, start)
                        return value
            except _L2_ERRORS:
                CACHE_ERRORS.labels("l2_get").inc()
                version = None
        if counted:
            cache_metrics.requests(resource, "miss").inc()
        else:
            CACHE_WARMS.labels(resource, "loaded").inc()
        value = await load()
        if version is not None:
            await self._store_l2(resource, [(key, value, version)])
            if implies is not None:
                await self._store_implied((resource, key), version, implies(value))
        self._store_l1(resource, key, value, start)
        return value

    def _landed(self, resource: str, key: str, task: asyncio.Task[Any]) -> None:
        if self._flights.get((resource, key)) is task:
            del self._flights[(resource, key)]
        if not task.cancelled():
            task.exception()  # retrieved: the callers that awaited it have it

    async def _store_l2(self, resource: str, items: Sequence[tuple[str, Any, Version]]) -> None:
        if self.remote is None or not items:
            return
        try:
            await self.remote.set_many(
                resource, [(key, orjson.dumps(value), version) for key, value, version in items]
            )
        except (*_L2_ERRORS, TypeError):
            CACHE_ERRORS.labels("l2_set").inc()

    async def _store_implied(self, source: Key, version: Version, implied: Implied) -> None:
        resource, values = implied
        if self.remote is None or not values or resource not in self.config.resources:
            return
        try:
            stored = await self.remote.set_implied(
                source, version, resource, [(k, orjson.dumps(v)) for k, v in values.items()]
            )
        except (*_L2_ERRORS, TypeError):
            CACHE_ERRORS.labels("l2_set").inc()
            return
        CACHE_IMPLIED.labels(resource, "stored").inc(stored)
        CACHE_IMPLIED.labels(resource, "skipped").inc(len(values) - stored)

    def _store_l1(self, resource: str, key: str, value: Any, start: int) -> None:
        """Keep a value loaded by a lookup that began at epoch ``start``, unless the key was
        invalidated since (or the node can no longer tell, or cannot hear invalidations)."""
        if start < self._floor or not self._l1_usable():
            return
        changed = self._recent.get((resource, key))
        if changed is not None and changed > start:
            return
        self.local.set(resource, key, value)

    async def _update_l2(self, resource: str, changes: Mapping[str, Change], renew: bool) -> None:
        assert self.remote is not None
        keys = list(changes)
        try:
            stored = await self.remote.get_many(resource, keys)
            items: list[tuple[str, bytes | None, bytes | None]] = []
            outcomes: list[str] = []
            for key, (raw, _) in zip(keys, stored, strict=True):
                current = MISSING if raw is None else orjson.loads(raw)
                value = _apply(changes[key], current)
                items.append((key, raw, None if value is None else orjson.dumps(value)))
                outcomes.append(_outcome(current, value))
            replaced = await self.remote.replace_many(resource, items, renew=renew)
        except (*_L2_ERRORS, TypeError):
            CACHE_ERRORS.labels("l2_update").inc()
            log.warning("cache: L2 update of %d keys failed; invalidating", len(keys))
            await self._invalidate_l2([(resource, k) for k in keys])
            return
        for done, outcome in zip(replaced, outcomes, strict=True):
            if outcome == "applied" and not done:
                outcome = "refused"  # another writer changed the value after it was read
            CACHE_UPDATES.labels(resource, "l2", outcome).inc()

    async def _invalidate_l2(self, pairs: list[Key]) -> None:
        assert self.remote is not None
        try:
            await self.remote.invalidate(pairs)
        except _L2_ERRORS:
            # L2 keeps a stale value until its TTL; logged loudly, counted.
            CACHE_ERRORS.labels("l2_invalidate").inc()
            log.error("cache: L2 invalidation of %d keys failed", len(pairs), exc_info=True)

    def _forget(self, pairs: Iterable[Key]) -> None:
        pairs = list(pairs)
        for pair in pairs:
            self.local.delete(*pair)
        self._fence(pairs)

    def _fence(self, pairs: Iterable[Key]) -> None:
        """Loads of ``pairs`` under way no longer store what they read."""
        for pair in pairs:
            self._flights.pop(pair, None)  # later lookups start a load of their own
            self._epoch += 1
            self._recent[pair] = self._epoch
            self._recent.move_to_end(pair)
        while len(self._recent) > MAX_RECENT_INVALIDATIONS:
            _, epoch = self._recent.popitem(last=False)
            self._floor = max(self._floor, epoch)

    def _l1_usable(self) -> bool:
        if not self._bus.healthy:
            self._suspect = True  # invalidations may be passing us by
            return False
        if self._suspect:
            self._suspect = False
            self.flush_l1()
        return True

    def _hit(self, resource: str, tier: str) -> None:
        cache_metrics.requests(resource, "hit").inc()
        cache_metrics.tier_hits(resource, tier).inc()

    # Bus handlers (synchronous: they run on the bus reader)

    def _on_invalidate(self, topic: str, payload: bytes) -> None:
        message = orjson.loads(payload)
        origin = message["n"]
        if origin == self.node_id:
            return  # applied before it was published
        self._forget((str(r), str(k)) for r, k in message["k"] if r in self.config.resources)
        if message.get("w"):
            self._spawn(self._acknowledge(origin, int(message["i"])))

    async def _acknowledge(self, origin: str, invalidation_id: int) -> None:
        try:
            await self._bus.publish(ack_topic(origin), str(invalidation_id).encode())
        except Exception:
            CACHE_ERRORS.labels("ack").inc()

    def _on_ack(self, topic: str, payload: bytes) -> None:
        acks = self._acks.get(int(payload))
        if acks is not None:
            acks.received += 1
            acks.check()

    async def _after_bus_outage(self) -> None:
        self._suspect = False
        self.flush_l1()

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
