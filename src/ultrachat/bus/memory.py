"""In-process bus: the embedded default. Single node only.

Every subscriber lives in this process, so nothing can be lost in transit. To run several
processes or machines, set ``ULTRACHAT_REDIS_URL`` and the Redis bus takes over.
"""

from __future__ import annotations

from collections.abc import Sequence

from ultrachat.bus.base import Handler, ReconnectListener
from ultrachat.metrics.bus import BUS_PUBLISHED


class MemoryBus:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    async def publish(self, topic: str, payload: bytes) -> None:
        BUS_PUBLISHED.inc()
        handler = self._handlers.get(topic)
        if handler is not None:
            handler(topic, payload)

    async def publish_counted(self, topic: str, payload: bytes) -> int:
        handler = self._handlers.get(topic)
        await self.publish(topic, payload)
        return 0 if handler is None else 1

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            await self.publish(topic, payload)

    async def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers[topic] = handler

    async def unsubscribe(self, topic: str) -> None:
        self._handlers.pop(topic, None)

    def on_reconnect(self, listener: ReconnectListener) -> None:
        return None  # never disconnects

    @property
    def healthy(self) -> bool:
        return True
