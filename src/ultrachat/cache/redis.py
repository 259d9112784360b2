"""Redis cache, shared by every node. Keys carry the deployment's prefix."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError


class RedisCache:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "cache:"

    async def get(self, key: str) -> bytes | None:
        return _as_bytes(await self._client.get(self._prefix + key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._client.mget([self._prefix + k for k in keys])
        return [_as_bytes(value) for value in values]

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._client.set(self._prefix + key, value, px=max(1, int(ttl_seconds * 1000)))

    async def delete(self, key: str) -> None:
        await self._client.delete(self._prefix + key)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False


def _as_bytes(value: bytes | str | None) -> bytes | None:
    # The client is made without decode_responses, so str never arrives; this satisfies typing.
    return value.encode() if isinstance(value, str) else value
