"""The real-time protocol at /api/v1/ws as an ASGI WebSocket route, for any ASGI server.

``ultrachat serve`` does not use it by default: the native edge (``edge.py``) serves the same
path with a fraction of the memory and CPU. This route is the one used when the app runs
under another ASGI server, or with ``ULTRACHAT_WS_EDGE=asgi``.

Each connection holds the route's task (its receive loop) for its whole life; frames go out
at once while the socket takes them, else through the queue and a writer task that exists
only while the socket pushes back (no task wake-up per delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.types import Message
from starlette.websockets import WebSocketState

from ultrachat.errors import Unauthorized
from ultrachat.gateway.middleware import WS_SEND_KEY
from ultrachat.realtime import session
from ultrachat.realtime.connection import (
    CLOSE_BAD_HELLO,
    CLOSE_INTERNAL_ERROR,
    CLOSE_PEER_GONE,
    CLOSE_UNAUTHORIZED,
    Connection,
    as_text,
)
from ultrachat.storage import new_id

log = logging.getLogger(__name__)
router = APIRouter()


class AsgiConnection(Connection):
    __slots__ = ("_send", "_writer", "serving", "ws")

    def __init__(
        self, connection_id: str, ws: WebSocket, user_id: str, session_id: str, max_queue: int
    ) -> None:
        super().__init__(connection_id, user_id, session_id, max_queue)
        self.ws = ws
        # The writer while the socket pushes back or frames wait; None otherwise.
        self._writer: asyncio.Task[None] | None = None
        # The ASGI server's send, past the framework's per-message wrappers (about a tenth
        # of a delivery's cost), from ``start``; the framework's path where the edge
        # middleware did not run.
        self._send: Callable[[Message], Awaitable[None]] = _not_started
        # The route's task while it serves this peer, from ``start`` (frames wait until then:
        # ``ready`` leaves only once the channels are joined) until ``stop``.
        self.serving: asyncio.Task[None] | None = None

    def push(self, frame: bytes | str) -> None:
        if self.closing:
            return
        if not self._queue and self._writer is None and self.serving is not None:
            self._send_now(as_text(frame))
            return
        if self._enqueue(frame) and self._writer is None and self.serving is not None:
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

    def start(self) -> None:
        self.serving = asyncio.current_task()
        self._send = self.ws.scope.get(WS_SEND_KEY) or self.ws.send
        if self._queue and self._writer is None and not self.closing:
            self._writer = asyncio.get_running_loop().create_task(self._write(None, None))

    async def stop(self) -> None:
        self.serving = None
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def _busy(self) -> bool:
        # Before ``start`` frames wait for the session to open, not for the socket.
        return self.serving is not None and (self._writer is not None or bool(self._queue))

    async def _write(self, sending: Coroutine[Any, Any, None] | None, yielded: Any) -> None:
        """Finish the suspended send (if any), then drain the queue in order, and end."""
        send = self._send
        half = self.max_queue // 2
        try:
            if sending is not None:
                await _resume(sending, yielded)
                self._sent += 1
            queue = self._queue
            while queue:
                # Sending does not yield while the socket takes data: whatever is queued
                # leaves back to back, in one turn of the event loop.
                await send({"type": "websocket.send", "text": as_text(queue.popleft())})
                self._sent += 1
                if self._room is not None and len(queue) <= half:
                    self._release_room()
        except Exception:
            self.finish()  # the socket is gone: the receive loop learns it too
        finally:
            self._writer = None

    def sweep(self) -> None:
        # Keepalive pings are the ASGI server's; the hub gives up peers that take nothing.
        if self.serving is not None and self.stalled():
            self.abandon()

    def abandon(self) -> None:
        """Stop serving this peer at once: its route task ends and unregisters."""
        serving = self.serving
        if serving is None:
            return
        log.info("connection %s took nothing for a whole interval; abandoned", self.id)
        self.abandoned = True
        self.finish()
        self._closed(CLOSE_PEER_GONE)
        if self._closer is not None:
            self._closer.cancel()
        serving.cancel()

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        self._release_room()
        self._closed(code)
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)


@router.websocket("/api/v1/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    runtime = ws.app.state.runtime
    settings = runtime.settings
    await ws.accept()
    accepted = await _handshake(runtime, ws)
    if accepted is None:
        return
    claims, resume = accepted
    del accepted
    connection = AsgiConnection(
        new_id(), ws, claims.user_id, claims.session_id, settings.ws_send_queue_max
    )
    serving = asyncio.current_task()
    assert serving is not None
    try:
        try:
            try:
                await session.open_session(runtime, connection, resume)
            except Exception:  # the native edge's answer, not a socket dropped with a traceback
                log.exception("opening a real-time session failed")
                with contextlib.suppress(Exception):
                    await ws.close(CLOSE_INTERNAL_ERROR, "server error; reconnect")
                return
            await _serve(runtime, connection)
        finally:
            await session.close_session(runtime, connection)
    except asyncio.CancelledError:
        if not connection.abandoned:
            raise
        serving.uncancel()  # the sweep gave this peer up; the endpoint ends normally


async def _handshake(runtime: Any, ws: WebSocket) -> tuple[Any, dict[str, int]] | None:
    """The hello's claims and resume map, or None once the socket is closed.

    A function of its own so that the hello's text and token are not held by the endpoint's
    frame for the life of the connection (about 1.5 KB together)."""
    try:
        hello = await asyncio.wait_for(ws.receive_text(), runtime.settings.ws_hello_timeout_seconds)
    except TimeoutError:
        await ws.close(CLOSE_BAD_HELLO, "no hello within the time limit")
        return None
    except (WebSocketDisconnect, RuntimeError, KeyError):
        return None
    parsed = session.parse_hello(hello)
    if isinstance(parsed, str):
        await ws.close(CLOSE_BAD_HELLO, parsed)
        return None
    token, resume = parsed
    try:
        claims = await runtime.auth.authenticate(token)
    except Unauthorized as exc:
        await ws.close(CLOSE_UNAUTHORIZED, exc.message)
        return None
    except Exception:  # the check itself failed: the native edge's answer, not a dropped socket
        log.exception("checking a real-time hello's token failed")
        await ws.close(CLOSE_INTERNAL_ERROR, "server error; reconnect")
        return None
    return claims, resume


async def _serve(runtime: Any, connection: AsgiConnection) -> None:
    ws = connection.ws
    inflight = asyncio.Semaphore(session.MAX_INFLIGHT_SENDS)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while not connection.closing:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                connection.push(session.NOT_TEXT)
                continue
            frame = session.parse_frame(text)
            if frame is None:
                connection.push(session.NOT_AN_OBJECT)
                continue
            kind = frame.get("type")
            if kind == "send":
                await inflight.acquire()
                task = asyncio.create_task(session.send(runtime, connection, frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: inflight.release())
            elif kind == "ping":
                connection.push(session.PONG)
            else:
                await session.handle(runtime, connection, kind, frame)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


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
