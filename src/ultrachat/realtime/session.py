"""The real-time protocol, whichever edge carries it: the hello, a session's start and end,
and what each client frame does.

Protocol (docs/realtime.md has every frame and close code):
  client → {"type":"hello","token":..., "resume":{channel_id: last_seq}}
  server → {"type":"ready","user_id":..., "connection_id":...}, then events
  client → send | typing | presence | presence_sub | ping
  server → ack | error | pong | event | reset | presence_state

The two edges (``edge.py``, native; ``asgi.py``, any ASGI server) read frames their own way
and call into this module, so both speak exactly the same protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from ultrachat.chat.schemas import MAX_SEQ
from ultrachat.errors import Overloaded, UltraChatError
from ultrachat.realtime.connection import Connection
from ultrachat.realtime.presence import STATUSES

log = logging.getLogger(__name__)
MAX_RESUME_CHANNELS = 10_000
MAX_INFLIGHT_SENDS = 32
PONG = b'{"type":"pong"}'


def frame(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def error(code: str, message: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": "error", **fields, "code": code, "message": message})


def parse_hello(text: str | bytes) -> tuple[str, dict[str, int]] | str:
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


def parse_frame(text: str | bytes) -> dict[str, Any] | None:
    """A client frame as a JSON object, or None (the caller answers ``invalid_frame``)."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


NOT_AN_OBJECT = error("invalid_frame", "frames are JSON objects")
NOT_TEXT = error("invalid_frame", "send text")


async def open_session(
    runtime: Any, connection: Connection, resume: dict[str, int], *, ready: bool = True
) -> None:
    """Register the connection, join every channel of the user (replaying what ``resume``
    says was missed) and announce its presence. ``ready`` is the first frame, but it
    leaves only once every channel is joined: from then on nothing is missed."""
    if ready:
        connection.push(
            frame(type="ready", user_id=connection.user_id, connection_id=connection.id)
        )
    hub = runtime.hub
    await hub.register(connection)
    replays = await _subscribe(runtime, connection, resume)
    connection.start()
    await asyncio.gather(*(hub.catch_up(connection, cid, after) for cid, after in replays))
    await runtime.presence.connected(connection)


async def close_session(runtime: Any, connection: Connection) -> None:
    """Forget the connection everywhere: presence, channels, the hub."""
    await connection.stop()  # first: no abandoning from here on
    try:
        with contextlib.suppress(Exception):
            await runtime.presence.disconnected(connection)
    finally:  # even when cancelled: a connection left in the hub keeps its feeds forever
        await runtime.hub.unregister(connection)


async def _subscribe(
    runtime: Any, connection: Connection, resume: dict[str, int]
) -> list[tuple[str, int]]:
    """Join every channel of the user; the (channel, seq) pairs still to be replayed."""
    member_of: list[str] = list(await runtime.channels.member_channel_ids(connection.user_id))
    for channel_id in resume.keys() - set(member_of):
        connection.push(
            error(
                "not_a_member",
                "not a member of this channel; it is not delivered",
                channel_id=channel_id,
            )
        )
    after = await asyncio.gather(
        *(runtime.hub.join(connection, cid, resume.get(cid)) for cid in member_of)
    )
    return [(cid, seq) for cid, seq in zip(member_of, after, strict=True) if seq is not None]


async def handle(runtime: Any, connection: Connection, kind: Any, frame_: dict[str, Any]) -> None:
    """Every client frame but ``send`` and ``ping`` (the edges handle those themselves:
    a send runs concurrently with later frames, a ping is answered at once)."""
    if kind == "typing":
        await _typing(runtime, connection, frame_)
    elif kind == "presence_sub":
        await _watch_presence(runtime, connection, frame_)
    elif kind == "presence":
        status = frame_.get("status")
        if status in STATUSES:
            await runtime.presence.set_status(connection, status)
        else:
            connection.push(error("invalid_input", "status must be 'online' or 'away'"))
    else:
        connection.push(error("unknown_type", f"unknown type {kind!r}"))


async def send(runtime: Any, connection: Connection, frame_: dict[str, Any]) -> None:
    """A client's ``send``: stored (idempotently, by ``client_msg_id``), then acked."""
    client_msg_id = frame_.get("client_msg_id")
    channel_id, body = frame_.get("channel_id"), frame_.get("body")
    thread_id = frame_.get("thread_id")
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
        connection.push(error("invalid_input", problem, client_msg_id=client_msg_id))
        return
    assert isinstance(channel_id, str) and isinstance(body, str)
    assert isinstance(client_msg_id, str)
    try:
        message, _ = await runtime.messages.send(
            connection.user_id, channel_id, body, client_msg_id, thread_id
        )
    except Overloaded as exc:  # nothing written: the client resends later, same client_msg_id
        connection.push(
            error(
                exc.code,
                exc.message,
                client_msg_id=client_msg_id,
                retry_after_ms=exc.retry_after * 1000,
            )
        )
        return
    except UltraChatError as exc:
        connection.push(error(exc.code, exc.message, client_msg_id=client_msg_id))
        return
    except Exception:
        log.exception("send over WebSocket failed")
        connection.push(
            error(
                "internal_error",
                "the message was not stored; retry with the same client_msg_id",
                client_msg_id=client_msg_id,
            )
        )
        return
    connection.push(
        frame(type="ack", client_msg_id=client_msg_id, message_id=message["id"], seq=message["seq"])
    )


async def _typing(runtime: Any, connection: Connection, frame_: dict[str, Any]) -> None:
    channel_id = frame_.get("channel_id")
    if not isinstance(channel_id, str) or channel_id not in connection.channels:
        connection.push(
            error("not_a_member", "typing is only relayed in your channels", channel_id=channel_id)
        )
        return
    out = orjson.dumps({"type": "typing", "channel_id": channel_id, "user_id": connection.user_id})
    await runtime.hub.publish_ephemeral(channel_id, "typing", connection.user_id, out.decode())


async def _watch_presence(runtime: Any, connection: Connection, frame_: dict[str, Any]) -> None:
    user_ids = frame_.get("user_ids")
    if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
        connection.push(error("invalid_input", "user_ids must be a list of ids"))
        return
    snapshot = await runtime.presence.watch(connection, user_ids)
    connection.push(frame(type="presence_state", presence=snapshot))
