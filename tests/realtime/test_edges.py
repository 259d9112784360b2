"""The two edges that carry the real-time protocol.

Every other real-time test runs against ``ultrachat serve`` as configured by default, i.e.
the native edge (picows). Here: what only the native edge does itself (fragmented messages,
invalid UTF-8, other paths, frames sent before ``ready``), and the ASGI route
(``ULTRACHAT_WS_EDGE=asgi``) through the same protocol steps, so neither edge drifts.

A failing token check is made by patching the server's own objects, so those tests run the
edge in this process, with the edge's uvicorn settings but on pytest's event loop (not
uvloop) and default WebSocket limits, rather than as a node.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import uvicorn
import websockets
from fastapi import FastAPI

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import connected, history, of_type, round_trip, send_and_ack, wait_seq
from tests.support.app import migrate
from tests.support.backends import Backend
from tests.support.isolated import isolated_settings
from tests.support.server import Node, cluster
from ultrachat.auth.tokens import AccessClaims
from ultrachat.gateway.app import create_app


@pytest.fixture(scope="module")
async def asgi_node(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Node]:
    async with cluster(
        backend, tmp_path_factory.mktemp(f"asgi-{backend.name}"), 1, ws_edge="asgi"
    ) as (node,):
        yield node


# What ``ultrachat serve`` gives uvicorn as its WebSocket protocol, per edge.
UVICORN_WS = {"native": "ultrachat.realtime.edge:EdgeProtocol", "asgi": "websockets-sansio"}


@dataclass
class InProcess:
    edge: str
    app: FastAPI
    ws: str


@pytest.fixture(params=["native", "asgi"])
async def in_process(request: pytest.FixtureRequest, backend: Backend) -> AsyncIterator[InProcess]:
    """The app served by uvicorn in this process, on either edge, so a test can patch it."""
    settings = isolated_settings(backend)
    await migrate(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        ws=UVICORN_WS[request.param],
        lifespan="on",
        log_config=None,  # leave this process's logging alone
        access_log=False,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:  # startup: the lifespan, then the listening socket
                assert not serving.done(), "the server did not start"
                await asyncio.sleep(0.05)
            yield InProcess(request.param, app, f"ws://127.0.0.1:{port}/api/v1/ws")
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 15)


def hello(token: str) -> str:
    return orjson.dumps({"type": "hello", "token": token}).decode()


async def recv_json(ws: websockets.ClientConnection) -> dict[str, object]:
    frame: dict[str, object] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


def masked(payload: bytes) -> bytes:
    """One text frame as a client writes it (masked), for frames websockets would not send
    as they are, or not all in one write."""
    mask = os.urandom(4)
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def opened_by_hand(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket whose frames the test reads and writes itself: unlike websockets, it
    answers nothing (no pong, no close) unless told to."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = [
        f"GET {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    writer.write("\r\n".join([*request, "", ""]).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each frame the server wrote (unmasked, unfragmented here)."""
    frames = []
    while data:
        opcode, length, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            (length,), at = struct.unpack("!H", data[2:4]), 4
        elif length == 127:
            (length,), at = struct.unpack("!Q", data[2:10]), 10
        frames.append((opcode, data[at : at + length]))
        data = data[at + length :]
    return frames


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


# Both edges, served in this process


