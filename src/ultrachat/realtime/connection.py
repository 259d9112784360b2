"""One client WebSocket: frames go out at once while the socket takes them, else through a
bounded send queue drained by a writer task.

Producers never wait on a client: ``push`` sends or appends and returns. A frame is written
straight away, in the producer's call, when nothing waits ahead of it and the socket's
buffers have room (the ASGI server's send completes without suspending); only when the
socket pushes back is a writer task started, which finishes that frame, drains the queue in
order and ends. So an idle connection holds no task of its own (only the endpoint's receive
loop), and a delivery costs no task wake-up. Frames leave in the order they were pushed:
while the writer exists every frame goes through the queue behind it.

A client that lets its queue fill is cut off with 4408 (it resumes later without loss), so
one slow reader can neither stall the others nor grow this process's memory without bound.
A peer that takes nothing at all for a whole ping interval while frames wait is given up by
the hub's sweep (``Hub.sweep``, which calls ``stalled``): its socket buffers are full, so not
even a close frame gets through to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketState

from ultrachat.gateway.middleware import WS_SEND_KEY
from ultrachat.metrics.chat import WS_CLOSED

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER = 4408
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_HELLO = 4400
CLOSE_SERVICE_RESTART = 1012

_closing: set[asyncio.Task[None]] = set()  # keeps close tasks alive until they finish


class Connection:
    __slots__ = (
        "_closer",
        "_queue",
        "_room",
        "_seen",
        "_send",
        "_sent",
        "_writer",
        "abandoned",
        "channels",
        "closing",
        "id",
        "max_queue",
        "serving",
        "session_id",
        "status",
        "user_id",
        "ws",
    )

    def __init__(
        self, connection_id: str, ws: WebSocket, user_id: str, session_id: str, max_queue: int
    ) -> None:
        self.id = connection_id
        self.ws = ws
        self.user_id = user_id
        self.session_id = session_id
        self.max_queue = max_queue
        self.channels: set[str] = set()
        self.closing = False
        self.status = "online"
        self._queue: deque[str] = deque()
        # Made only while a replay waits for room (at most half the queue in use).
        self._room: asyncio.Event | None = None
        # The writer while the socket pushes back or frames wait; None otherwise.
        self._writer: asyncio.Task[None] | None = None
        # The ASGI server's send, past the framework's per-message wrappers (about a tenth
        # of a delivery's cost), from ``start``; the framework's path where the edge
        # middleware did not run.
        self._send: Callable[[Message], Awaitable[None]] = _not_started
        self._sent = 0
        self._seen = -1  # what the last sweep saw: frames sent, or -1 if it saw nothing waiting
        self._closer: asyncio.Task[None] | None = None
        self.abandoned = False
        # The endpoint's task while it serves this peer; None before ``start`` (frames
        # wait: ``ready`` leaves only once the channels are joined) and after ``stop``.
        self.serving: asyncio.Task[None] | None = None

    def push(self, frame: str) -> None:
        """Send or queue a frame; a full queue closes the connection as a slow consumer."""
        if self.closing:
            return
        queue = self._queue
        if not queue and self._writer is None and self.serving is not None:
            self._send_now(frame)
            return
        if len(queue) >= self.max_queue:
            self.close_soon(CLOSE_SLOW_CONSUMER, "too far behind; resume from your last seq")
            return
        queue.append(frame)
        if self._writer is None and self.serving is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write(None, None))

    def _send_now(self, frame: str) -> None:
        """Write the frame if the socket takes it now; else a writer finishes sending it."""
        sending = cast(
            "Coroutine[Any, Any, None]", self._send({"type": "websocket.send", "text": frame})
        )
        try:
            yielded = sending.send(None)
        except StopIteration:
            self._sent += 1
            return
        except Exception:
            self.finish()  # the socket is gone: the receive loop learns it too
            return
        # The socket pushes back: its send is suspended (waiting until it is writable).
        self._writer = asyncio.get_running_loop().create_task(self._write(sending, yielded))

    def start(self, serving: asyncio.Task[None]) -> None:
        """Start sending (what was queued first, ``ready`` included); from now on the sweep
        watches this peer and may end ``serving``."""
        self.serving = serving
        self._send = self.ws.scope.get(WS_SEND_KEY) or self.ws.send
        if self._queue and self._writer is None and not self.closing:
            self._writer = asyncio.get_running_loop().create_task(self._write(None, None))

    async def stop(self) -> None:
        """Stop sending and watching: the endpoint is ending."""
        self.serving = None
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def room(self) -> None:
        """Wait until the queue is at most half full (or the connection is going away).

        Replay from storage paces itself with this, so catching up never overflows the
        queue of a client that reads, while live events keep the other half."""
        while len(self._queue) > self.max_queue // 2 and not self.closing:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()

    def _release_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()

    async def _write(self, sending: Coroutine[Any, Any, None] | None, yielded: Any) -> None:
        """Finish the suspended send (if any), then drain the queue in order, and end."""
        queue, send = self._queue, self._send
        half = self.max_queue // 2
        try:
            if sending is not None:
                await _resume(sending, yielded)
                self._sent += 1
            while queue:
                # Sending does not yield while the socket takes data: whatever is queued
                # leaves back to back, in one turn of the event loop.
                await send({"type": "websocket.send", "text": queue.popleft()})
                self._sent += 1
                if self._room is not None and len(queue) <= half:
                    self._release_room()
        except Exception:
            self.finish()  # the socket is gone: the receive loop learns it too
        finally:
            self._writer = None

    def stalled(self) -> bool:
        """Called by the hub's sweep once per interval: whether nothing at all got out
        since the last sweep although frames were waiting then and still are.

        Such a peer cannot even be sent a close frame, and the server's keepalive cannot
        finish closing its socket either, so without this the connection (channels,
        presence, queue) would be held until TCP gives up, possibly never."""
        closer = self._closer
        busy = (
            self._writer is not None
            or bool(self._queue)
            or (closer is not None and not closer.done())
        )
        seen, self._seen = self._seen, (self._sent if busy else -1)
        return busy and seen == self._sent

    def abandon(self) -> None:
        """Stop serving this peer at once: its endpoint (``serving``) ends and unregisters."""
        serving = self.serving
        if serving is None:
            return
        log.info("connection %s took nothing for a whole interval; abandoned", self.id)
        self.abandoned = True
        self.finish()
        WS_CLOSED.labels("1006").inc()
        if self._closer is not None:
            self._closer.cancel()
        serving.cancel()

    def finish(self) -> None:
        """The socket is gone: queue nothing more and release anyone waiting for room."""
        self.closing = True
        self._queue.clear()
        self._release_room()

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        self._release_room()
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        self._closer = task
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        self._release_room()
        WS_CLOSED.labels(str(code)).inc()
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)


async def _not_started(message: Message) -> None:
    raise RuntimeError("the connection has not started")


async def _resume(sending: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Run to completion a coroutine that was started by hand and suspended on ``yielded``
    (a future, or None for a bare yield), as a task would have; cancellation goes into it."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                # A task clears this flag on the future its coroutine yields; so do we.
                yielded._asyncio_future_blocking = False
                await yielded
        except BaseException as exc:  # handed to the coroutine, which decides
            try:
                yielded = sending.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = sending.send(None)
            except StopIteration:
                return
