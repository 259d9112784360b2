"""The load generator's WebSocket connection to a node, on picows.

picows parses frames in C and calls ``Link.on_ws_frame`` for each one, so a connection
costs no task and no queue while it is up: a frame's payload goes from picows' buffer to
the owner's ``on_frame`` as bytes in the same callback. Parsing frames was what limited a
load-test process with the pure-Python ``websockets`` client (one task per connection,
``await recv()``); the numbers are in docs/benchmarks.md ("Load testing").

A ``Link`` is one connection's life: TCP (optionally from a chosen source address),
upgrade, the protocol's hello until ``ready``, then frames, then the close. What the
frames mean, and reconnecting, is the owner's (``worker.Conn``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Protocol

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
TEXT, BINARY, CONTINUATION, CLOSE = (
    WSMsgType.TEXT,
    WSMsgType.BINARY,
    WSMsgType.CONTINUATION,
    WSMsgType.CLOSE,
)
KEEPALIVE = 20.0  # seconds between the worker's sweeps (websockets' ping interval)
NO_CLOSE_FRAME = 1006  # what RFC 6455 calls a close without a close frame (a reset, a kill)
USER_AGENT = "ultrachat-loadtest"
# picows logs each connection at INFO. An adapter, because for a plain Logger picows makes
# a Logger object per connection.
_WIRE_LOG = logging.LoggerAdapter(logging.getLogger("ultrachat.loadtest.wire"))


class ConnectFailed(Exception):
    """The handshake did not end in ``ready``; the message is the reason, short."""


class Owner(Protocol):
    """What a link reports to: frames, a frame it could not handle, its close."""

    def on_frame(self, raw: bytes) -> None: ...
    def on_error(self, reason: str) -> None: ...
    def on_closed(self, code: int) -> None: ...


async def open_socket(address: tuple[str, int], source: str) -> socket.socket:
    """A TCP socket from ``source`` (any free port) to ``address``.

    IP_BIND_ADDRESS_NO_PORT leaves the port to connect(), so the kernel may reuse a port
    towards other destinations: the limit is then ~28,000 connections per (source,
    destination) pair, and more source addresses give more pairs."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if sys.platform == "linux":
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock  # picows sets TCP_NODELAY itself


def reason(exc: BaseException) -> str:
    """A failed connect, in a few words: the report counts connections per reason."""
    if isinstance(exc, ConnectFailed):
        return str(exc)
    if isinstance(exc, WSInvalidStatusError) and exc.response is not None:
        return f"HTTP {exc.response.status}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} errno {exc.errno}"
    return type(exc).__name__


class FragmentError(Exception):
    """A continuation frame with no message to continue, or a new message inside one."""


