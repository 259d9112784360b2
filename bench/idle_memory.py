"""Idle WebSocket connections: the server's memory (PSS) and asyncio tasks per connection.

Starts an UltraChat node the way ``ultrachat serve`` does (the same CLI path; ``--ws`` only
swaps uvicorn's WebSocket implementation, to compare them), creates a few users who share
one channel, opens N authenticated connections (hello, then ``ready``) from client worker
processes, lets them sit idle, and reads the server's PSS from /proc/<pid>/smaps_rollup
before and after. Tasks are counted inside the server (a bench-only route added to the app).

    uv run python bench/idle_memory.py --connections 2000
    uv run python bench/idle_memory.py --connections 5000 --client-procs 2 --ws websockets-sansio

Without ULTRACHAT_DATABASE_URL the node runs on the embedded default (SQLite, no Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from realtime_bench import bench_env, free_port, make_user, stop_server


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError("no Pss line")


# The server side: `ultrachat serve`, with the WebSocket implementation swapped and one
# bench-only route that counts the event loop's tasks.


def debug_app() -> Any:
    from ultrachat.gateway.app import create_app

    app = create_app()

    @app.get("/bench/tasks", include_in_schema=False)
    async def tasks() -> dict[str, Any]:
        import gc

        gc.collect()
        names: dict[str, int] = {}
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", type(coro).__name__)
            names[name] = names.get(name, 0) + 1
        runtime = app.state.runtime
        return {
            "tasks": sum(names.values()),
            "by_coroutine": names,
            "connections": len(runtime.hub.connections),
        }

    snapshots: dict[str, Any] = {}

    @app.get("/bench/trace/{label}", include_in_schema=False)
    async def trace(label: str) -> dict[str, Any]:
        """With PYTHONTRACEMALLOC set: the Python allocations grown since the first label."""
        import gc
        import tracemalloc

        if not tracemalloc.is_tracing():
            return {}
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        if not snapshots:
            snapshots[label] = snapshot
            return {}
        first = next(iter(snapshots.values()))
        out: dict[str, Any] = {}
        for key in ("filename", "lineno"):
            stats = snapshot.compare_to(first, key)[:25]
            out[key] = [[str(s.traceback[0]), s.size_diff, s.count_diff] for s in stats]
        return out

    return app


def serve(ws_impl: str) -> None:
    import uvicorn

    from ultrachat.cli.server import serve as serve_command

    real_run = uvicorn.run

    def run(app: str, **kwargs: Any) -> None:
        if ws_impl != "default":
            kwargs["ws"] = ws_impl
        print(f"bench server: ws={kwargs.get('ws', 'auto')}", file=sys.stderr, flush=True)
        real_run("__main__:debug_app", **kwargs)

    uvicorn.run = run  # type: ignore[assignment]
    serve_command.main(sys.argv[sys.argv.index("--") + 1 :], standalone_mode=True)


# The client side.


async def hold(url: str, tokens: list[str], q: Any, stop: Any) -> None:
    connections = []
    sem = asyncio.Semaphore(100)

    async def one(token: str) -> None:
        async with sem:
            ws = await websockets.connect(
                url, max_queue=None, compression=None, ping_interval=None, open_timeout=60
            )
            await ws.send(orjson.dumps({"type": "hello", "token": token}).decode())
            ready = orjson.loads(await ws.recv())
            assert ready["type"] == "ready", ready
            connections.append(ws)

    await asyncio.gather(*(one(t) for t in tokens))
    q.put(("connected", len(connections)))
    await asyncio.to_thread(stop.wait)
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


def client_main(url: str, tokens: list[str], q: Any, stop: Any) -> None:
    raise_nofile()
    import uvloop

    uvloop.install()
    asyncio.run(hold(url, tokens, q, stop))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    port = free_port()
    env = bench_env("uc-idle-")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", args.ws, "--", "--port", str(port)],
        env={**env, "PYTHONTRACEMALLOC": "1"} if args.trace else env,
    )
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/api/v1/ws"
    stop = mp.Event()
    procs: list[mp.Process] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            users = [await make_user(http) for _ in range(args.users)]
            owner = users[0][1]
            channel = await http.post(
                "/api/v1/channels",
                json={"name": "idle", "kind": "public"},
                headers={"Authorization": f"Bearer {owner}"},
            )
            channel.raise_for_status()
            channel_id = channel.json()["id"]
            for _, token in users[1:]:
                (
                    await http.post(
                        f"/api/v1/channels/{channel_id}/join",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                ).raise_for_status()
            await asyncio.sleep(args.settle)
            before = pss_kib(server.pid)
            tasks_before = (await http.get("/bench/tasks")).json()
            await http.get("/bench/trace/before")

            tokens = [users[i % len(users)][1] for i in range(args.connections)]
            q: Any = mp.Queue()
            started = time.monotonic()
            for i in range(args.client_procs):
                p = mp.Process(
                    target=client_main, args=(url, tokens[i :: args.client_procs], q, stop)
                )
                p.start()
                procs.append(p)
            connected = sum(q.get(timeout=600)[1] for _ in procs)
            connect_s = time.monotonic() - started
            await asyncio.sleep(args.settle)
            after = pss_kib(server.pid)
            tasks_after = (await http.get("/bench/tasks")).json()
            traced = (await http.get("/bench/trace/after")).json()
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
        shutdown_s = stop_server(server)

    extra_tasks = tasks_after["tasks"] - tasks_before["tasks"]
    return {
        "ws": args.ws,
        "connections": connected,
        "server_connections": tasks_after["connections"],
        "users": args.users,
        "connect_s": round(connect_s, 1),
        "pss_before_kib": before,
        "pss_after_kib": after,
        "kib_per_connection": round((after - before) / connected, 2),
        "tasks_per_connection": round(extra_tasks / connected, 2),
        "tasks_by_coroutine": {
            k: v - tasks_before["by_coroutine"].get(k, 0)
            for k, v in tasks_after["by_coroutine"].items()
            if v - tasks_before["by_coroutine"].get(k, 0)
        },
        "server_shutdown_s": round(shutdown_s, 2),
        **({"python_allocations_grown": traced} if traced else {}),
    }


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve(sys.argv[sys.argv.index("--serve") + 1])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each reading")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="trace the server's Python allocations (slower; not for PSS)",
    )
    parser.add_argument(
        "--ws",
        default="default",
        help="uvicorn's ws implementation: default (what serve sets), websockets, "
        "websockets-sansio, wsproto",
    )
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