async def test_a_token_check_that_fails_closes_the_socket_and_the_server_carries_on(
    in_process: InProcess, nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await live_user(nodes[0])  # one database: the deployment's users are its users
    auth = in_process.app.state.runtime.auth
    real, checked = auth.authenticate, list[str]()

    async def authenticate(token: str) -> AccessClaims:
        checked.append(token)
        if len(checked) == 1:  # not a bad token: the check itself fails (its store is down)
            raise ConnectionError("session store unreachable")
        claims: AccessClaims = await real(token)
        return claims

    monkeypatch.setattr(auth, "authenticate", authenticate)
    async with websockets.connect(in_process.ws, compression=None) as ws:
        await ws.send(hello(user.token))
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(ws)  # no ready
    assert checked == [user.token]
    assert (ws.close_code, ws.close_reason) == (1011, "server error; reconnect")
    async with websockets.connect(in_process.ws, compression=None) as ws:
        await ws.send(hello(user.token))
        ready = await recv_json(ws)
        assert ready["type"] == "ready" and ready["user_id"] == user.id, ready
        await ws.send('{"type":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}
    assert len(checked) == 2


async def test_a_session_that_fails_to_open_closes_1011_and_leaves_nothing_behind(
    in_process: InProcess, nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await live_user(nodes[0])
    runtime = in_process.app.state.runtime
    real, calls = runtime.presence.connected, list[str]()

    async def connected(connection: Any) -> None:
        calls.append(connection.id)
        if len(calls) == 1:  # after the hub registered it and its channels were joined
            raise ConnectionError("presence store unreachable")
        await real(connection)

    monkeypatch.setattr(runtime.presence, "connected", connected)
    async with websockets.connect(in_process.ws, compression=None) as ws:
        await ws.send(hello(user.token))
        with pytest.raises(websockets.ConnectionClosed):
            while True:  # ready may come first: it is queued before the channels are joined
                await recv_json(ws)
    assert (ws.close_code, ws.close_reason) == (1011, "server error; reconnect")
    for _ in range(100):  # the cleanup finishes after the close frame
        if calls[0] not in runtime.hub.connections:
            break
        await asyncio.sleep(0.05)
    assert calls[0] not in runtime.hub.connections
    async with websockets.connect(in_process.ws, compression=None) as ws:
        await ws.send(hello(user.token))
        assert (await recv_json(ws))["type"] == "ready"
        await ws.send('{"type":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}
        assert len(runtime.hub.connections) == 1  # only the one open now


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


# Only the native edge holds frames that come before ready (at most 64): the ASGI route reads
# none until the session is open, so they wait in the socket and there is no limit to test.


def hello_and_early(token: str, early: int) -> bytes:
    """A hello and ``early`` frames (``{}``: answered ``unknown_type`` once handled) in one
    write, which the server reads at once, as it fits picows' first read buffer (2 KiB):
    every frame is in before the hello's token is even checked."""
    data = masked(hello(token).encode()) + masked(b"{}") * early
    assert len(data) < 2048
    return data


async def test_64_frames_sent_before_ready_are_all_handled(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws, compression=None) as ws:
        ws.transport.write(hello_and_early(user.token, 64))
        assert (await recv_json(ws))["type"] == "ready"
        for _ in range(64):
            error = await recv_json(ws)
            assert error["type"] == "error" and error["code"] == "unknown_type", error
        await ws.send('{"type":"ping"}')
        assert await recv_json(ws) == {"type": "pong"}


async def test_a_65th_frame_sent_before_ready_closes_1008(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws, compression=None) as ws:
        ws.transport.write(hello_and_early(user.token, 65))
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(ws)  # not even ready: the close is the first frame
    assert ws.close_code == 1008
    assert ws.close_reason == "wait for ready before sending more frames"


async def test_frames_held_before_a_1008_are_not_handled(nodes: list[Node]) -> None:
    node = nodes[0]
    ann = await live_user(node)
    channel_id = await channel_with(node, ann)
    send = {"type": "send", "client_msg_id": "held", "channel_id": channel_id, "body": "held"}
    reader, writer = await opened_by_hand(node.ws)
    try:
        # 65 frames before ready, in one read as above: a send, 63 more, and the one refused.
        held = masked(orjson.dumps(send)) + masked(b"{}") * 64
        writer.write(masked(hello(ann.token).encode()) + held)
        # This client never answers the close (on a real network its answer is a round trip
        # away): the server drops the connection a few seconds later, which ends the read.
        frames = server_frames(await asyncio.wait_for(reader.read(), 10))
    finally:
        writer.close()
    assert frames == [(0x8, struct.pack("!H", 1008) + b"wait for ready before sending more frames")]
    assert await history(node, ann, channel_id) == []


async def test_text_that_is_not_utf8_closes_1007(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with websockets.connect(nodes[0].ws, compression=None) as ws:
        await ws.send(hello(user.token))
        assert (await recv_json(ws))["type"] == "ready"
        # websockets refuses to send invalid text, so the frame is written by hand.
        ws.transport.write(masked(b'{"body":"\xff"}'))
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
