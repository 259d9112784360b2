"""The WebSocket endpoint at /api/v1/ws: handshake, resume, and the client's frames.

Protocol (docs/realtime.md has every frame and close code):
  client → {"type":"hello","token":..., "resume":{channel_id: last_seq}}
  server → {"type":"ready","user_id":..., "connection_id":...}, then events
  client → send | typing | presence | ping;  server → ack | error | pong | event | reset
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ultrachat.chat.schemas import MAX_SEQ
from ultrachat.errors import UltraChatError, Unauthorized
from ultrachat.realtime.connection import CLOSE_BAD_HELLO, CLOSE_UNAUTHORIZED, Connection
from ultrachat.realtime.presence import STATUSES
from ultrachat.storage import new_id

log = logging.getLogger(__name__)
router = APIRouter()
MAX_RESUME_CHANNELS = 10_000
MAX_INFLIGHT_SENDS = 32


def _frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


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
    connection = Connection(
        new_id(), ws, claims.user_id, claims.session_id, settings.ws_send_queue_max
    )
    hub = runtime.hub
    # ``ready`` is the first frame, but it leaves only once every channel is joined: from
    # then on, nothing committed (or typed) in the user's channels is missed.
    connection.push(_frame(type="ready", user_id=claims.user_id, connection_id=connection.id))
    serving = asyncio.current_task()
    assert serving is not None
    try:
        try:
            await hub.register(connection)
            replays = await _subscribe(runtime, connection, resume)
            connection.start(serving)
            await asyncio.gather(*(hub.catch_up(connection, cid, after) for cid, after in replays))
            await runtime.presence.connected(connection)
            await _serve(runtime, connection)
        finally:
            await connection.stop()  # first: no abandoning from here on
            with contextlib.suppress(Exception):
                await runtime.presence.disconnected(connection)
            await hub.unregister(connection)
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
    parsed = _parse_hello(hello)
    if isinstance(parsed, str):
        await ws.close(CLOSE_BAD_HELLO, parsed)
        return None
    token, resume = parsed
    try:
        claims = await runtime.auth.authenticate(token)
    except Unauthorized as exc:
        await ws.close(CLOSE_UNAUTHORIZED, exc.message)
        return None
    return claims, resume


def _parse_hello(text: str) -> tuple[str, dict[str, int]] | str:
    """(token, resume) from the first frame, or the reason it is refused."""
    try:
        hello = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "first frame must be a JSON hello"
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        return "first frame must be a hello"
    token = hello.get("token")
    resume = hello.get("resume") or {}
    if not isinstance(token, str) or not token:
        return "hello needs a token"
    if (
        not isinstance(resume, dict)
        or len(resume) > MAX_RESUME_CHANNELS
        or not all(
            isinstance(k, str)
            and isinstance(v, int)
            and not isinstance(v, bool)
            and 0 <= v <= MAX_SEQ  # what the database's BIGINT holds
            for k, v in resume.items()
        )
    ):
        return "resume must map channel ids to seqs (non-negative integers)"
    return token, resume


async def _subscribe(
    runtime: Any, connection: Connection, resume: dict[str, int]
) -> list[tuple[str, int]]:
    """Join every channel of the user; the (channel, seq) pairs still to be replayed."""
    member_of: list[str] = list(await runtime.channels.member_channel_ids(connection.user_id))
    for channel_id in resume.keys() - set(member_of):
        connection.push(
            _frame(
                type="error",
                code="not_a_member",
                channel_id=channel_id,
                message="not a member of this channel; it is not delivered",
            )
        )
    after = await asyncio.gather(
        *(runtime.hub.join(connection, cid, resume.get(cid)) for cid in member_of)
    )
    return [(cid, seq) for cid, seq in zip(member_of, after, strict=True) if seq is not None]


async def _serve(runtime: Any, connection: Connection) -> None:
    ws = connection.ws
    inflight = asyncio.Semaphore(MAX_INFLIGHT_SENDS)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while not connection.closing:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                connection.push(_frame(type="error", code="invalid_frame", message="send text"))
                continue
            try:
                frame = orjson.loads(text)
            except orjson.JSONDecodeError:
                frame = None
            if not isinstance(frame, dict):
                connection.push(
                    _frame(type="error", code="invalid_frame", message="frames are JSON objects")
                )
                continue
            kind = frame.get("type")
            if kind == "send":
                await inflight.acquire()
                task = asyncio.create_task(_send(runtime, connection, frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: inflight.release())
            elif kind == "ping":
                connection.push('{"type":"pong"}')
            elif kind == "typing":
                await _typing(runtime, connection, frame)
            elif kind == "presence_sub":
                await _watch_presence(runtime, connection, frame)
            elif kind == "presence":
                status = frame.get("status")
                if status in STATUSES:
                    await runtime.presence.set_status(connection, status)
                else:
                    connection.push(
                        _frame(
                            type="error",
                            code="invalid_input",
                            message="status must be 'online' or 'away'",
                        )
                    )
            else:
                connection.push(
                    _frame(type="error", code="unknown_type", message=f"unknown type {kind!r}")
                )
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _send(runtime: Any, connection: Connection, frame: dict[str, Any]) -> None:
    client_msg_id = frame.get("client_msg_id")
    channel_id, body, thread_id = frame.get("channel_id"), frame.get("body"), frame.get("thread_id")
    problem = None
    if not isinstance(client_msg_id, str) or not 1 <= len(client_msg_id) <= 64:
        problem = "client_msg_id must be a string of 1-64 characters"
    elif not isinstance(channel_id, str) or not channel_id:
        problem = "channel_id is required"
    elif not isinstance(body, str) or not 1 <= len(body) <= 4000:
        problem = "body must be 1-4000 characters"
    elif thread_id is not None and not isinstance(thread_id, str):
        problem = "thread_id must be a string"
    if problem:
        connection.push(
            _frame(type="error", client_msg_id=client_msg_id, code="invalid_input", message=problem)
        )
        return
    assert isinstance(channel_id, str) and isinstance(body, str)
    assert isinstance(client_msg_id, str)
    try:
        message, _ = await runtime.messages.send(
            connection.user_id, channel_id, body, client_msg_id, thread_id
        )
    except UltraChatError as exc:
        connection.push(
            _frame(type="error", client_msg_id=client_msg_id, code=exc.code, message=exc.message)
        )
        return
    except Exception:
        log.exception("send over WebSocket failed")
        connection.push(
            _frame(
                type="error",
                client_msg_id=client_msg_id,
                code="internal_error",
                message="the message was not stored; retry with the same client_msg_id",
            )
        )
        return
    connection.push(
        _frame(
            type="ack", client_msg_id=client_msg_id, message_id=message["id"], seq=message["seq"]
        )
    )


async def _typing(runtime: Any, connection: Connection, frame: dict[str, Any]) -> None:
    channel_id = frame.get("channel_id")
    if not isinstance(channel_id, str) or channel_id not in connection.channels:
        connection.push(
            _frame(
                type="error",
                code="not_a_member",
                channel_id=channel_id,
                message="typing is only relayed in your channels",
            )
        )
        return
    out = _frame(type="typing", channel_id=channel_id, user_id=connection.user_id)
    await runtime.hub.publish_ephemeral(channel_id, "typing", connection.user_id, out)


async def _watch_presence(runtime: Any, connection: Connection, frame: dict[str, Any]) -> None:
    user_ids = frame.get("user_ids")
    if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
        connection.push(
            _frame(type="error", code="invalid_input", message="user_ids must be a list of ids")
        )
        return
    snapshot = await runtime.presence.watch(connection, user_ids)
    connection.push(_frame(type="presence_state", presence=snapshot))
