"""GCRA as one Lua script in Redis: exact across processes and machines.

The script reads the TAT, decides, and writes the new TAT in one atomic step, using Redis's
own clock so that nodes with skewed clocks still agree. Times are integer microseconds (see
``ultrachat.ratelimit.base``); the TAT is stored with ``%.0f`` because Lua's ``tostring``
would round it to 14 significant digits.
"""

from __future__ import annotations

from redis.asyncio import Redis

from ultrachat.ratelimit.base import MICROSECONDS, Decision, Limit

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local commit = ARGV[3] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
if commit then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
             'PX', math.ceil((new_tat - now) / 1000))
end
local remaining = math.floor((burst - (new_tat - now)) / interval)
return {1, remaining, 0, new_tat - now}
"""


class RedisRateLimiter:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "rl:"
        self._script = client.register_script(_GCRA)

    async def _run(self, key: str, limit: Limit, commit: bool) -> Decision:
        allowed, remaining, retry_after_us, reset_after_us = await self._script(
            keys=[self._prefix + key],
            args=[limit.interval_us, limit.burst_us, "1" if commit else "0"],
        )
        return Decision(
            bool(allowed),
            limit.max,
            int(remaining),
            int(retry_after_us) / MICROSECONDS,
            int(reset_after_us) / MICROSECONDS,
        )

    async def hit(self, key: str, limit: Limit) -> Decision:
        return await self._run(key, limit, commit=True)

    async def peek(self, key: str, limit: Limit) -> Decision:
        return await self._run(key, limit, commit=False)

    async def reset(self, key: str) -> None:
        await self._client.delete(self._prefix + key)
