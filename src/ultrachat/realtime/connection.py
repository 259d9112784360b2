"""One client WebSocket: a bounded send queue drained by a single writer.

Producers never wait on a client: ``push`` appends and returns. A client that lets its queue
fill is cut off with 4408 (it resumes later without loss), so one slow reader can neither
stall the others nor grow this process's memory without bound. A peer that takes nothing at
all for a whole ping interval while frames wait is given up (``watch``): its socket buffers
are full, so not even a close frame gets through to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from starlette.websockets import WebSocket, WebSocketState

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
        "_sent",
        "_wake",
        "_writing",
        "abandoned",
        "channels",
        "closing",
        "id",
        "max_queue",
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
        self._wake = asyncio.Event()
        self._room = asyncio.Event()  # set while the queue is at most half full
        self._room.set()
        self._writing = False
        self._sent = 0
        self._closer: asyncio.Task[None] | None = None
        self.abandoned = False

    def push(self, frame: str) -> None:
        """Queue a frame; a full queue closes the connection as a slow consumer."""
        if self.closing:
            return
        if len(self._queue) >= self.max_queue:
            self.close_soon(CLOSE_SLOW_CONSUMER, "too far behind; resume from your last seq")
            return
        self._queue.append(frame)
        self._wake.set()
        if len(self._queue) > self.max_queue // 2:
            self._room.clear()

    async def room(self) -> None:
        """Wait until the queue is at most half full (or the connection is going away).

        Replay from storage paces itself with this, so catching up never overflows the
        queue of a client that reads, while live events keep the other half."""
        await self._room.wait()

    async def write_forever(self) -> None:
        queue, wake, room, ws = self._queue, self._wake, self._room, self.ws
        half = self.max_queue // 2
        while True:
            while not queue:
                wake.clear()
                await wake.wait()
            self._writing = True
            await ws.send_text(queue.popleft())
            self._writing = False
            self._sent += 1
            if len(queue) <= half:
                room.set()

    async def watch(self, interval: float, serving: asyncio.Task[None]) -> None:
        """Abandon the peer if nothing at all gets out for ``interval`` while frames wait.

        Such a peer cannot even be sent a close frame, and the server's keepalive cannot
        finish closing its socket either, so without this the connection (channels,
        presence, queue) would be held until TCP gives up, possibly never."""
        busy, sent = False, -1
        while True:
            await asyncio.sleep(interval)
            was_busy, was_sent = busy, sent
            closer = self._closer
            busy = self._writing or bool(self._queue) or (closer is not None and not closer.done())
            sent = self._sent
            if busy and was_busy and sent == was_sent:
                log.info("connection %s took nothing for %.1fs; abandoned", self.id, interval)
                self.abandon(serving)
                return

    def abandon(self, serving: asyncio.Task[None]) -> None:
        """Stop serving this peer at once: its endpoint (``serving``) ends and unregisters."""
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
        self._room.set()

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        self._room.set()
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        self._closer = task
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        self._room.set()
        WS_CLOSED.labels(str(code)).inc()
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)
