"""One client WebSocket as the hub, the feeds and presence see it, whichever edge serves it.

Producers never wait on a client: ``push`` writes or queues and returns. A frame is written
straight away when nothing waits ahead of it and the socket takes it; otherwise it joins a
bounded queue that is drained, in order, as the socket takes data again. Each edge has its
own way of writing (``edge.EdgeConnection``, ``asgi.AsgiConnection``); the rules they share
are here.

A client that lets its queue fill is cut off with 4408 (it resumes later without loss), so
one slow reader can neither stall the others nor grow this process's memory without bound.
A peer that takes nothing at all for a whole ping interval while frames wait is given up by
the hub's sweep (which calls ``sweep`` on each connection once per interval): its
socket buffers are full, so not even a close frame gets through to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ultrachat.metrics.chat import WS_CLOSED

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER = 4408
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_HELLO = 4400
CLOSE_SERVICE_RESTART = 1012
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_PEER_GONE = 1006  # recorded, never sent: the peer stopped answering

_closing: set[asyncio.Task[None]] = set()  # keeps close tasks alive until they finish


class Connection:
    __slots__ = (
        "_closer",
        "_queue",
        "_room",
        "_seen",
        "_sent",
        "abandoned",
        "channels",
        "closing",
        "id",
        "max_queue",
        "session_id",
        "status",
        "user_id",
    )

    def __init__(self, connection_id: str, user_id: str, session_id: str, max_queue: int) -> None:
        self.id = connection_id
        self.user_id = user_id
        self.session_id = session_id
        self.max_queue = max_queue
        self.channels: set[str] = set()
        self.closing = False
        self.status = "online"
        # Frames waiting for the socket, made when the first one has to wait.
        self._queue: deque[bytes | str] | None = None
        # Made only while a replay waits for room (at most half the queue in use).
        self._room: asyncio.Event | None = None
        self._sent = 0
        self._seen = -1  # what the last sweep saw: frames sent, or -1 if it saw nothing waiting
        self._closer: asyncio.Task[None] | None = None
        self.abandoned = False

    # What each edge provides

    def push(self, frame: bytes | str) -> None:
        """Send or queue a frame (UTF-8 JSON text); a full queue closes the connection as
        a slow consumer."""
        raise NotImplementedError

    def start(self) -> None:
        """The session is set up: send what was queued (``ready`` first) and go on live."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop sending and watching: the session is ending."""

    def sweep(self) -> None:
        """Once per ping interval, from the hub: give up a peer that is gone."""
        raise NotImplementedError

    async def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def _busy(self) -> bool:
        """Whether frames wait for the socket."""
        raise NotImplementedError

    # Shared

    def _enqueue(self, frame: bytes | str) -> bool:
        """Queue a frame behind others; False (and closing) if the queue is full."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self.max_queue:
            self.close_soon(CLOSE_SLOW_CONSUMER, "too far behind; resume from your last seq")
            return False
        queue.append(frame)
        return True

    async def room(self) -> None:
        """Wait until the queue is at most half full (or the connection is going away).

        Replay from storage paces itself with this, so catching up never overflows the
        queue of a client that reads, while live events keep the other half."""
        while self._queue and len(self._queue) > self.max_queue // 2 and not self.closing:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()

    def _release_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()

    def stalled(self) -> bool:
        """Whether nothing at all got out since the last sweep although frames were waiting
        then and still are.

        Such a peer cannot even be sent a close frame, and a keepalive cannot finish closing
        its socket either, so without this the connection (channels, presence, queue) would
        be held until TCP gives up, possibly never."""
        busy = self._busy() or (self._closer is not None and not self._closer.done())
        seen, self._seen = self._seen, (self._progress() if busy else -1)
        return busy and seen == self._progress()

    def _progress(self) -> int:
        """A number that changes whenever the socket takes data."""
        return self._sent

    def finish(self) -> None:
        """The socket is gone: queue nothing more and release anyone waiting for room."""
        self.closing = True
        if self._queue:
            self._queue.clear()
        self._release_room()

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.finish()
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        self._closer = task
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    def _closed(self, code: int) -> None:
        WS_CLOSED.labels(str(code)).inc()


def as_text(frame: bytes | str) -> str:
    return frame if isinstance(frame, str) else frame.decode()


def as_bytes(frame: bytes | str) -> bytes:
    return frame.encode() if isinstance(frame, str) else frame
