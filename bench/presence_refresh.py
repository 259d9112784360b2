"""The node's CPU to refresh one connection's presence entry in Redis: the store as it is
(``RedisPresence.refresh``: one Lua script call per 500 connections) against what it
replaced (an HSET and an EXPIRE per connection in one pipeline per 500).

Every node refreshes every one of its connections once per third of the presence TTL (20 s
by default), so at 10,000 connections a worker this is a steady cost; the figure is the
process CPU time (client side: building, sending and parsing) per connection refreshed.

    uv run python bench/presence_refresh.py --connections 500 --rounds 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from ultrachat.realtime.presence import RedisPresence


async def pipelined(client: Redis, prefix: str, entries: Sequence[tuple[str, str, str]]) -> None:
    """The refresh before the script: two commands per connection, pipelined."""
    expires = f"{time.time() + 60:.3f}"
    async with client.pipeline(transaction=False) as pipe:
        for user_id, connection_id, status in entries:
            pipe.hset(prefix + "presence:" + user_id, connection_id, f"{status}|{expires}")
            pipe.expire(prefix + "presence:" + user_id, 61)
        await pipe.execute()


async def main(connections: int, rounds: int, url: str) -> None:
    client = Redis.from_url(url)
    prefix = f"ucbench:{secrets.token_hex(4)}:"
    store = RedisPresence(client, prefix)
    entries = [(f"0190{i:032x}"[:36], f"0191{i:032x}"[:36], "online") for i in range(connections)]
    results = {}
    try:
        # Each twice, interleaved; the second (warm: script loaded, pool open) is reported.
        for name in ("pipeline", "script", "pipeline", "script"):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(rounds):
                if name == "pipeline":
                    await pipelined(client, prefix, entries)
                else:
                    await store.refresh(entries, ttl=60)
            done = rounds * connections
            results[name] = {
                "cpu_us_per_connection": round((time.process_time() - cpu) / done * 1e6, 2),
                "wall_us_per_connection": round((time.perf_counter() - wall) / done * 1e6, 2),
            }
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    print(json.dumps({"connections": connections, "rounds": rounds, **results}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(main(args.connections, args.rounds, args.redis_url))
