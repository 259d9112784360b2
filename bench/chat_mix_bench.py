"""A chat REST workload: history pages, channel lists and profiles between sends.

Starts its own server (so nothing else shares it), creates users in channels, then runs
``--clients`` concurrent clients for ``--duration`` seconds. Each client loops: open a channel
(newest history page), list its channels, read its profile, and every ``--send-every``
iterations send a message. Reports latency per route and the cache hit rate per resource
scraped from the server's ``/metrics`` (the counters' change during the run).

    uv run python bench/chat_mix_bench.py --clients 32 --duration 20
    ULTRACHAT_DATABASE_URL=... ULTRACHAT_REDIS_URL=... uv run python bench/chat_mix_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(__file__))
from realtime_bench import bench_env, free_port, make_user, pct, stop_server

_CACHE_LINE = re.compile(
    r'^ultrachat_cache_requests_total\{resource="([^"]+)",result="(hit|miss)"\} (\S+)$'
)


async def cache_counts(http: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    text = (await http.get("/metrics")).text
    counts = {}
    for line in text.splitlines():
        match = _CACHE_LINE.match(line)
        if match:
            counts[(match[1], match[2])] = float(match[3])
    return counts


async def main(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = bench_env("uc-mix-")
    server = subprocess.Popen(
        [sys.executable, "-m", "ultrachat", "serve", "--port", str(port)], env=env
    )
    latencies: dict[str, list[float]] = defaultdict(list)
    errors = 0
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            users = [await make_user(http) for _ in range(args.clients)]
            channels = []
            for index in range(args.channels):
                owner = users[index % len(users)]
                # Everyone is in every channel: clients read and post where they belong.
                members = [u for u, _ in users if u != owner[0]]
                made = await http.post(
                    "/api/v1/channels",
                    json={"name": f"room{index}", "kind": "public", "member_ids": members},
                    headers={"Authorization": f"Bearer {owner[1]}"},
                )
                made.raise_for_status()
                channels.append(made.json()["id"])
            before = await cache_counts(http)
            deadline = time.monotonic() + args.duration

            async def client(user_id: str, token: str) -> None:
                nonlocal errors
                headers = {"Authorization": f"Bearer {token}"}
                rng = random.Random(user_id)
                iteration = 0
                while time.monotonic() < deadline:
                    channel_id = rng.choice(channels)
                    calls = [
                        ("history", "GET", f"/api/v1/channels/{channel_id}/messages", None),
                        ("channels", "GET", "/api/v1/channels", None),
                        ("me", "GET", "/api/v1/users/me", None),
                    ]
                    if iteration % args.send_every == 0:
                        calls.append(
                            (
                                "send",
                                "POST",
                                f"/api/v1/channels/{channel_id}/messages",
                                {"body": "hello", "client_msg_id": secrets.token_hex(8)},
                            )
                        )
                    for route, method, path, body in calls:
                        started = time.perf_counter()
                        response = await http.request(method, path, json=body, headers=headers)
                        latencies[route].append((time.perf_counter() - started) * 1000)
                        if response.status_code >= 400:
                            errors += 1
                    iteration += 1

            started = time.monotonic()
            await asyncio.gather(*(client(u, t) for u, t in users))
            elapsed = time.monotonic() - started
            after = await cache_counts(http)
    finally:
        stop_server(server)

    hit_rates = {}
    totals = {"hit": 0.0, "miss": 0.0}
    for resource in sorted({r for r, _ in after}):
        hits = after.get((resource, "hit"), 0) - before.get((resource, "hit"), 0)
        misses = after.get((resource, "miss"), 0) - before.get((resource, "miss"), 0)
        if hits + misses:
            hit_rates[resource] = {
                "hits": int(hits),
                "misses": int(misses),
                "hit_rate": round(hits / (hits + misses), 4),
            }
            totals["hit"] += hits
            totals["miss"] += misses
    requests = sum(len(v) for v in latencies.values())
    return {
        "database": "postgresql"
        if "postgresql" in env.get("ULTRACHAT_DATABASE_URL", "")
        else "sqlite",
        "redis": bool(env.get("ULTRACHAT_REDIS_URL")),
        "clients": args.clients,
        "requests": requests,
        "requests_per_s": round(requests / elapsed),
        "errors": errors,
        "latency_ms": {
            route: {"p50": round(pct(v, 0.5), 2), "p99": round(pct(v, 0.99), 2), "n": len(v)}
            for route, v in sorted(latencies.items())
        },
        "cache": hit_rates,
        "cache_hit_rate_overall": round(
            totals["hit"] / max(1.0, totals["hit"] + totals["miss"]), 4
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--send-every", type=int, default=5)
    parser.add_argument("--duration", type=float, default=20.0)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
