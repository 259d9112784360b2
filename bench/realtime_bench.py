"""Real-time delivery benchmark: ack latency, end-to-end latency and fan-out throughput.

Starts its own UltraChat server (so it can read the server's CPU time), creates users and a
channel through the API, connects receivers over WebSocket in worker processes, and sends
messages at a fixed rate from senders. Every message carries its send time (CLOCK_MONOTONIC,
shared by all processes on the machine), so receivers measure end-to-end latency; senders
measure ack latency (send → ack, i.e. until the commit). Receivers also check that every seq
arrives exactly once.

    uv run python bench/realtime_bench.py --receivers 1000 --rate 20 --duration 20
    uv run python bench/realtime_bench.py --receivers 10 --rate 1000 --duration 20 --senders 20

Use ULTRACHAT_DATABASE_URL / ULTRACHAT_REDIS_URL in the environment to benchmark PostgreSQL
and Redis; without them the server runs on the embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

PASSWORD = "bench-password-123"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# What every benchmark's own server runs with: no API limit, cheap hashing for the setup's
# thousands of accounts (login cost is measured in auth_bench.sh, not here), quiet logs.
BENCH_SERVER_ENV = {
    "ULTRACHAT_RATE_LIMIT_API_MAX": "0",
    "ULTRACHAT_RATE_LIMIT_AUTH_MAX": "1000000",
    "ULTRACHAT_RATE_LIMIT_ACCOUNT_MAX": "1000000",
    "ULTRACHAT_ARGON2_MEMORY_KIB": "64",
    "ULTRACHAT_ARGON2_TIME_COST": "1",
    "ULTRACHAT_LOG_LEVEL": "warning",
}


def bench_env(prefix: str, **extra: str) -> dict[str, str]:
    """This environment plus the benchmark server's settings, and a fresh data directory
    unless ULTRACHAT_DATA_DIR is given; the schema is migrated."""
    env = dict(os.environ)
    env.setdefault("ULTRACHAT_DATA_DIR", tempfile.mkdtemp(prefix=prefix))
    env.update(BENCH_SERVER_ENV)
    env.update(extra)
    subprocess.run(
        [sys.executable, "-m", "ultrachat", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_server(server: subprocess.Popen[bytes]) -> float:
    """SIGTERM the bench's server and wait for it (kill after 60 s); seconds it took."""
    stopping = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    return time.monotonic() - stopping


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def make_user(http: httpx.AsyncClient) -> tuple[str, str]:
    name = f"b_{secrets.token_hex(5)}"
    r = await http.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD})
    r.raise_for_status()
    t = await http.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    t.raise_for_status()
    return r.json()["id"], t.json()["access_token"]


# Receivers (one worker process per --receiver-procs)


async def receive(url: str, tokens: list[str], channel_id: str, expected: int, q: Any) -> None:
    latencies: list[float] = []
    seen: dict[int, int] = {}
    connected = 0

    async def one(token: str) -> None:
        nonlocal connected
        async with websockets.connect(url, max_queue=None, compression=None) as ws:
            await ws.send(orjson.dumps({"type": "hello", "token": token}).decode())
            await ws.recv()
            connected += 1
            got = 0
            async for raw in ws:
                now = time.monotonic_ns()
                frame = orjson.loads(raw)
                if frame.get("type") != "event" or frame["event"] != "message.created":
                    continue
                body = frame["data"]["body"]
                latencies.append((now - int(body.split(":", 1)[0])) / 1e6)
                seen[frame["seq"]] = seen.get(frame["seq"], 0) + 1
                got += 1
                if got >= expected:
                    return

    tasks = [asyncio.create_task(one(t)) for t in tokens]
    while connected < len(tokens):
        await asyncio.sleep(0.05)
    q.put(("connected", len(tokens)))
    _done, pending = await asyncio.wait(tasks, timeout=expected / 5 + 120)
    for task in pending:
        task.cancel()
    deliveries = sum(seen.values())
    duplicates = sum(c - 1 for c in seen.values() if c > len(tokens))
    q.put(("done", latencies[:200_000], deliveries, duplicates, len(pending)))


