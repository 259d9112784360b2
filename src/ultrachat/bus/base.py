"""The bus contract, shared by the in-process and Redis implementations."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

Handler = Callable[[str, bytes], None]
"""Called with (topic, payload) for each message; must not block (it runs on the reader)."""

ReconnectListener = Callable[[], Coroutine[Any, Any, None]]


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: bytes) -> None:
        """Deliver ``payload`` to every subscriber of ``topic`` on every node, at most once."""
        ...

    async def publish_counted(self, topic: str, payload: bytes) -> int:
        """Like ``publish``; returns how many node subscriptions received it (this node's too)."""
        ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish several (topic, payload) messages in order, in one round trip if possible."""
        ...

    async def subscribe(self, topic: str, handler: Handler) -> None:
        """Receive ``topic`` on this node. One handler per topic per node; returns once active,
        so a message published after it returns is delivered."""
        ...

    async def unsubscribe(self, topic: str) -> None: ...

    def on_reconnect(self, listener: ReconnectListener) -> None:
        """Call ``listener`` after the bus recovered from an outage (messages may be lost)."""
        ...

    @property
    def healthy(self) -> bool: ...
