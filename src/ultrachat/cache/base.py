"""The cache contract shared by the in-process and Redis implementations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Cache(Protocol):
    """Bytes by string key, each entry with a time to live.

    The in-process cache is private to one process; the Redis cache is shared by every node,
    so state that must hold across nodes (session revocation) lives there when configured.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> bool: ...
