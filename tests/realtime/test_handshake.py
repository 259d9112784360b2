"""The hello handshake and its refusals."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets

from tests.realtime.helpers import channel_with, live_user
from tests.support.server import Node
from tests.support.wsclient import RealtimeClient


async def test_hello_gets_ready_then_live_events(nodes: list[Node]) -> None:
    node = nodes[0]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    client = RealtimeClient(node.ws, bob.token)
    ready = await client.connect()
    assert ready["user_id"] == bob.id
    assert ready["connection_id"]
    sender = RealtimeClient(node.ws, ann.token)
    await sender.connect()
    cmid = await sender.send_message(channel_id, "hello bob")
    await sender.wait_for(lambda: cmid in sender.acks)
    await client.wait_for(lambda: client.last_seq(channel_id) == 2)
    event = client.events[channel_id][-1]
    assert event["event"] == "message.created"
    assert event["data"]["body"] == "hello bob"
    assert sender.acks[cmid]["seq"] == 2
    await client.close()
    await sender.close()


async def test_bad_token_closes_4401(nodes: list[Node]) -> None:
    async with websockets.connect(nodes[0].ws) as ws:
        await ws.send(orjson.dumps({"type": "hello", "token": "not-a-jwt"}).decode())
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4401


async def test_no_hello_closes_4400(nodes: list[Node]) -> None:
    async with websockets.connect(nodes[0].ws) as ws:
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4400


@pytest.mark.parametrize("seq", [-1, 2**63, "5", True, 1.5])
async def test_a_resume_seq_out_of_range_closes_4400(nodes: list[Node], seq: object) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws) as ws:
        hello = {"type": "hello", "token": user.token, "resume": {"c": seq}}
        await ws.send(orjson.dumps(hello).decode())
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4400
