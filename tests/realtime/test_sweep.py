"""The hub's keepalive sweep is spread over its interval, and still reaches each connection
once per interval: sweeping one too soon after the last would drop a peer that had a whole
interval to answer its ping, and sweeping all at once stalls every delivery on the node."""

from __future__ import annotations

import asyncio
import itertools

from tests.realtime.test_hub_retention import RetainedLog
from ultrachat.bus.memory import MemoryBus
from ultrachat.realtime.asgi import AsgiConnection
from ultrachat.realtime.hub import Hub
from ultrachat.realtime.slices import SHARES

INTERVAL = 0.4


class SweptConnection(AsgiConnection):
    """Records when the hub swept it."""

    __slots__ = ("swept_at",)

    def __init__(self, connection_id: str) -> None:
        super().__init__(connection_id, None, "u-" + connection_id, "s1", max_queue=10)  # type: ignore[arg-type]
        self.swept_at: list[float] = []

    def sweep(self) -> None:
        self.swept_at.append(asyncio.get_running_loop().time())


async def test_each_connection_is_swept_once_per_interval_in_a_slice_of_its_own() -> None:
    hub = Hub(MemoryBus(), RetainedLog(0, 0), max_behind=10, sweep_interval=INTERVAL)  # type: ignore[arg-type]
    connections = [SweptConnection(f"c{n}") for n in range(200)]
    for connection in connections:
        await hub.register(connection)
    gone = connections.pop()
    await hub.unregister(gone)

    async def every_one_swept_twice() -> None:
        while not all(len(c.swept_at) >= 2 for c in connections):
            await asyncio.sleep(INTERVAL / 10)

    await hub.start()
    try:
        await asyncio.wait_for(every_one_swept_twice(), INTERVAL * 20)
    finally:
        await hub.stop(1001, "test over")
    assert gone.swept_at == []
    for connection in connections:  # never sooner than an interval after the last time
        pairs = itertools.pairwise(connection.swept_at)
        assert all(b - a >= INTERVAL * 0.9 for a, b in pairs), connection.id
    # Spread out: the 199 connections were swept at many different moments, not in one go.
    moments = {round(c.swept_at[0], 3) for c in connections}
    assert len(moments) >= SHARES // 2


async def test_an_explicit_sweep_reaches_every_connection_at_once() -> None:
    hub = Hub(MemoryBus(), RetainedLog(0, 0), max_behind=10)  # type: ignore[arg-type]
    connections = [SweptConnection(f"c{n}") for n in range(50)]
    for connection in connections:
        await hub.register(connection)
    hub.sweep()
    assert all(len(c.swept_at) == 1 for c in connections)
