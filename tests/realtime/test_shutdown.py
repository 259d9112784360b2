"""Graceful shutdown: on SIGTERM a node stops accepting, closes every WebSocket with 1012
(reconnect elsewhere and resume) at once rather than after the graceful timeout, keeps every
send it acked, and exits.

A node of its own (it is stopped), with clients that keep sending right up to the signal.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import websockets

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import close_all, history
from tests.support.backends import Backend
from tests.support.server import cluster, start_node, stop_node
from tests.support.wsclient import RealtimeClient

CLIENTS = 4
CLOSED_WITHIN = 3.0  # uvicorn's graceful timeout is 10 s: well under it
EXITED_WITHIN = 8.0


async def test_sigterm_closes_with_1012_and_keeps_every_acked_send(
    backend: Backend, tmp_path: Path
) -> None:
    async with cluster(backend, tmp_path, 1) as (node,):
        users = [await live_user(node) for _ in range(CLIENTS)]
        channel_id = await channel_with(node, users[0], *users[1:])
        clients = [RealtimeClient(node.ws, user.token) for user in users]
        sending = True

        async def keep_sending(client: RealtimeClient) -> None:
            while sending:
                try:
                    await client.send_message(channel_id, "until the very end")
                except websockets.ConnectionClosed:
                    return
                await asyncio.sleep(0.002)

        try:
            for client in clients:
                await client.connect()
            senders = [asyncio.create_task(keep_sending(c)) for c in clients]
            for client in clients:
                await client.wait_for(lambda c=client: len(c.acks) >= 10, 10)

            signalled = time.monotonic()
            node.process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(c.wait_closed(CLOSED_WITHIN) for c in clients))
            closed_after = time.monotonic() - signalled
            sending = False
            await asyncio.gather(*senders)

            assert codes == [1012] * CLIENTS, [
                (c.close_code, c.ws and c.ws.close_reason) for c in clients
            ]
            assert closed_after < CLOSED_WITHIN
            returncode = await asyncio.to_thread(node.process.wait, EXITED_WITHIN)
            # uvicorn re-raises the signal once its shutdown (lifespan included) is done.
            assert returncode in (0, -signal.SIGTERM), node.log()
            assert "Traceback" not in node.log(), node.log()
            assert "timeout graceful shutdown exceeded" not in node.log(), node.log()
        finally:
            await close_all(clients)

        # Every send acked before the close is in the history, read by a fresh node on the
        # same database.
        acked = {ack["message_id"] for c in clients for ack in c.acks.values()}
        assert len(acked) >= 10 * CLIENTS
        again = await start_node(node.env, tmp_path)
        try:
            stored = {m["id"] for m in await history(again, users[0], channel_id)}
        finally:
            stop_node(again)
        assert acked <= stored, f"{len(acked - stored)} acked sends missing"