class Link(WSListener):
    """One connection: ``connect`` returns it at ``ready``, then frames go to the owner."""

    def __init__(self, owner: Owner) -> None:
        super().__init__()
        self.owner = owner
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deliver = self._first  # the hello's answer; then the owner's on_frame
        self.fragments: bytearray | None = None  # a message that came in several frames
        self.attached = False  # the owner has it: report the close
        self.close_code: int | None = None  # set once disconnected
        self.silent = 0  # keepalive sweeps since the last frame

    @classmethod
    async def connect(
        cls,
        owner: Owner,
        url: str,
        hello: bytes,
        seconds: float,
        source: tuple[tuple[str, int], str] | None = None,
    ) -> Link:
        """Connect (from ``source``: the node's address and a local one), say ``hello``,
        return at ``ready``. ``seconds`` for TCP and the upgrade, and again for ``ready``."""
        link = cls(owner)
        factory = None
        if source is not None:
            address, local = source
            # ws_connect refuses ``sock=``: a socket factory is how it takes a bound one.
            factory = lambda _url: open_socket(address, local)  # noqa: E731
        try:
            transport, _ = await asyncio.wait_for(
                ws_connect(
                    lambda _request, _response: link,
                    url,
                    socket_factory=factory,
                    websocket_handshake_timeout=seconds,
                    logger_name=_WIRE_LOG,
                    extra_headers={"User-Agent": USER_AGENT},
                    # uvloop's own transport (the worker runs on uvloop) rather than
                    # aiofastnet's on top of it: no faster here, one layer more.
                    use_aiofastnet=False,
                ),
                seconds,
            )
        except BaseException:
            link.ready.cancel()  # an upgrade that completes after all finds it and hangs up
            raise
        if link.transport is None:  # closed during the upgrade: picows made no listener
            raise ConnectFailed("closed at upgrade")
        transport.send(TEXT, hello)
        try:
            await asyncio.wait_for(link.ready, seconds)
        except BaseException as exc:  # a refusal, no answer, or the run stopping
            link.drop()
            if isinstance(exc, TimeoutError):
                raise ConnectFailed("no ready in time") from None
            raise
        link.attached = True
        if link.close_code is not None:  # closed right after ready: tell the owner once it
            asyncio.get_running_loop().call_soon(owner.on_closed, link.close_code)  # has it
        return link

    def send(self, payload: bytes) -> None:
        # No backpressure: picows buffers what the socket does not take (sends are few).
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(TEXT, payload)

    def close(self) -> None:
        """Start the closing handshake: the node answers, then we disconnect."""
        if self.transport is not None:
            self.transport.send_close(WSCloseCode.OK)  # once: picows ignores a second one

    def drop(self) -> None:
        """Close without waiting for the node's answer (written out first, though)."""
        if self.transport is not None:
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    def keepalive(self) -> None:
        """The worker's sweep, every KEEPALIVE seconds: ping a link that heard nothing since
        the last one, drop it if the pong does not come either. This finds a node that
        vanished without closing its sockets (a killed process's are reset by its kernel
        at once), as websockets' keepalive did, without a timer per connection."""
        self.silent += 1
        if self.transport is None or self.silent < 2:
            return
        if self.silent == 2:
            self.transport.send_ping()
        else:
            self.transport.disconnect(graceful=False)

    async def closed(self) -> None:
        if self.transport is not None:
            await self.transport.wait_disconnected()

    # picows' callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.ready.cancelled():  # connect() gave up already
            transport.disconnect()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.silent = 0
        try:
            kind = frame.msg_type
            if kind == TEXT and frame.fin and self.fragments is None:  # every frame, in practice
                self.deliver(frame.get_payload_as_bytes())
            elif kind == CLOSE:
                # Answer, as RFC 6455 asks (the node waits for it), with its code, and go.
                code = frame.get_close_code()
                transport.send_close(code if code != WSCloseCode.NO_INFO else WSCloseCode.OK)
                transport.disconnect()
            elif kind in (TEXT, BINARY, CONTINUATION):
                payload = self._fragment(frame)
                if payload is not None:
                    self.deliver(payload)
            # PING: picows answers it (enable_auto_pong). PONG: keepalive's, heard above.
        except Exception as exc:  # a frame we cannot read: count it, close, read no more
            self.owner.on_error(f"client {type(exc).__name__}")
            self.deliver = _discard
            self.close()

    def _fragment(self, frame: WSFrame) -> bytes | None:
        """A message in several frames, whole at its last one. The node never fragments,
        but RFC 6455 lets it: joining beats misreading the first part as a message."""
        starts = frame.msg_type != CONTINUATION
        if starts == (self.fragments is not None):
            raise FragmentError
        if self.fragments is None:
            self.fragments = bytearray()
        self.fragments += frame.get_payload_as_bytes()
        if not frame.fin:
            return None
        payload, self.fragments = bytes(self.fragments), None
        return payload

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        received = transport.close_handshake.recv if transport.close_handshake else None
        # websockets' numbers: 1006 without a close frame (a reset, a kill), 1005 for one
        # without a code.
        self.close_code = (received.code.value or 1005) if received else NO_CLOSE_FRAME
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(f"closed {self.close_code} at hello"))
        elif self.attached:
            self.owner.on_closed(self.close_code)

    def _first(self, raw: bytes) -> None:
        """The hello's answer: ``ready``, or the connect fails."""
        if self.ready.done():  # connect() gave up waiting
            return
        try:
            first = orjson.loads(raw)
        except orjson.JSONDecodeError:
            first = raw
        if isinstance(first, dict) and first.get("type") == "ready":
            self.deliver = self.owner.on_frame
            self.ready.set_result(None)
        else:
            self.ready.set_exception(ConnectFailed(f"first frame {str(first)[:40]}"))
            self.drop()


def _discard(raw: bytes) -> None:
    """A closing link's frames (after one it could not read)."""
