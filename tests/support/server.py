"""Real UltraChat server processes for end-to-end tests (real sockets, real WebSockets).

Each node is ``python -m ultrachat serve`` on a free loopback port, configured through
environment variables like a deployment. Nodes of one cluster share a database and (on the
PostgreSQL backend) a Redis key prefix, so they exchange events over the Redis bus.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.app import (
    FAST_HASHING,
    GENEROUS_LIMITS,
    TEST_MASTER_KEY,
    migrate,
    settings_for,
)
from tests.support.backends import Backend

# Short timers so that timeouts and heartbeats are observable within a test.
TEST_SERVER_ENV = {
    "ULTRACHAT_WS_HELLO_TIMEOUT_SECONDS": "1",
    "ULTRACHAT_WS_PING_INTERVAL_SECONDS": "0.5",
    "ULTRACHAT_RATE_LIMIT_API_MAX": "0",
    "ULTRACHAT_LOG_LEVEL": "warning",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def node_env(backend: Backend, data_dir: Path, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRACHAT_")}
    values: dict[str, Any] = {
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_key_prefix": backend.redis_prefix,
        "data_dir": str(data_dir),
        "master_key": TEST_MASTER_KEY,
        **FAST_HASHING,
        **GENEROUS_LIMITS,
    }
    env.update({f"ULTRACHAT_{k.upper()}": str(v) for k, v in values.items()})
    env.update(TEST_SERVER_ENV)
    env.update({f"ULTRACHAT_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


async def start_node(env: dict[str, str], log_dir: Path, *args: str) -> Node:
    """``ultrachat serve`` on a free port; ``args`` are more of its options."""
    port = free_port()
    log_path = log_dir / f"node-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ultrachat", "serve", "--port", str(port), *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    node = Node(port, process, log_path, env)
    await wait_ready(node)
    return node


async def wait_ready(node: Node, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            if node.process.poll() is not None:
                raise RuntimeError(f"node exited early:\n{node.log()}")
            try:
                response = await client.get(node.http + "/healthz", timeout=1)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"node did not start:\n{node.log()}")
            await asyncio.sleep(0.1)


def stop_node(node: Node, sig: int = signal.SIGTERM) -> None:
    if node.process.poll() is None:
        node.process.send_signal(sig)
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


@asynccontextmanager
async def cluster(
    backend: Backend, tmp: Path, nodes: int = 1, **overrides: Any
) -> AsyncIterator[list[Node]]:
    """``nodes`` server processes sharing the backend's database (and Redis when set)."""
    await migrate(settings_for(backend))
    env = node_env(backend, tmp, **overrides)
    started: list[Node] = []
    try:
        for _ in range(nodes):
            started.append(await start_node(env, tmp))
        yield started
    finally:
        for node in started:
            stop_node(node)
