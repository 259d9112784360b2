"""One client WebSocket: a bounded send queue drained by a single writer.

Producers never wait on a client: ``push`` appends and returns. A client that lets its queue
fill is cut off with 4408 (it resumes later without loss), so one slow reader can neither
stall the others nor grow this process's memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from starlette.websockets import WebSocket, WebSocketState

from ultrachat.metrics.chat import WS_CLOSED, WS_DELIVERIES

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER = 4408
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_HELLO = 4400
CLOSE_SERVICE_RESTART = 1012

_closing: set[asyncio.Task[None]] = set()  # keeps close tasks alive until they finish


class Connection:
    __slots__ = (
        "_queue",
        "_wake",
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

    def push(self, frame: str) -> None:
        """Queue a frame; a full queue closes the connection as a slow consumer."""
        if self.closing:
            return
        if len(self._queue) >= self.max_queue:
            self.close_soon(CLOSE_SLOW_CONSUMER, "too far behind; resume from your last seq")
            return
        self._queue.append(frame)
        WS_DELIVERIES.inc()
        self._wake.set()

    async def write_forever(self) -> None:
        queue, wake, ws = self._queue, self._wake, self.ws
        while True:
            while not queue:
                wake.clear()
                await wake.wait()
            await ws.send_text(queue.popleft())

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        WS_CLOSED.labels(str(code)).inc()
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)
