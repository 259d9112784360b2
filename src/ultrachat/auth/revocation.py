"""Which sessions are revoked, answered by one cache lookup per request.

A revoked session's id is written to the shared store (Redis when configured, so every node
sees it; in-process otherwise) for as long as any of its access tokens could still be valid:
one token lifetime plus leeway. Expired sessions need no entry: access tokens never outlive
their session.

Redis keeps nothing on disk here, so a restart would forget revocations. A sentinel key
marks the store as loaded; when it is missing, the list is rebuilt from the database (the
source of truth) before answering.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ultrachat.auth import repository
from ultrachat.cache import Cache
from ultrachat.metrics import cache as cache_metrics
from ultrachat.metrics.cache import CACHE_REQUESTS
from ultrachat.storage import Database

_SENTINEL = "auth:revocations-loaded"
# Its label in ultrachat_cache_requests_total: a hit is answered by the store, a miss
# reloaded the list from the database first.
RESOURCE = "session-revocation"
for _result in ("hit", "miss"):
    CACHE_REQUESTS.labels(RESOURCE, _result)
_PREFIX = "auth:revoked:"


class RevocationList:
    def __init__(self, store: Cache, db: Database, horizon: timedelta) -> None:
        self._store = store
        self._db = db
        self._horizon = horizon
        self._reload_lock = asyncio.Lock()

    async def revoke(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            await self._store.set(_PREFIX + session_id, b"1", self._horizon.total_seconds())

    async def is_revoked(self, session_id: str) -> bool:
        entry, loaded = await self._store.get_many([_PREFIX + session_id, _SENTINEL])
        if loaded is None:
            cache_metrics.requests(RESOURCE, "miss").inc()
            await self.reload()
            return await self._store.get(_PREFIX + session_id) is not None
        cache_metrics.requests(RESOURCE, "hit").inc()
        return entry is not None

    async def reload(self) -> None:
        async with self._reload_lock:
            if await self._store.get(_SENTINEL) is not None:
                return
            since = datetime.now(UTC) - self._horizon
            async with self._db.sessions() as session:
                ids = await repository.recently_revoked_session_ids(session, since)
            await self.revoke(ids)
            # The sentinel outlives the entries only by chance of restart; ten years is "always".
            await self._store.set(_SENTINEL, b"1", 10 * 365 * 86_400)