def receiver_main(url: str, tokens: list[str], channel_id: str, expected: int, q: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(receive(url, tokens, channel_id, expected, q))


# Senders


async def send_all(
    url: str, tokens: list[str], channel_id: str, rate: float, count: int
) -> list[float]:
    acks: list[float] = []
    per_sender = count // len(tokens)
    interval = len(tokens) / rate

    async def one(token: str) -> None:
        async with websockets.connect(url, max_queue=None, compression=None) as ws:
            await ws.send(orjson.dumps({"type": "hello", "token": token}).decode())
            await ws.recv()
            pending: dict[str, int] = {}

            async def read_acks() -> None:
                acked = 0
                async for raw in ws:
                    frame = orjson.loads(raw)
                    if frame.get("type") == "ack":
                        sent = pending.pop(frame["client_msg_id"])
                        acks.append((time.monotonic_ns() - sent) / 1e6)
                        acked += 1
                        if acked == per_sender:
                            return
                    elif frame.get("type") == "error":
                        print("send error:", frame, file=sys.stderr)

            reader = asyncio.create_task(read_acks())
            start = time.monotonic()
            for i in range(per_sender):
                target = start + i * interval
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                cmid = secrets.token_hex(8)
                now = time.monotonic_ns()
                pending[cmid] = now
                await ws.send(
                    orjson.dumps(
                        {
                            "type": "send",
                            "channel_id": channel_id,
                            "client_msg_id": cmid,
                            "body": f"{now}:bench",
                        }
                    ).decode()
                )
            await asyncio.wait_for(reader, 60)

    await asyncio.gather(*(one(t) for t in tokens))
    return acks


async def main(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = bench_env("uc-bench-", ULTRACHAT_WS_SEND_QUEUE_MAX="100000")
    command = [sys.executable, "-m", "ultrachat", "serve", "--port", str(port)]
    if args.server_cpu is not None:
        command = ["taskset", "-c", str(args.server_cpu), *command]
    server = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/api/v1/ws"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            _owner_id, owner_token = await make_user(http)
            receivers = [await make_user(http) for _ in range(args.receivers)]
            senders = [await make_user(http) for _ in range(args.senders)]
            channel = await http.post(
                "/api/v1/channels",
                json={"name": "bench", "kind": "public"},
                headers={"Authorization": f"Bearer {owner_token}"},
            )
            channel.raise_for_status()
            channel_id = channel.json()["id"]
            for _, token in receivers + senders:
                joined = await http.post(
                    f"/api/v1/channels/{channel_id}/join",
                    headers={"Authorization": f"Bearer {token}"},
                )
                joined.raise_for_status()

        count = int(args.rate * args.duration)
        count -= count % args.senders
        q: Any = mp.Queue()
        procs = []
        tokens = [t for _, t in receivers]
        for i in range(args.receiver_procs):
            chunk = tokens[i :: args.receiver_procs]
            if chunk:
                p = mp.Process(target=receiver_main, args=(url, chunk, channel_id, count, q))
                p.start()
                procs.append(p)
        for _ in procs:
            assert q.get(timeout=120)[0] == "connected"

        cpu_before = cpu_seconds(server.pid)
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "-o",
                    args.profile,
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(args.duration)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        started = time.monotonic()
        acks = await send_all(url, [t for _, t in senders], channel_id, args.rate, count)
        results = [q.get(timeout=args.duration + 180) for _ in procs]
        elapsed = time.monotonic() - started
        cpu_used = cpu_seconds(server.pid) - cpu_before
        for p in procs:
            p.join(timeout=10)
        if profiler is not None:
            profiler.wait(timeout=60)
    finally:
        shutdown_s = stop_server(server)

    latencies = [lat for r in results for lat in r[1]]
    deliveries = sum(r[2] for r in results)
    expected = count * args.receivers
    report = {
        "receivers": args.receivers,
        "senders": args.senders,
        "target_rate_msgs_per_s": args.rate,
        "messages": count,
        "acked": len(acks),
        "achieved_rate_msgs_per_s": round(count / elapsed, 1),
        "ack_ms": {
            "p50": round(pct(acks, 0.5), 2),
            "p99": round(pct(acks, 0.99), 2),
            "max": round(max(acks, default=0), 2),
        },
        "e2e_ms": {
            "p50": round(pct(latencies, 0.5), 2),
            "p99": round(pct(latencies, 0.99), 2),
            "max": round(max(latencies, default=0), 2),
        },
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "lost": expected - deliveries,
        "duplicated": sum(r[3] for r in results),
        "deliveries_per_s": round(deliveries / elapsed),
        "server_cpu_s": round(cpu_used, 2),
        "server_cpu_us_per_delivery": round(cpu_used / max(deliveries, 1) * 1e6, 2),
        "elapsed_s": round(elapsed, 2),
        "server_shutdown_s": round(shutdown_s, 2),
        "mean_ack_ms": round(statistics.fmean(acks), 2) if acks else None,
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--receiver-procs", type=int, default=1)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second, total")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--server-cpu", type=int, default=None, help="pin the server to a core")
    parser.add_argument("--profile", default="", help="write a py-spy raw profile of the server")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
