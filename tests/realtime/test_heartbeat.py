"""Heartbeats: a peer that stops answering is dropped, and the node forgets it.

The dead peer is a raw TCP socket that does the WebSocket upgrade by hand, says hello, and
then never answers a ping (and, in the busy case, never reads again). Test servers ping
every 0.5 s, so "a few seconds" is a generous bound for two intervals.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import connected, highest, metric, send_many
from tests.support.server import Node

DROP_WITHIN = 5.0
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def open_connections(node: Node) -> float:
    return await metric(node, "ultrachat_ws_connections")


async def until_connections(node: Node, expected: float, timeout: float = DROP_WITHIN) -> None:
    async def poll() -> None:
        while await open_connections(node) != expected:
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        now = await open_connections(node)
        raise AssertionError(f"{now} connections after {timeout}s, expected {expected}") from None


def text_frame(payload: bytes) -> bytes:
    """A client-to-server text frame: FIN, opcode 1, masked as RFC 6455 requires."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def recv_some(sock: socket.socket, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return b""


@asynccontextmanager
async def dead_peer(
    node: Node, token: str, resume: dict[str, int] | None = None, rcvbuf: int | None = None
) -> AsyncIterator[socket.socket]:
    """A hand-made WebSocket client, past its hello and the server's ready."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", node.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = await recv_some(sock, 5)
            assert chunk, f"closed during the upgrade: {received!r}"
            received += chunk
        head, _, received = received.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        assert status.startswith("HTTP/1.1 101"), head
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert headers["sec-websocket-accept"] == accept
        hello: dict[str, object] = {"type": "hello", "token": token}
        if resume is not None:
            hello["resume"] = resume
        await loop.sock_sendall(sock, text_frame(orjson.dumps(hello)))
        while b'"type":"ready"' not in received:
            chunk = await recv_some(sock, 5)
            assert chunk, f"closed instead of ready: {received!r}"
            received += chunk
        yield sock
    finally:
        sock.close()


async def test_a_peer_that_never_answers_pings_is_dropped(nodes: list[Node]) -> None:
    node = nodes[0]
    user = await live_user(node)
    await channel_with(node, user)
    before = await open_connections(node)
    async with dead_peer(node, user.token) as sock:
        # Read whatever comes (pings, the close), answer nothing, until the server hangs up.
        async def until_closed() -> None:
            while await recv_some(sock, DROP_WITHIN):
                pass

        await asyncio.wait_for(until_closed(), DROP_WITHIN)
    await until_connections(node, before)


async def test_a_dead_peer_with_data_pending_is_dropped_too(nodes: list[Node]) -> None:
    """Its socket buffers are full, so the server can neither flush nor close it cleanly;
    the node must still give it up and release what it held."""
    node = nodes[0]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann)) as (sender,):
        # Far more than loopback socket buffers hold (emoji: 4 bytes per character).
        acks = await send_many(sender, channel_id, ["\U0001f600" * 4000] * 300, batch=8)
        before = await open_connections(node)
        async with dead_peer(node, bob.token, resume={channel_id: 1}, rcvbuf=4096):
            await until_connections(node, before)  # it never reads again; the server gives up
        assert highest(acks) == 301
        await until_connections(node, before)
