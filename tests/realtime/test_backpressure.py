"""Backpressure: a slow consumer is cut off (4408) while the others stay on time, and it
resumes without loss.

The node (``tight_node``) runs with a send queue of 10 frames. The slow consumer is a
websockets client with a 1-frame receive queue that stops reading after ready: its socket
buffers fill, the server's writer for it blocks, its queue fills, and the server closes it
with 4408. The node's ping interval is long so that the heartbeat (which would rightly also
drop a peer that reads nothing at all) does not step in first: this test is about the queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import connected, highest, metric, send_and_ack, send_many, seqs, wait_seq
from tests.support.server import Node

# Far more than loopback socket buffers hold: 400 frames of ~16 KB (4-byte characters).
MESSAGES = 400
BIG = "\U0001f680" * 4000


async def read_until_closed(ws: websockets.ClientConnection) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []

    async def read() -> None:
        try:
            async for raw in ws:
                frames.append(orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass

    await asyncio.wait_for(read(), 15)
    return frames


async def test_slow_consumer_is_cut_off_and_resumes_without_loss(tight_node: Node) -> None:
    node = tight_node
    cut_off = 'ultrachat_ws_closed_total{code="4408"}'
    ann, bob, sloth = await live_user(node), await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob, sloth)
    cuts_before = await metric(node, cut_off)
    slow = await websockets.connect(node.ws, max_queue=1, compression=None)
    try:
        await slow.send(orjson.dumps({"type": "hello", "token": sloth.token}).decode())
        assert orjson.loads(await asyncio.wait_for(slow.recv(), 5))["type"] == "ready"
        # From here on the slow consumer reads nothing.
        async with connected((node, ann), (node, bob)) as (sender, normal):
            acks = await send_many(sender, channel_id, [BIG] * MESSAGES, batch=4)
            last = highest(acks)
            assert last == MESSAGES + 1
            for client in (sender, normal):
                await wait_seq(client, channel_id, last, timeout=20)
                assert seqs(client, channel_id) == list(range(2, last + 1))
                assert client.close_code is None
            assert await metric(node, cut_off) == cuts_before + 1

            # What was already on its way arrives, in order, then the 4408 close.
            frames = await read_until_closed(slow)
            assert slow.close_code == 4408, (slow.close_code, slow.close_reason)
            got = [f["seq"] for f in frames if f["type"] == "event"]
            assert got == list(range(2, 2 + len(got)))
            assert len(got) < last - 1  # it really was cut off

            # Resume from the last seq seen: everything else, once, in order; then live.
            seen = got[-1] if got else 1
            async with connected((node, sloth), resume={channel_id: seen}) as (back,):
                await wait_seq(back, channel_id, last, timeout=20)
                ack = await send_and_ack(sender, channel_id, "all caught up")
                await wait_seq(back, channel_id, ack["seq"])
                assert got + seqs(back, channel_id) == list(range(2, ack["seq"] + 1))
                assert back.close_code is None
            assert normal.close_code is None
    finally:
        await slow.close()
