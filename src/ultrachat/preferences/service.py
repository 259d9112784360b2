"""Read and replace a user's preferences; the cache is invalidated on every node first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from ultrachat.cache.config import USER_PREFERENCES
from ultrachat.cache.tiered import TieredCache
from ultrachat.errors import InvalidInput, UltraChatError
from ultrachat.preferences.models import UserPreferences
from ultrachat.storage import Database

MAX_BYTES = 16 * 1024


class PayloadTooLarge(UltraChatError):
    status_code = 413
    code = "payload_too_large"


def parse(body: bytes) -> dict[str, Any]:
    """The preferences object in a request body, or the error to answer with."""
    if len(body) > MAX_BYTES:
        raise PayloadTooLarge(f"preferences are at most {MAX_BYTES} bytes of JSON")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput("preferences must be a JSON object")
    return value


class PreferencesService:
    def __init__(self, db: Database, cache: TieredCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def get(self, user_id: str) -> dict[str, Any]:
        """The user's preferences; ``{}`` until they store some."""
        if self._cache is None:
            return await self._load(user_id)
        return await self._cache.get(USER_PREFERENCES, user_id, lambda: self._load(user_id))

    async def replace(self, user_id: str, preferences: dict[str, Any]) -> dict[str, Any]:
        data = orjson.dumps(preferences).decode()
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            row = await session.get(UserPreferences, user_id, with_for_update=True)
            if row is None:
                session.add(UserPreferences(user_id=user_id, data=data, updated_at=now))
            else:
                row.data, row.updated_at = data, now
        # Committed; forget it on every node before answering (invalidate, don't update).
        if self._cache is not None:
            await self._cache.invalidate([(USER_PREFERENCES, user_id)])
        return preferences

    async def _load(self, user_id: str) -> dict[str, Any]:
        async with self._db.sessions() as session:
            data = await session.scalar(
                select(UserPreferences.data).where(UserPreferences.user_id == user_id)
            )
        if data is None:
            return {}
        value: dict[str, Any] = orjson.loads(data)
        return value
