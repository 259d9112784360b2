"""``ultrachat serve --workers N``: N processes share the port and deliver to one another over
Redis; SIGTERM to the supervisor closes every worker's sockets with 1012 and exits.

PostgreSQL + Redis only: more than one worker needs Redis (refused on the embedded default,
tested in tests/test_cli.py).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import close_all, wait_seq
from tests.support.app import migrate, settings_for
from tests.support.backends import Backend
from tests.support.server import node_env, start_node, stop_node
from tests.support.wsclient import RealtimeClient

WORKERS = 2
MAX_CLIENTS = 24  # connect until every worker has some (the kernel picks the acceptor)


def worker_of(workers: list[psutil.Process], client: RealtimeClient) -> int:
    """Which worker holds the server side of this client's socket."""
    assert client.ws is not None
    port = client.ws.local_address[1]
    for index, worker in enumerate(workers):
        if any(c.raddr and c.raddr.port == port for c in worker.net_connections("tcp")):
            return index
    raise AssertionError(f"no worker holds the connection from port {port}")


async def test_workers_share_the_port_and_deliver_across_processes(
    backend: Backend, tmp_path: Path
) -> None:
    if not backend.redis_url:
        pytest.skip("--workers needs Redis: runs on the PostgreSQL + Redis backend")
    await migrate(settings_for(backend))
    node = await start_node(
        node_env(backend, tmp_path, log_level="info"), tmp_path, "--workers", str(WORKERS)
    )
    clients: list[RealtimeClient] = []
    try:
        # The supervisor's children: the workers, and multiprocessing's resource tracker.
        children = psutil.Process(node.process.pid).children()
        workers = [p for p in children if any("spawn_main" in a for a in p.cmdline())]
        assert len(workers) == WORKERS
        users = [await live_user(node) for _ in range(MAX_CLIENTS)]
        channel_id = await channel_with(node, users[0], *users[1:])
        served_by: set[int] = set()
        for user in users:
            client = RealtimeClient(node.ws, user.token)
            await client.connect()
            clients.append(client)
            served_by.add(worker_of(workers, client))
            if len(served_by) == WORKERS and len(clients) >= 4:
                break
        assert served_by == set(range(WORKERS)), "every connection landed on one worker"

        acks = [await c.send_message(channel_id, f"from {i}") for i, c in enumerate(clients)]
        for client, client_msg_id in zip(clients, acks, strict=True):
            await client.wait_for(lambda c=client, m=client_msg_id: m in c.acks)
        last = max(c.acks[m]["seq"] for c, m in zip(clients, acks, strict=True))
        for client in clients:
            await wait_seq(client, channel_id, last)
            bodies = {e["data"]["body"] for e in client.events[channel_id]}
            assert bodies == {f"from {i}" for i in range(len(clients))}

        node.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.wait_closed(5.0) for c in clients))
        assert codes == [1012] * len(clients)
        try:
            await asyncio.to_thread(node.process.wait, 15)
        except subprocess.TimeoutExpired:
            # Seen once under a loaded CI run; the shutdown's own log says which step hung.
            pytest.fail(f"the node outlived SIGTERM by 15 s; its log ends:\n{node.log()[-6000:]}")
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        await close_all(clients)
        stop_node(node)
