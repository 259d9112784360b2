"""The two edges that carry the real-time protocol.

Every other real-time test runs against ``ultrachat serve`` as configured by default, i.e.
the native edge (picows). Here: what only the native edge does itself (fragmented messages,
invalid UTF-8, other paths, frames sent before ``ready``), and the ASGI route
(``ULTRACHAT_WS_EDGE=asgi``) through the same protocol steps, so neither edge drifts.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import websockets

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import connected, of_type, round_trip, send_and_ack, wait_seq
from tests.support.backends import Backend
from tests.support.server import Node, cluster


@pytest.fixture(scope="module")
async def asgi_node(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Node]:
    async with cluster(
        backend, tmp_path_factory.mktemp(f"asgi-{backend.name}"), 1, ws_edge="asgi"
    ) as (node,):
        yield node


def hello(token: str) -> str:
    return orjson.dumps({"type": "hello", "token": token}).decode()


async def recv_json(ws: websockets.ClientConnection) -> dict[str, object]:
    frame: dict[str, object] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


# The ASGI route speaks the same protocol


async def test_asgi_edge_delivers_acks_and_answers(asgi_node: Node) -> None:
    node = asgi_node
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann), (node, bob)) as (sender, receiver):
        ack = await send_and_ack(sender, channel_id, "over the ASGI route")
        await wait_seq(receiver, channel_id, ack["seq"])
        assert receiver.events[channel_id][-1]["data"]["body"] == "over the ASGI route"
        await round_trip(receiver)
        await receiver.send_frame({"type": "nonsense"})
        await receiver.wait_for(lambda: bool(of_type(receiver, "error")))
        assert of_type(receiver, "error")[0]["code"] == "unknown_type"


async def test_asgi_edge_refuses_a_bad_hello_with_4400(asgi_node: Node) -> None:
    async with websockets.connect(asgi_node.ws, compression=None) as ws:
        await ws.send('{"type":"hullo"}')
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4400


# What the native edge does itself


async def test_fragmented_messages_are_joined(nodes: list[Node]) -> None:
    node = nodes[0]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, bob)) as (receiver,):
        async with websockets.connect(node.ws, compression=None) as ws:
            text = hello(ann.token)
            await ws.send([text[:10], text[10:20], text[20:]])  # three frames, one message
            assert (await recv_json(ws))["type"] == "ready"
            send = orjson.dumps(
                {"type": "send", "client_msg_id": "frag", "channel_id": channel_id, "body": "hi"}
            ).decode()
            await ws.send(iter([send[:7], send[7:]]))
            ack = await recv_json(ws)
            while ack["type"] == "event":  # her own message may come before her ack
                ack = await recv_json(ws)
            assert ack["type"] == "ack" and ack["client_msg_id"] == "frag", ack
        await wait_seq(receiver, channel_id, int(ack["seq"]))  # type: ignore[call-overload]


async def test_binary_frames_get_an_error_and_the_connection_stays(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws, compression=None) as ws:
        await ws.send(hello(user.token))
        assert (await recv_json(ws))["type"] == "ready"
        await ws.send(b'{"type":"ping"}')
        error = await recv_json(ws)
        assert error["type"] == "error" and error["code"] == "invalid_frame", error
        await ws.send('{"type":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}


async def test_frames_sent_before_ready_are_handled_after_it_in_order(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws, compression=None) as ws:
        await ws.send(hello(user.token))
        await ws.send('{"type":"ping"}')  # without waiting for ready
        await ws.send('{"type":"presence","status":"lazy"}')
        assert (await recv_json(ws))["type"] == "ready"
        assert await recv_json(ws) == {"type": "pong"}
        error = await recv_json(ws)
        assert error["code"] == "invalid_input", error


async def test_text_that_is_not_utf8_closes_1007(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws, compression=None) as ws:
        await ws.send(hello(user.token))
        assert (await recv_json(ws))["type"] == "ready"
        # websockets refuses to send invalid text, so the frame is written by hand.
        payload, mask = b'{"body":"\xff"}', os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        ws.transport.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1007


async def test_other_paths_are_not_upgraded(nodes: list[Node]) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(nodes[0].ws.replace("/api/v1/ws", "/api/v1/other"))
    assert refused.value.response.status_code == 404
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:  # HTTP is unaffected
        assert (await http.get("/healthz")).status_code == 200
