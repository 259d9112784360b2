"""The composition root: builds every shared backend and service from the settings.

A URL in the settings picks each backend, and networked drivers are imported only when
chosen (the broadcaster pattern): the embedded default needs no Redis at all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ultrachat.audit import AuditLog
from ultrachat.auth.directory import UserDirectory
from ultrachat.auth.keys import KeyRing
from ultrachat.auth.passwords import PasswordHasherPool
from ultrachat.auth.revocation import RevocationList
from ultrachat.auth.service import AuthService
from ultrachat.billing.service import BillingService
from ultrachat.bus import Bus
from ultrachat.bus.memory import MemoryBus
from ultrachat.cache import Cache
from ultrachat.cache.memory import MemoryCache
from ultrachat.cache.tiered import TieredCache
from ultrachat.chat.admission import SendAdmission
from ultrachat.chat.caching import ChatCache
from ultrachat.chat.channels import ChannelService
from ultrachat.chat.events import SESSIONS_REVOKED_TOPIC
from ultrachat.chat.group_commit import GroupCommitter
from ultrachat.chat.ledger import ChannelLedger
from ultrachat.chat.log import ChannelLog
from ultrachat.chat.messages import MessageService
from ultrachat.chat.sealing import ChatSealer
from ultrachat.config import Settings
from ultrachat.crypto.rewrap import RewrapJob
from ultrachat.crypto.setup import data_key_ring
from ultrachat.gateway.context import user_id_var
from ultrachat.metrics.storage import POOLS
from ultrachat.monitoring.collector import node_name
from ultrachat.monitoring.setup import monitoring_for
from ultrachat.preferences.service import PreferencesService
from ultrachat.ratelimit import RateLimiter
from ultrachat.ratelimit.memory import MemoryRateLimiter
from ultrachat.realtime.connection import CLOSE_SERVICE_RESTART
from ultrachat.realtime.hub import Hub
from ultrachat.realtime.presence import MemoryPresence, PresenceStore, RedisPresence
from ultrachat.realtime.presence_hub import PresenceHub
from ultrachat.storage import Database
from ultrachat.storage.maintenance import PartitionMaintenance
from ultrachat.storage.pools import DatabasePool, ResourcePool
from ultrachat.storage.replicas import (
    CachePositionStore,
    PositionStore,
    RedisPositionStore,
    ReplicaSet,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ultrachat.cache.remote import RedisTier

# The cyclic collector's thresholds (CPython 3.11-3.13 default to 700, 10, 10; 3.14's
# incremental collector reads them differently: revisit there). A full collection
# walks every tracked object: with 10,000 connections a worker holds about 400,000 and the
# walk took 160-790 ms, a stall every message and request felt. Full collections come when
# objects promoted since the last one reach a quarter of the heap; with a young generation
# of 700, short-lived but slow objects (a request awaiting the database, a presence batch)
# got promoted and triggered one every ~20 s. At 50,000 they die young (docs/benchmarks.md,
# "Pauses and bursts").
GC_THRESHOLDS = (50_000, 20, 10)
log = logging.getLogger(__name__)
KEY_RELOAD_SECONDS = 60.0


class Runtime:
    """Everything one server process shares across requests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(
            settings.effective_database_url,
            settings.database_pool_size,
            settings.pool_timeout_seconds,
        )
        self.pools: list[ResourcePool[Any]] = [DatabasePool("primary", self.db.engine)]
        self.redis: Redis | None = None
        self.shared_state: Cache
        remote: RedisTier | None
        self.limiter: RateLimiter
        self.bus: Bus
        if settings.redis_url:
            from redis.asyncio import Redis

            from ultrachat.bus.redis import RedisBus
            from ultrachat.cache.redis import RedisCache
            from ultrachat.cache.remote import RedisTier
            from ultrachat.ratelimit.redis import RedisRateLimiter
            from ultrachat.storage.redis_pool import RedisPool, WaitCountingBlockingPool

            # A bounded pool that waits (up to the pool timeout) for a free connection, rather
            # than failing at once as the default pool does when it is exhausted.
            pool = WaitCountingBlockingPool.from_url(
                settings.redis_url,
                max_connections=settings.redis_pool_size,
                timeout=settings.pool_timeout_seconds,
                socket_connect_timeout=2,
                socket_timeout=5,
            )
            self.redis = Redis.from_pool(pool)  # from_pool: closing the client closes the pool
            self.pools.append(RedisPool("redis", pool))
            self.shared_state = RedisCache(self.redis, settings.redis_key_prefix)
            self.limiter = RedisRateLimiter(self.redis, settings.redis_key_prefix)
            self.bus = RedisBus(self.redis, settings.redis_key_prefix)
            remote = RedisTier(self.redis, settings.redis_key_prefix, settings.cache_config)
        else:
            # Unbounded on purpose: evicting a revocation would resurrect a session.
            self.shared_state = MemoryCache(max_entries=10**9)
            self.limiter = MemoryRateLimiter()
            self.bus = MemoryBus()
            remote = None
        # The two-tier read cache (docs/cache.md); revocations stay in shared_state, unbounded.
        self.cache = TieredCache(
            settings.cache_config,
            self.bus,
            remote,
            invalidation_timeout=settings.cache_invalidation_timeout_seconds,
            enabled=settings.cache_enabled,
        )
        # Read replicas (docs/database.md): Database.reader routes to them, writes stay here.
        self.replicas: ReplicaSet | None = None
        if settings.database_replica_urls:
            positions: PositionStore = (
                RedisPositionStore(self.redis, settings.redis_key_prefix)
                if self.redis is not None
                else CachePositionStore(self.shared_state)
            )
            self.replicas = ReplicaSet(
                self.db,
                settings.database_replica_urls,
                max_lag_seconds=settings.replica_max_lag_seconds,
                store=positions,
                current_user=user_id_var.get,
                pool_size=settings.database_pool_size,
                pool_timeout=settings.pool_timeout_seconds,
            )
            self.db.attach_replicas(self.replicas)  # db.close() closes them
            self.pools += [
                DatabasePool(f"replica-{r.name}", r.engine) for r in self.replicas.members
            ]
        token_horizon = timedelta(
            seconds=settings.access_token_ttl_seconds + settings.jwt_leeway_seconds
        )
        self.audit = AuditLog(self.db)
        # Encryption at rest (crypto/): data keys for message bodies, frames and secrets.
        self.data_keys = data_key_ring(settings, self.db, on_rotated=self._record_rotation)
        self.rewrap = RewrapJob(
            self.db,
            self.data_keys,
            owner=f"{socket.gethostname()}:{os.getpid()}",
            batch_size=settings.rewrap_batch_size,
            grace=timedelta(seconds=settings.data_key_refresh_seconds + 2),
        )
        self.keys = KeyRing(self.db, token_horizon, self.data_keys)
        self.hasher = PasswordHasherPool(
            settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
        )
        self.revocations = RevocationList(self.shared_state, self.db, token_horizon)
        self.auth = AuthService(
            settings,
            self.db,
            self.keys,
            self.hasher,
            self.revocations,
            self.limiter,
            self.cache,
            self.audit,
        )
        self.users = UserDirectory(self.db)
        self.ledger = ChannelLedger(
            self.db, self.bus, ChatSealer(self.data_keys), ChatCache(self.cache)
        )
        self.channels = ChannelService(self.db, self.ledger, self.bus, self.users, self.audit)
        # SQLite has one writer: a second transaction in flight would only wait for the lock.
        self.committer = GroupCommitter(self.db, self.ledger, 2 if settings.is_postgres else 1)
        self.admission = SendAdmission(
            self.bus,
            node_name(),
            target=settings.send_shed_lag_seconds,
            backlog=self.committer.oldest_wait,
        )
        self.messages = MessageService(
            self.db, self.ledger, self.committer, self.users, self.admission
        )
        self.preferences = PreferencesService(self.db, self.cache)
        self.billing = BillingService(self.db, self.audit)
        self.hub = Hub(
            self.bus,
            ChannelLog(self.db, self.ledger.sealer),
            settings.ws_max_behind,
            sweep_interval=settings.ws_ping_interval_seconds,
        )
        self.presence = PresenceHub(self.bus, self._presence_store(), settings.presence_ttl_seconds)
        self.auth.on_sessions_revoked(self._announce_revocation)
        self.maintenance = PartitionMaintenance(self.db.url, settings.retention_months)
        # The MetricsCollector and the admins' live feed (docs/monitoring.md).
        self.collector, self.live = monitoring_for(self)
        self._tasks: list[asyncio.Task[None]] = []

    def _presence_store(self) -> PresenceStore:
        if self.redis is not None:
            return RedisPresence(self.redis, self.settings.redis_key_prefix)
        return MemoryPresence()

    async def _announce_revocation(self, user_id: str, session_ids: list[str]) -> None:
        # Every node closes that session's sockets (4401); see realtime/hub.py.
        await self.bus.publish(SESSIONS_REVOKED_TOPIC, orjson.dumps(session_ids))

    async def _reload_keys_forever(self) -> None:
        # `ultrachat keys rotate-jwt` writes to the database; every node reloads from there.
        while True:
            await asyncio.sleep(KEY_RELOAD_SECONDS)
            try:
                await self.keys.reload()
            except Exception:
                log.warning("signing key reload failed; keeping the current keys", exc_info=True)

    async def _record_rotation(self, key_id: int, reason: str) -> None:
        await self.audit.record(
            "keys.data_rotated",
            target_type="data_key",
            target_id=str(key_id),
            details={"reason": reason},
        )

    async def _maintain_data_keys_forever(self) -> None:
        """Follow key changes made elsewhere, and re-wrap rows after a rotation (one node at
        a time: the job holds a lease)."""
        while True:
            await asyncio.sleep(self.settings.data_key_refresh_seconds)
            try:
                await self.data_keys.refresh()
                if await self.rewrap.pending():
                    await self.rewrap.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("data key refresh or re-wrap failed; retrying", exc_info=True)

    async def start(self) -> None:
        await self.data_keys.start()
        await self.keys.ensure_initialized()
        if self.replicas is not None:
            await self.replicas.start()
        await self.bus.start()
        await self.cache.start()
        await self.hub.start()
        await self.presence.start()
        await self.committer.start()
        await self.admission.start()
        self._tasks.append(asyncio.create_task(self._reload_keys_forever()))
        self._tasks.append(asyncio.create_task(self._maintain_data_keys_forever()))
        await self.maintenance.start()
        POOLS.track(*self.pools)
        await self.collector.start()
        await self.live.start()
        # Everything loaded so far (modules, the app, the key ring) lives as long as the
        # process: move it out of the collector's sight so full collections stay short.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    async def stop(self) -> None:
        await self.live.stop()
        await self.collector.stop()  # its last snapshot needs the database, bus and pools
        POOLS.untrack(*self.pools)
        await self.maintenance.stop()
        await self.hub.stop(CLOSE_SERVICE_RESTART, "server restarting; reconnect and resume")
        await self.admission.stop()
        await self.committer.stop()
        await self.presence.stop()
        await self.cache.stop()
        await self.bus.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.data_keys.stop()
        self.hasher.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.close()
