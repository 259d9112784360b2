"""A test client for the real-time protocol (docs/realtime.md), on the websockets library."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

_ids = itertools.count(1)


class RealtimeClient:
    """Connects, says hello, and sorts what arrives: events per channel, acks, the rest."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.ws: ClientConnection | None = None
        self.ready: dict[str, Any] | None = None
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.others: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_log: list[dict[str, Any]] = []  # every ack, retries included
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Condition()
        self.close_code: int | None = None

    def last_seq(self, channel_id: str) -> int:
        events = self.events.get(channel_id)
        return events[-1]["seq"] if events else 0

    async def connect(self, resume: dict[str, int] | None = None) -> dict[str, Any]:
        self.ws = await websockets.connect(self.url, max_queue=None, compression=None)
        hello: dict[str, Any] = {"type": "hello", "token": self.token}
        if resume is not None:
            hello["resume"] = resume
        await self.ws.send(orjson.dumps(hello).decode())
        first = orjson.loads(await asyncio.wait_for(self.ws.recv(), 5))
        assert first["type"] == "ready", first
        self.ready = first
        self.close_code = None
        self._reader = asyncio.create_task(self._read())
        return first

    async def resume(self) -> dict[str, Any]:
        """Reconnect, resuming every channel from the last seq seen."""
        return await self.connect({c: self.last_seq(c) for c in self.events})

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                if frame["type"] == "event":
                    self.events[frame["channel_id"]].append(frame)
                elif frame["type"] == "ack":
                    self.acks[frame["client_msg_id"]] = frame
                    self.ack_log.append(frame)
                else:
                    self.others.append(frame)
                async with self._arrived:
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async def check() -> None:
            async with self._arrived:
                await self._arrived.wait_for(predicate)

        await asyncio.wait_for(check(), timeout)

    async def send_message(self, channel_id: str, body: str, **extra: Any) -> str:
        client_msg_id = extra.pop("client_msg_id", None) or f"c{next(_ids)}"
        await self.send_frame(
            {
                "type": "send",
                "channel_id": channel_id,
                "body": body,
                "client_msg_id": client_msg_id,
                **extra,
            }
        )
        return client_msg_id

    async def send_frame(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(orjson.dumps(frame).decode())

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await self.wait_for(lambda: self.close_code is not None, timeout)
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def drop(self) -> None:
        """Vanish without a closing handshake, like a phone losing signal."""
        if self.ws is not None:
            self.ws.transport.abort()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
