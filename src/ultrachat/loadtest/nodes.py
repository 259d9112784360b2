"""Local server nodes the load test starts itself (``--spawn-nodes N``), for fault mode.

Each node is ``python -m ultrachat serve`` on a free loopback port, configured by the
environment like any deployment (``ULTRACHAT_DATABASE_URL``, ``ULTRACHAT_REDIS_URL``, the
master key...), so that the tool knows each node's process and can kill -9 it and start it
again on the same port. Logs go to one file per node.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


class NodeError(RuntimeError):
    """A node did not start; the message is one line (the log file says more)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalNode:
    index: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LocalNodes:
    def __init__(self, count: int, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.nodes = [
            LocalNode(i, port, log_dir / f"node-{i}-{port}.log")
            for i, port in enumerate(free_port() for _ in range(count))
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def migrate(self) -> None:
        """``ultrachat migrate`` once, before any node starts (it refuses an old schema)."""
        log = self.log_dir / "migrate.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [sys.executable, "-m", "ultrachat", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if done.returncode != 0:
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise NodeError(f"ultrachat migrate failed: {last[0]} (see {log})")

    def _spawn(self, node: LocalNode) -> None:
        with node.log_path.open("ab") as out:
            node.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "ultrachat",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(node.port),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node.starts += 1

    async def _wait_healthy(self, node: LocalNode, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                assert node.process is not None
                if node.process.poll() is not None:
                    raise NodeError(
                        f"node {node.index} exited with {node.process.returncode} "
                        f"(see {node.log_path})"
                    )
                try:
                    response = await http.get(node.url + "/healthz", timeout=1.0)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise NodeError(f"node {node.index} not healthy in {seconds:g} s")
                await asyncio.sleep(0.1)

    async def start(self) -> None:
        for node in self.nodes:
            self._spawn(node)
        await asyncio.gather(*(self._wait_healthy(node) for node in self.nodes))

    def kill(self, index: int) -> int:
        """kill -9 one node; its pid."""
        node = self.nodes[index]
        assert node.process is not None
        pid = node.process.pid
        os.kill(pid, signal.SIGKILL)
        node.process.wait()
        return pid

    async def restart(self, index: int) -> float:
        """Start a killed node again on its port; seconds until it is healthy."""
        started = time.monotonic()
        node = self.nodes[index]
        self._spawn(node)
        await self._wait_healthy(node)
        return time.monotonic() - started

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
