"""Resume after retention dropped old events: the client is told to re-fetch, never a gap."""

from __future__ import annotations

from typing import Any

import orjson

from ultrachat.bus.memory import MemoryBus
from ultrachat.chat.events import Envelope, event_frame
from ultrachat.realtime.asgi import AsgiConnection
from ultrachat.realtime.hub import Hub


class RetainedLog:
    """An event log whose oldest events were dropped: it holds seqs ``first``..``head``."""

    def __init__(self, first: int, head: int) -> None:
        self.events = [
            Envelope(seq, "message.created", "", event_frame("c1", seq, "message.created", {}))
            for seq in range(first, head + 1)
        ]
        self.head = head

    async def after(self, channel_id: str, after_seq: int, limit: int) -> list[Envelope]:
        return [e for e in self.events if e.seq > after_seq][:limit]

    async def heads(self, channel_ids: Any) -> dict[str, int]:
        return {c: self.head for c in channel_ids}


def queued(connection: AsgiConnection) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in connection._queue]


async def test_resume_from_a_dropped_seq_gets_a_reset_not_a_gap() -> None:
    hub = Hub(MemoryBus(), RetainedLog(first=10, head=20), max_behind=1000)  # type: ignore[arg-type]
    connection = AsgiConnection("conn", None, "u1", "s1", max_queue=100)  # type: ignore[arg-type]
    await hub.attach(connection, "c1", from_seq=3)
    assert queued(connection) == [{"type": "reset", "channel_id": "c1", "seq": 20}]


async def test_resume_within_the_log_replays_exactly_the_missed_events() -> None:
    hub = Hub(MemoryBus(), RetainedLog(first=10, head=20), max_behind=1000)  # type: ignore[arg-type]
    connection = AsgiConnection("conn", None, "u1", "s1", max_queue=100)  # type: ignore[arg-type]
    await hub.attach(connection, "c1", from_seq=14)
    assert [f["seq"] for f in queued(connection)] == [15, 16, 17, 18, 19, 20]
