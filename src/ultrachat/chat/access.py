"""Who may read a channel, decided on fresh data before any read that may go to a replica.

Data may come from a replica that lags by up to the replica lag bound, but permission never
does: membership is read through the cache (invalidated on every node before a membership
change is acknowledged) or from the primary. So a member removed by an admin stops reading
the channel the moment the removal is acknowledged, even from a lagging replica.
"""

from __future__ import annotations

from ultrachat.chat import permissions, repository
from ultrachat.chat.caching import ChatCache
from ultrachat.storage import Database


class ChannelAccess:
    def __init__(self, db: Database, cache: ChatCache) -> None:
        self._db = db
        self._cache = cache

    async def ensure_readable(self, channel_id: str, actor: str) -> None:
        """Raise NotFound unless ``actor`` may read the channel (a member, or anyone if public)."""

        async def load() -> bool:
            async with self._db.sessions() as session:
                return await repository.get_member(session, channel_id, actor) is not None

        if await self._cache.is_member(channel_id, actor, load):
            return  # channels are never deleted, so a member's channel exists
        async with self._db.sessions() as session:
            permissions.ensure_visible(await repository.get_channel(session, channel_id), None)
