"""The native real-time edge: /api/v1/ws on picows, inside uvicorn's HTTP server.

uvicorn parses the HTTP request; when it is a WebSocket upgrade it hands the socket to the
``ws`` protocol class it was given, which here is ``EdgeProtocol``: picows (a WebSocket
parser and writer in C) takes the socket over, and our code runs in its callbacks. So the
edge shares the server's port, workers and lifespan, and ``ultrachat serve`` stays one
command, but a connection holds no ASGI scope, no receive loop and no task while it is idle:
its frames arrive in ``on_ws_frame``, a delivery is one ``transport.send`` of bytes encoded
once per node, and keepalive pings come from the hub's one sweep per interval. Idle memory
and CPU per delivery are measured in docs/benchmarks.md.

The protocol itself (hello, frames, replies) is ``session.py``, shared with the ASGI route.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import Any, cast

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest
from picows.picows import WSAutoPingStrategy, WSProtocol  # type: ignore[attr-defined]

from ultrachat.errors import Unauthorized
from ultrachat.gateway.middleware import valid_request_id
from ultrachat.realtime import session
from ultrachat.realtime.connection import (
    CLOSE_BAD_HELLO,
    CLOSE_INTERNAL_ERROR,
    CLOSE_PEER_GONE,
    CLOSE_SERVICE_RESTART,
    CLOSE_UNAUTHORIZED,
    Connection,
    as_bytes,
)
from ultrachat.storage import new_id

log = logging.getLogger(__name__)
access_log = logging.getLogger("ultrachat.access")
# picows logs every connection at INFO; ours is set to WARNING in logs.py. An adapter,
# because picows makes a child Logger per connection (never freed) for a plain Logger.
_WIRE_LOG = logging.LoggerAdapter(logging.getLogger("ultrachat.realtime.wire"))

PATH = b"/api/v1/ws"
RUNTIME_KEY = "runtime"  # where the app's lifespan puts the Runtime in uvicorn's app state
TEXT, CLOSE, CONTINUATION, BINARY = (
    WSMsgType.TEXT,
    WSMsgType.CLOSE,
    WSMsgType.CONTINUATION,
    WSMsgType.BINARY,
)
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_TEXT = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_NORMAL = 1000
CLOSE_REPLY_WAIT = 3.0  # how long a close waits for the peer's close before dropping TCP
MAX_EARLY_FRAMES = 64  # frames a client may send before its hello is answered
# picows' ``WSTransport.send`` copies a payload of up to 8192 bytes into its own write buffer;
# a larger one it writes as ``writelines([header, payload])`` where ``header`` is a view of
# that same reused buffer, not a copy. uvloop keeps the view until the socket takes it, so a
# frame still waiting there goes out with the header of whatever was sent after it (another
# frame's length: the peer reads a cut message, then garbage). Larger frames are therefore
# sent from a buffer of their own, with room for the header in front (at most 14 bytes).
_PICOWS_COPIES = 8192
_HEADER_ROOM = 14


class EdgeProtocol(WSProtocol):  # type: ignore[misc]
    """The socket after uvicorn's upgrade: picows' protocol, fed the request uvicorn read.

    uvicorn calls the class with its config and state, then ``connection_made`` and
    ``data_received`` with the request's bytes; picows reads into its own buffer after that.
    It is also one of uvicorn's connections, so a graceful shutdown calls ``shutdown``."""

    __slots__ = ("_runtime", "_server_state")

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None:
        runtime = app_state[RUNTIME_KEY]
        settings = runtime.settings
        super().__init__(
            None,  # host and port: a client's
            None,  # path: a client's
            False,  # server side
            lambda request: _listener_for(runtime, request),
            _WIRE_LOG,
            True,  # an exception in our callbacks closes that connection (1011)
            None,  # no handshake timeout: the request has been read already
            False,  # no auto ping (a task per connection): the hub's sweep pings
            20,
            20,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            settings.ws_max_message_bytes,
            None,
            2048,  # picows' smallest read buffer; it grows for larger frames
        )
        self._server_state = server_state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_state.connections.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """The upgrade request, as uvicorn re-serialized it (picows itself only reads into
        its buffer, through ``get_buffer``/``buffer_updated``)."""
        view = self.get_buffer(-1)
        if len(data) > len(view):
            self.transport.disconnect()  # headers beyond picows' 16 KiB limit
            return
        view[: len(data)] = data
        self.buffer_updated(len(data))

    def shutdown(self) -> None:
        """uvicorn is stopping: ask the client to reconnect elsewhere."""
        listener = self.listener
        if isinstance(listener, EdgeListener):
            listener.shut_down()
        elif not self.transport.is_disconnected:
            self.transport.disconnect()


