"""L2: the tier every node shares, in Redis, under the deployment's key prefix.

Each entry ``<prefix>l2:<resource>:<key>`` has a companion version counter
``<prefix>l2v:<resource>:<key>``. A reader that misses fetches the version along with the
(absent) value in the same MGET; after loading from the database it stores the value only if
the version is still the same (one Lua script). An invalidation bumps the version and deletes
the value, atomically. So a load that read the database before a write committed can never
store its stale value after that write's invalidation: the version moved.

A write-through (``replace_many``) is a compare-and-set on the value itself: the writer read
the value, computed its successor, and the script stores the successor only if the value is
still the one read (same SHA-1), otherwise deletes it; either way it bumps the version like
an invalidation, so loads that began before the write cannot store over it.

Entries implied by another (``set_implied``: a user's channel list says they are a member of
each channel) are stored only if the *source* entry's version is still the one read before
it was loaded. That is safe because every change that invalidates an implied entry
invalidates its source in the same script (chat/caching.py: a membership change drops both
the pair and the user's channel list), so a source version that did not move means no
implied entry was invalidated since the source's load began either.

Expiry: ``time`` and ``both`` resources expire after their TTL here too. ``size`` resources
expire after the global TTL in L2 (a backstop: Redis cannot bound a resource's key count
cheaply; its own ``maxmemory`` policy bounds the whole of L2). docs/cache.md has the details.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.asyncio import Redis

from ultrachat.cache.config import CacheConfig

# A version only has to outlive the loads that read it (milliseconds); ten minutes is ample.
VERSION_TTL_MS = 600_000

_SET_IF_UNCHANGED = """
local ttl = ARGV[1]
local stored = 0
for i = 1, #KEYS, 2 do
  local expected = ARGV[i + 1]
  local current = redis.call('GET', KEYS[i + 1]) or ''
  if current == expected then
    redis.call('SET', KEYS[i], ARGV[i + 2], 'PX', ttl)
    stored = stored + 1
  end
end
return stored
"""

_SET_IF_SOURCE_UNCHANGED = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
  return 0
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[2])
end
return #KEYS - 1
"""

_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  redis.call('DEL', KEYS[i])
end
return #KEYS / 2
"""

_REPLACE_IF_UNCHANGED = """
local replaced = {}
local renew = tonumber(ARGV[2])
for i = 1, #KEYS, 2 do
  local expected = ARGV[i + 2]
  local current = redis.call('GET', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  if expected ~= '' and current and redis.sha1hex(current) == expected then
    if renew > 0 then
      redis.call('SET', KEYS[i], ARGV[i + 3], 'PX', renew)
    else
      redis.call('SET', KEYS[i], ARGV[i + 3], 'KEEPTTL')
    end
    replaced[#replaced + 1] = 1
  else
    redis.call('DEL', KEYS[i])
    replaced[#replaced + 1] = 0
  end
end
return replaced
"""

Version = bytes
"""An opaque version token read with a miss, handed back to ``set_many``."""


class RedisTier:
    def __init__(self, client: Redis, prefix: str, config: CacheConfig) -> None:
        self._client = client
        self._values = prefix + "l2:"
        self._versions = prefix + "l2v:"
        self._config = config
        self._set_script = client.register_script(_SET_IF_UNCHANGED)
        self._invalidate_script = client.register_script(_INVALIDATE)
        self._replace_script = client.register_script(_REPLACE_IF_UNCHANGED)
        self._implied_script = client.register_script(_SET_IF_SOURCE_UNCHANGED)

    def _keys(self, resource: str, key: str) -> tuple[str, str]:
        suffix = f"{resource}:{key}"
        return self._values + suffix, self._versions + suffix

    async def get_many(
        self, resource: str, keys: Sequence[str]
    ) -> list[tuple[bytes | None, Version]]:
        """(encoded value or None, version) for each key, in one round trip."""
        if not keys:
            return []
        names: list[str] = []
        for key in keys:
            names.extend(self._keys(resource, key))
        found = await self._client.mget(names)
        return [(_bytes(found[i]), _bytes(found[i + 1]) or b"") for i in range(0, len(found), 2)]

    async def set_many(self, resource: str, items: Sequence[tuple[str, bytes, Version]]) -> int:
        """Store each (key, encoded value) whose version is still the one read; how many."""
        if not items:
            return 0
        keys: list[str] = []
        args: list[bytes | int] = [self._ttl_ms(resource)]
        for key, value, version in items:
            keys.extend(self._keys(resource, key))
            args.extend((version, value))
        return int(await self._set_script(keys=keys, args=args))

    async def set_implied(
        self,
        source: tuple[str, str],
        version: Version,
        resource: str,
        items: Sequence[tuple[str, bytes]],
    ) -> int:
        """Store each (key, encoded value) of ``resource`` if ``source`` (resource, key) is
        still at ``version`` (read before the source's value was loaded); how many."""
        if not items:
            return 0
        keys = [self._keys(*source)[1]]
        args: list[bytes | int] = [version, self._ttl_ms(resource)]
        for key, value in items:
            keys.append(self._keys(resource, key)[0])
            args.append(value)
        return int(await self._implied_script(keys=keys, args=args))

    async def invalidate(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Delete each (resource, key) and bump its version, atomically."""
        if not pairs:
            return
        keys: list[str] = []
        for resource, key in pairs:
            keys.extend(self._keys(resource, key))
        await self._invalidate_script(keys=keys, args=[VERSION_TTL_MS])

    async def replace_many(
        self,
        resource: str,
        items: Sequence[tuple[str, bytes | None, bytes | None]],
        *,
        renew: bool = False,
    ) -> list[bool]:
        """For each (key, value as read, successor): store the successor, keeping the entry's
        TTL (or, with ``renew``, starting the resource's TTL again), if the value is still
        the one read; else delete it (a successor of None, or a value read as None, always
        deletes). Versions are bumped either way. Which were replaced."""
        if not items:
            return []
        keys: list[str] = []
        args: list[bytes | int | str] = [VERSION_TTL_MS, self._ttl_ms(resource) if renew else 0]
        for key, read, successor in items:
            keys.extend(self._keys(resource, key))
            if read is None or successor is None:
                args.extend(("", b""))
            else:  # a digest, not the value: the script compares without it crossing twice
                args.extend((hashlib.sha1(read, usedforsecurity=False).hexdigest(), successor))
        return [bool(r) for r in await self._replace_script(keys=keys, args=args)]

    def _ttl_ms(self, resource: str) -> int:
        config = self._config.resource(resource)
        ttl = config.ttl if config.expires else self._config.global_ttl
        return max(1, int(ttl * 1000))


def _bytes(value: bytes | str | None) -> bytes | None:
    # The client is made without decode_responses, so str never arrives; this satisfies typing.
    return value.encode() if isinstance(value, str) else value