def _listener_for(runtime: Any, request: WSUpgradeRequest) -> EdgeListener | None:
    """The listener for an upgrade to our path; None answers 404."""
    if request.path.split(b"?", 1)[0] != PATH:
        return None
    return EdgeListener(runtime)


class EdgeListener(WSListener):
    """One client socket's frames, from its hello to its end."""

    __slots__ = (
        "_closing",
        "_early",
        "_fragments",
        "_inflight",
        "_opening",
        "_paused_reading",
        "_runtime",
        "_timer",
        "_worker",
        "connection",
        "transport",
    )

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self.transport: WSTransport | None = None
        self.connection: EdgeConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._opening: asyncio.Task[None] | None = None  # hello → session open
        # Messages that came before the session opened (None: a binary one).
        self._early: deque[bytes | None] | None = None
        self._worker: asyncio.Task[None] | None = None  # handles queued frames, one by one
        self._fragments: list[bytes] | None = None  # a fragmented message being assembled
        self._inflight = 0  # sends being stored
        self._paused_reading = False
        self._closing = False  # a close was started: no frame is handled from then on

    # picows' callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._timer = asyncio.get_running_loop().call_later(
            self._runtime.settings.ws_hello_timeout_seconds, self._no_hello
        )

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        connection = self.connection
        if connection is not None:
            connection.heard += 1
        kind = frame.msg_type
        if kind is CLOSE:
            self._closed_by_peer(frame)
            return
        if kind is not TEXT and kind is not CONTINUATION:
            if kind is BINARY:
                self._message(None)
            return  # a pong: heard
        payload = frame.get_payload_as_bytes()
        if kind is CONTINUATION or not frame.fin:
            whole = self._assemble(kind, payload, frame.fin)
            if whole is not None:
                self._message(whole)
            return
        self._message(payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._timer is not None:
            self._timer.cancel()
        connection = self.connection
        if connection is not None:
            connection.gone()
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()  # it closes the session itself
        elif connection is not None:
            self._runtime.hub.spawn(session.close_session(self._runtime, connection))

    def pause_writing(self) -> None:
        if self.connection is not None:
            self.connection.paused = True

    def resume_writing(self) -> None:
        if self.connection is not None:
            self.connection.resumed()

    # Messages

    def _assemble(self, kind: WSMsgType, payload: bytes, fin: bool) -> bytes | None:
        """A fragmented message's parts, joined when the last one arrives (RFC 6455 5.4)."""
        if kind is not CONTINUATION:  # the first fragment
            self._fragments = [payload]
            return None
        parts = self._fragments
        if parts is None:
            self._close(CLOSE_PROTOCOL_ERROR, "continuation without a first fragment")
            return None
        parts.append(payload)
        if sum(map(len, parts)) > self._runtime.settings.ws_max_message_bytes:
            self._close(CLOSE_TOO_BIG, "message too big")
            return None
        if not fin:
            return None
        self._fragments = None
        return b"".join(parts)

    def _message(self, payload: bytes | None) -> None:
        """A whole client message (None: a binary one)."""
        connection = self.connection
        if self._closing or (connection is not None and connection.closing):
            return  # closing: what the peer sent after it is not acted on
        if connection is None or not connection.opened:
            if self._opening is None:
                self._hello(payload)
            else:
                self._hold(payload)
            return
        if payload is None:
            connection.push(session.NOT_TEXT)
            return
        frame = session.parse_frame(payload)
        if frame is None:
            if not _utf8(payload):
                self._close(CLOSE_INVALID_TEXT, "text frames must be UTF-8")
                return
            connection.push(session.NOT_AN_OBJECT)
            return
        kind = frame.get("type")
        if kind == "ping":
            connection.push(session.PONG)
        elif kind == "send":
            self._store(connection, frame)
        else:
            self._hold_frame(frame)

    def _hello(self, payload: bytes | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parsed = (
            session.parse_hello(payload) if payload is not None else "first frame must be a hello"
        )
        if isinstance(parsed, str):
            self._close(CLOSE_BAD_HELLO, parsed)
            return
        self._opening = asyncio.get_running_loop().create_task(self._open(*parsed))

    async def _open(self, token: str, resume: dict[str, int]) -> None:
        runtime, transport = self._runtime, self.transport
        assert transport is not None
        try:
            claims = await runtime.auth.authenticate(token)
        except Unauthorized as exc:
            self._close(CLOSE_UNAUTHORIZED, exc.message)
            return
        except Exception:
            log.exception("checking a real-time hello's token failed")
            self._close(CLOSE_INTERNAL_ERROR, "server error; reconnect")
            return
        if self._closing:  # closed while the token was checked (too many early frames)
            return
        settings = runtime.settings
        connection = EdgeConnection(
            new_id(), transport, claims.user_id, claims.session_id, settings.ws_send_queue_max
        )
        self.connection = connection
        if access_log.isEnabledFor(logging.INFO):
            _log_session(transport, connection)
        try:
            await session.open_session(runtime, connection, resume)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("opening a real-time session failed")
                self._closing = True
                close_transport(transport, CLOSE_INTERNAL_ERROR, "server error; reconnect")
            connection.gone()
            self.connection = None  # closed here: not again when the socket goes
            # In a task of its own: the peer answering the close cancels this one, which
            # must not cut the cleanup short (the connection would stay in the hub).
            runtime.hub.spawn(session.close_session(runtime, connection))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        connection.opened = True
        self._opening = None  # done: its task, coroutine and context need not stay alive
        early, self._early = self._early, None
        for payload in early or ():
            self._message(payload)  # ignored once a close has started

    def _hold(self, payload: bytes | None) -> None:
        """A frame sent before the session opened: handled once it has."""
        early = self._early
        if early is None:
            early = self._early = deque()
        if len(early) >= MAX_EARLY_FRAMES:
            self._close(CLOSE_POLICY, "wait for ready before sending more frames")
            return
        early.append(payload)

    def _hold_frame(self, frame: dict[str, Any]) -> None:
        """Typing, presence and the rest, in order, by one worker while any wait."""
        connection = self.connection
        assert connection is not None
        if connection.pending is None:
            connection.pending = deque()
        connection.pending.append(frame)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(connection))

    async def _work(self, connection: EdgeConnection) -> None:
        pending = connection.pending
        try:
            while pending and not connection.closing:
                frame = pending.popleft()
                try:
                    await session.handle(self._runtime, connection, frame.get("type"), frame)
                except Exception:  # one frame's failure (Redis down) ends nothing else
                    log.exception("a real-time %r frame failed", frame.get("type"))
                    connection.push(session.error("internal_error", "not done; try again"))
        finally:
            self._worker = None

    def _store(self, connection: EdgeConnection, frame: dict[str, Any]) -> None:
        """A send runs on its own; at MAX_INFLIGHT_SENDS the socket stops being read."""
        self._inflight += 1
        sending = session.send(self._runtime, connection, frame)
        task = asyncio.get_running_loop().create_task(sending)
        task.add_done_callback(self._stored)
        if self._inflight >= session.MAX_INFLIGHT_SENDS and self.transport is not None:
            self._paused_reading = True
            self.transport.underlying_transport.pause_reading()

    def _stored(self, _: asyncio.Task[None]) -> None:
        self._inflight -= 1
        if self._paused_reading and self._inflight < session.MAX_INFLIGHT_SENDS:
            self._paused_reading = False
            transport = self.transport
            if transport is not None and not transport.is_disconnected:
                transport.underlying_transport.resume_reading()

    # Closing

    def _no_hello(self) -> None:
        self._timer = None
        if self._opening is None:
            self._close(CLOSE_BAD_HELLO, "no hello within the time limit")

    def _close(self, code: int, reason: str) -> None:
        self._closing = True
        if self.connection is not None:
            self.connection.close_soon(code, reason)
        elif self.transport is not None:
            close_transport(self.transport, code, reason)

    def _closed_by_peer(self, frame: WSFrame) -> None:
        transport = self.transport
        assert transport is not None
        if not transport.is_close_frame_sent:
            code = frame.get_close_code()
            transport.send_close(code if code else CLOSE_NORMAL)
        transport.disconnect()

    def shut_down(self) -> None:
        self._close(CLOSE_SERVICE_RESTART, "server restarting; reconnect and resume")


class EdgeConnection(Connection):
    """A connection on the native edge: frames are written to picows' transport."""

    __slots__ = (
        "_heard_then",
        "_live",
        "_pinged",
        "heard",
        "opened",
        "paused",
        "pending",
        "transport",
    )

    def __init__(
        self,
        connection_id: str,
        transport: WSTransport,
        user_id: str,
        session_id: str,
        max_queue: int,
    ) -> None:
        super().__init__(connection_id, user_id, session_id, max_queue)
        self.transport = transport
        self._live = False  # frames wait until ``start`` (``ready`` after the joins)
        self.opened = False  # the session is open: the client's frames are handled
        self.paused = False  # the transport's buffer is above its high-water mark
        self.heard = 0  # frames received, counted by the listener
        self._heard_then = 0
        self._pinged = False
        self.pending: deque[dict[str, Any]] | None = None  # client frames to handle

    def push(self, frame: bytes | str) -> None:
        if self.closing:
            return
        if self._live and not self.paused and not self._queue:
            try:
                send_text(self.transport, frame)
            except Exception:
                self.finish()
                return
            self._sent += 1
            return
        self._enqueue(frame)

    def start(self) -> None:
        self._live = True
        self._drain()

    def resumed(self) -> None:
        self.paused = False
        self._drain()

    def _drain(self) -> None:
        queue, transport = self._queue, self.transport
        if not queue:
            return
        half = self.max_queue // 2
        while queue and not self.paused and not self.closing:
            send_text(transport, queue.popleft())
            self._sent += 1
            if self._room is not None and len(queue) <= half:
                self._release_room()

    def _busy(self) -> bool:
        # Before ``start`` frames wait for the session to open, not for the socket: a slow
        # open is no stalled peer (it was taken for one, and cut off at its hello, once an
        # open took longer than a ping interval).
        return self._live and (self.paused or bool(self._queue))

    def _progress(self) -> int:
        # While paused the transport's buffer shrinks as the peer reads: progress too.
        buffered = self.transport.underlying_transport.get_write_buffer_size()
        return self._sent * 4_294_967_296 - buffered

    def sweep(self) -> None:
        """Give up a peer that took nothing while frames waited, or that answered nothing
        (not even the last sweep's ping) for a whole interval; else ping it if it was quiet."""
        if self.transport.is_disconnected:
            return
        if self.stalled():
            self._abandon("took nothing for a whole interval")
            return
        if self.heard != self._heard_then:
            self._heard_then = self.heard
            self._pinged = False
        elif self._pinged:
            self._abandon("answered no ping for a whole interval")
        else:
            self._pinged = True
            self.transport.send_ping()

    def _abandon(self, why: str) -> None:
        log.info("connection %s %s; abandoned", self.id, why)
        self.abandoned = True
        self.finish()
        self._closed(CLOSE_PEER_GONE)
        self.transport.disconnect(graceful=False)

    def gone(self) -> None:
        """The socket is closed: nothing more can be sent."""
        self.finish()

    async def close(self, code: int, reason: str) -> None:
        self.finish()
        self._closed(code)
        close_transport(self.transport, code, reason)


def send_text(transport: WSTransport, frame: bytes | str) -> None:
    """One text frame, whose bytes nothing sent later can change (see ``_PICOWS_COPIES``)."""
    payload = as_bytes(frame)
    if len(payload) <= _PICOWS_COPIES:
        transport.send(TEXT, payload)
        return
    buffer = bytearray(_HEADER_ROOM)
    buffer += payload
    # picows writes the header into the room in front; what the socket does not take at
    # once is copied (its _fast_write), and this buffer is never reused anyway.
    transport.send_reuse_external_bytearray(TEXT, buffer, _HEADER_ROOM)


def close_transport(transport: WSTransport, code: int, reason: str) -> None:
    """Send a close frame and drop the TCP connection once the peer answers, or after a
    few seconds (closing first could reset the connection with the close frame unread)."""
    if transport.is_disconnected or transport.is_close_frame_sent:
        return
    # Any code: WSCloseCode names only the standard ones, ours (4xxx) are ints.
    transport.send_close(cast("WSCloseCode", code), reason.encode()[:123])
    asyncio.get_running_loop().call_later(CLOSE_REPLY_WAIT, transport.disconnect)


def _log_session(transport: WSTransport, connection: EdgeConnection) -> None:
    """The access line of the ASGI server's own WebSocket protocols, which this edge
    replaces: the path as asked for (a token in it is redacted by logs.py)."""
    request = transport.request
    access_log.info(
        "websocket",
        extra={
            "request_id": valid_request_id(request.headers.get("x-request-id")) or uuid.uuid4().hex,
            "route": request.path.decode("latin-1"),
            "status": 101,
            "user_id": connection.user_id,
            "connection_id": connection.id,
        },
    )


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True
